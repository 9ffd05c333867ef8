import re
from pathlib import Path

import pytest

from xray_autoinst import config


def env(**kw):
    return config.from_env(kw)


def test_defaults():
    cfg = env()
    assert cfg.enabled is True
    assert cfg.service_name is None
    assert cfg.udp_address == ("127.0.0.1", 2000)
    assert cfg.tcp_address == ("127.0.0.1", 2000)
    assert cfg.context_missing == "ignore"
    assert cfg.sql_queries == "sanitized"
    assert cfg.sampling_mode == "centralized"
    assert cfg.problems == ()
    assert cfg.sources["AWS_XRAY_DAEMON_ADDRESS"] == ("127.0.0.1:2000", "default")


def test_config_is_frozen():
    cfg = env()
    with pytest.raises(AttributeError):
        cfg.enabled = False


@pytest.mark.parametrize(
    "value, udp, tcp",
    [
        ("127.0.0.1:3000", ("127.0.0.1", 3000), ("127.0.0.1", 3000)),
        ("xray-daemon:2000", ("xray-daemon", 2000), ("xray-daemon", 2000)),
        ("[::1]:2000", ("::1", 2000), ("::1", 2000)),
        ("udp:10.0.0.1:2001 tcp:10.0.0.2:2002", ("10.0.0.1", 2001), ("10.0.0.2", 2002)),
        ("tcp:h2:9 udp:h1:8", ("h1", 8), ("h2", 9)),
    ],
)
def test_daemon_address_forms(value, udp, tcp):
    cfg = env(AWS_XRAY_DAEMON_ADDRESS=value)
    assert (cfg.udp_address, cfg.tcp_address) == (udp, tcp)
    assert cfg.enabled and not cfg.problems


@pytest.mark.parametrize(
    "value",
    ["garbage", "host:", ":2000", "host:99999", "host:abc", "udp:h:1", "udp:h:1 udp:h:2",
     "::1:2000", "[::1]2000", "a:1 b:2 c:3"],
)
def test_bad_daemon_address_turns_tracing_off_with_one_message(value):
    cfg = env(AWS_XRAY_DAEMON_ADDRESS=value)
    assert cfg.enabled is False
    assert len(cfg.problems) == 1
    msg = cfg.problems[0]
    assert "AWS_XRAY_DAEMON_ADDRESS" in msg and repr(value) in msg and "host:port" in msg


@pytest.mark.parametrize(
    "xray, sdk, expected",
    [
        (None, None, True),
        ("false", None, False),
        (None, "false", False),
        ("true", "false", True),  # XRAY_ENABLED wins
        ("false", "true", False),
        ("0", None, False),
        ("off", None, False),
    ],
)
def test_enabled(xray, sdk, expected):
    kw = {}
    if xray is not None:
        kw["XRAY_ENABLED"] = xray
    if sdk is not None:
        kw["AWS_XRAY_SDK_ENABLED"] = sdk
    assert env(**kw).enabled is expected


def test_bad_boolean_names_variable_value_and_accepted():
    cfg = env(XRAY_ENABLED="maybe")
    assert cfg.enabled is True
    assert cfg.problems == (
        "XRAY_ENABLED='maybe' is not valid: expected true or false; using true",
    )


def test_service_name_precedence_and_cleaning():
    assert env(XRAY_SERVICE_NAME="orders", AWS_XRAY_TRACING_NAME="x").service_name == "orders"
    assert env(AWS_XRAY_TRACING_NAME="legacy").service_name == "legacy"
    cfg = env(XRAY_SERVICE_NAME="bad\\name<>" + "x" * 300)
    assert cfg.service_name.startswith("bad_name__x")
    assert len(cfg.service_name) == 200
    assert len(cfg.problems) == 1 and "XRAY_SERVICE_NAME" in cfg.problems[0]


@pytest.mark.parametrize(
    "kw, expected",
    [
        ({}, "ignore"),
        ({"XRAY_CONTEXT_MISSING": "call"}, "call"),
        ({"XRAY_CONTEXT_MISSING": "PROCESS"}, "process"),
        ({"AWS_XRAY_CONTEXT_MISSING": "RUNTIME_ERROR"}, "log"),
        ({"AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR"}, "log"),
        ({"AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR"}, "ignore"),
        ({"AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR", "XRAY_CONTEXT_MISSING": "call"}, "call"),
    ],
)
def test_context_missing(kw, expected):
    assert env(**kw).context_missing == expected


def test_bad_values_fall_back_with_messages():
    cfg = env(
        XRAY_CONTEXT_MISSING="explode",
        XRAY_LOG_LEVEL="loud",
        XRAY_SQL_QUERIES="raw",
        XRAY_SAMPLING="sometimes",
        XRAY_TRUST_TRACE_HEADER="perhaps",
    )
    assert cfg.context_missing == "ignore"
    assert cfg.log_level == "warning"
    assert cfg.sql_queries == "sanitized"
    assert cfg.trust_trace_header is True
    assert len(cfg.problems) == 5
    for var in ("XRAY_CONTEXT_MISSING", "XRAY_LOG_LEVEL", "XRAY_SQL_QUERIES", "XRAY_SAMPLING",
                "XRAY_TRUST_TRACE_HEADER"):
        assert any(p.startswith(var + "=") for p in cfg.problems), var


def test_disabled_instrumentations_and_redaction_lists():
    cfg = env(XRAY_DISABLED_INSTRUMENTATIONS=" Gunicorn, sqlite3 ,",
              XRAY_REDACT_QUERY_PARAMS="apikey,Sig")
    assert cfg.disabled_instrumentations == {"gunicorn", "sqlite3"}
    assert cfg.redact_query_params == ("apikey", "sig")


def test_sampling_rules_inline_and_file(tmp_path):
    rules = '{"version": 2, "default": {"fixed_target": 2, "rate": 0.5}}'
    cfg = env(XRAY_SAMPLING_RULES=rules)
    assert cfg.sampling_rules.default.fixed_target == 2
    assert cfg.sampling_mode == "local"
    path = tmp_path / "rules.json"
    path.write_text(rules)
    assert env(XRAY_SAMPLING_RULES=str(path)).sampling_rules.default.rate == 0.5


def test_bad_sampling_rules_use_default_with_message():
    cfg = env(XRAY_SAMPLING_RULES='{"version": 3, "default": {}}')
    assert cfg.sampling_rules is None
    assert len(cfg.problems) == 1
    assert cfg.problems[0].startswith("XRAY_SAMPLING_RULES: version=3 is not supported")
    assert "default rule" in cfg.problems[0]


ROOT = Path(__file__).resolve().parents[1]
# read by the daemon's command line (xray_autoinst/daemon), not by the agent: in the README's
# table by hand
DAEMON_VARIABLES = {"XDG_DATA_HOME", "AWS_ENDPOINT_URL_XRAY", "NO_COLOR"}
# not the agent's settings: the interpreter's own, the shell's, and CGI/WSGI request keys
NOT_SETTINGS = {"PYTHONPATH", "HOME", "TERM", "REQUEST_METHOD", "PATH_INFO", "SERVER_NAME",
                "SCRIPT_NAME", "QUERY_STRING", "REMOTE_ADDR"}


def readme_rows():
    """The README's Configuration table: {variable: default as written, backticks removed}."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `([A-Za-z_][A-Za-z0-9_]*)` \| (.+?) \| .+ \|$", line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)}: two rows"
            rows[m.group(1)] = m.group(2).replace("`", "")
        else:
            assert not line.startswith("| `"), f"a row of one variable each: {line[:80]}"
    return rows


def test_every_variable_is_documented_in_readme():
    rows = readme_rows()
    for var, _field, _parse, _default, shown, doc in config.SETTINGS:
        assert var in rows, f"{var}: no row in the README's Configuration table"
        assert rows[var] == shown, f"{var}: README says {rows[var]!r}, table {shown!r}"
        assert doc and "\n" not in doc, var
    daemon_src = "".join(p.read_text() for p in (ROOT / "xray_autoinst" / "daemon").glob("*.py"))
    for var in set(rows) - {row[config.VAR] for row in config.SETTINGS}:
        assert var in DAEMON_VARIABLES and f'"{var}"' in daemon_src, \
            f"{var}: in the README but neither a setting (config.SETTINGS) nor the daemon's"


def test_every_variable_read_is_a_setting_or_the_daemons():
    """Every literal environment variable the package or its start-up hook reads."""
    known = {row[config.VAR] for row in config.SETTINGS} | DAEMON_VARIABLES | NOT_SETTINGS
    read = re.compile(r"""(?:environ(?:\.get)?|getenv)\s*[(\[]\s*["']([A-Z_][A-Z0-9_]*)["']""")
    found = {}
    for path in [*(ROOT / "xray_autoinst").rglob("*.py"), *(ROOT / "sitecustomize").glob("*.py")]:
        for var in read.findall(path.read_text()):
            if not var.startswith("HTTP_"):
                found.setdefault(var, path.name)
    assert "XRAY_AUTOINST_EXPECT" in found and "AWS_XRAY_DAEMON_ADDRESS" in found  # it scans
    unknown = {v: f for v, f in found.items() if v not in known}
    assert not unknown, f"read but not in config.SETTINGS (nor the README): {unknown}"


def test_table_defaults_are_what_the_parsers_give():
    """A default written as a value a parser reads ("true", "10", ...) parses to the field's
    default, so the README cannot say one thing and the agent do another."""
    checked = 0
    for var, field, parse, default, shown, _doc in config.SETTINGS:
        if field is None or callable(default) or shown in ("unset", "empty") \
                or shown.startswith(("set by", "program")) or "KUBERNETES" in shown:
            continue
        value = parse(shown)
        if isinstance(field, tuple):
            value = dict(zip(field, value, strict=True))
            assert value == {f: config.Config._DEFAULTS[f] for f in field}, var
        else:
            assert value == default == config.Config._DEFAULTS[field], var
        checked += 1
    assert checked >= 15
    assert env().sampling_mode == "centralized"
    assert env(AWS_LAMBDA_FUNCTION_NAME="fn").sampling_mode == "local"  # the derived default


def test_ours_wins_and_the_standard_variable_is_still_checked():
    cfg = env(XRAY_ENABLED="true", AWS_XRAY_SDK_ENABLED="bad")
    assert cfg.enabled is True
    assert cfg.sources["AWS_XRAY_SDK_ENABLED"] == ("bad", "env (ignored: XRAY_ENABLED is set)")
    assert cfg.problems == ("AWS_XRAY_SDK_ENABLED='bad' is not valid: expected true or false; "
                            "using XRAY_ENABLED's value",)
    cfg = env(XRAY_CONTEXT_MISSING="boom")
    assert cfg.sources["XRAY_CONTEXT_MISSING"] == ("boom", "invalid")
    assert cfg.problems == ("XRAY_CONTEXT_MISSING='boom' is not valid: expected ignore | log | "
                            "call | process; using ignore",)


def test_kubernetes_host_and_port():
    assert env(KUBERNETES_SERVICE_HOST="10.0.0.1").k8s_host == "10.0.0.1:443"
    assert env(KUBERNETES_SERVICE_HOST=" h ", KUBERNETES_SERVICE_PORT="6443").k8s_host == "h:6443"
    assert env(KUBERNETES_SERVICE_PORT="6443").k8s_host is None
