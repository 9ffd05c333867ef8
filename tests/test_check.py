"""``xray-run --check``: an invalid daemon address is never replaced by the default one when
probing, a command after --check is described (never run), the service name and the local
sampling rules are shown."""

import os
import sys

import pytest

from xray_autoinst import check
from xray_autoinst.core import centralized_rules as centralized

RULES = ('{"version": 2, "rules": [{"description": "health", "host": "*", "http_method": "GET",'
         ' "url_path": "/health", "fixed_target": 0, "rate": 0}],'
         ' "default": {"fixed_target": 2, "rate": 0.1}}')


@pytest.fixture
def no_network(monkeypatch):
    """Fails the test if the check resolves or probes any address."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"probed {args}")

    monkeypatch.setattr(centralized, "probe", refuse)
    monkeypatch.setattr(check.socket, "getaddrinfo", refuse)
    return calls


@pytest.mark.parametrize("value", ["2000", "localhost", "garbage", "udp:h:1"])
def test_invalid_daemon_address_probes_nothing(no_network, value):
    text, ok = check.report({"AWS_XRAY_DAEMON_ADDRESS": value}, None)
    assert not ok
    assert no_network == []
    assert "proxy answers" not in text and "resolves to" not in text
    assert f"AWS_XRAY_DAEMON_ADDRESS={value!r} is not valid" in text
    assert "no address probed" in text


def test_valid_address_is_resolved_and_probed(monkeypatch):
    probed = []
    monkeypatch.setattr(centralized, "probe", lambda addr: (probed.append(addr), (False, "no"))[1])
    text, _ok = check.report({"AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2999"}, None)
    assert probed == [("127.0.0.1", 2999)]
    assert "udp 127.0.0.1:2999 resolves to 127.0.0.1" in text


@pytest.mark.parametrize(
    "command, name",
    [
        (["python", "app.py"], "app"),
        (["python3.12", "-u", "/srv/shop/server.py", "--port", "80"], "server"),
        (["python", "-m", "orders.api"], "orders.api"),
        (["gunicorn", "-b", "0.0.0.0:8000", "-w", "2", "shop.wsgi:application"], "shop"),
        (["uvicorn", "app:app", "--port", "80"], "app"),
        (["celery", "-A", "tasks", "worker"], "tasks"),
        (["./run-billing"], "run-billing"),
    ],
)
def test_service_name_from_the_command(command, name):
    text, _ok = check.report({"XRAY_SAMPLING": "local"}, command)
    line = next(x for x in text.splitlines() if x.startswith("service name: "))
    assert line.split("  [")[0] == f"service name: {name}", line


def test_service_name_from_the_environment_wins():
    text, _ok = check.report({"XRAY_SERVICE_NAME": "orders", "XRAY_SAMPLING": "local"},
                             ["python", "app.py"])
    assert "service name: orders  [XRAY_SERVICE_NAME]" in text


def test_command_is_described_never_run(tmp_path):
    marker = tmp_path / "ran"
    script = tmp_path / "job.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    text, _ok = check.report({"XRAY_SAMPLING": "local"}, [sys.executable, str(script)])
    assert not marker.exists()
    assert "(not run: --check only describes it)" in text
    assert f"interpreter {sys.executable}: this installation's -- traced" in text


def test_command_of_another_interpreter_is_said_untraced(tmp_path):
    other = tmp_path / "python3"
    other.write_text("#!/bin/sh\necho '/elsewhere|3.9'\n")
    other.chmod(0o755)
    text, _ok = check.report({"XRAY_SAMPLING": "local"}, [str(other), "app.py"])
    assert "is NOT this installation's" in text and "it is NOT traced" in text


def test_python_shebang_is_followed(tmp_path):
    tool = tmp_path / "tool"
    tool.write_text(f"#!{sys.executable}\nprint('never')\n")
    tool.chmod(0o755)
    text, _ok = check.report({"XRAY_SAMPLING": "local"}, [str(tool)])
    assert f"interpreter {sys.executable}: this installation's -- traced" in text


def test_command_not_found_and_not_python(tmp_path):
    text, _ok = check.report({"XRAY_SAMPLING": "local"}, ["no-such-command-xyz"])
    assert "no-such-command-xyz: command NOT found on PATH" in text
    sh = tmp_path / "run.sh"
    sh.write_text("#!/bin/sh\nexit 0\n")
    sh.chmod(0o755)
    text, _ok = check.report({"XRAY_SAMPLING": "local", "PATH": os.environ["PATH"]}, [str(sh)])
    assert "not a Python program" in text


def test_valid_local_rules_are_summarised():
    text, ok = check.report({"XRAY_SAMPLING_RULES": RULES, "XRAY_SAMPLING": "local"}, None)
    assert ok
    assert "local rules (version 2), first match wins:" in text
    assert "1. 'health': method=GET path=/health -> 0/s then 0%" in text
    assert "default: 2/s then 10%" in text


def test_main_takes_the_command(capsys):
    assert check.main(["--", "no-such-command-xyz"]) in (0, 1)
    assert "no-such-command-xyz: command NOT found" in capsys.readouterr().out


def section(text, title):
    """The lines of one section of the report ("daemon:", "sampling:", ...)."""
    part = text.split(f"\n{title}\n", 1)[1]
    return part.split("\n\n", 1)[0]


@pytest.mark.parametrize("value", ["nonsense", "2000", "localhost"])
def test_invalid_daemon_address_says_what_is_accepted_and_that_tracing_is_off(no_network, value):
    text, ok = check.report({"AWS_XRAY_DAEMON_ADDRESS": value}, None)
    daemon = section(text, "daemon:")
    assert f"AWS_XRAY_DAEMON_ADDRESS={value!r} is not valid" in daemon
    assert "expected host:port, [ipv6]:port or 'udp:host:port tcp:host:port'" in daemon
    assert "tracing is OFF" in daemon
    assert section(text, "sampling:").strip() == "none: tracing is off"
    assert "  tracing                         OFF" in text and not ok


def test_command_of_this_installation_while_tracing_is_off(no_network):
    text, ok = check.report({"AWS_XRAY_DAEMON_ADDRESS": "nonsense"}, [sys.executable, "app.py"])
    line = next(x for x in section(text, "command:").splitlines() if "interpreter" in x)
    assert "this installation's -- traced when tracing is on, but tracing is OFF" in line
    assert not ok


def test_untraced_command_fails_the_check(tmp_path):
    other = tmp_path / "python3"
    other.write_text("#!/bin/sh\necho '/elsewhere|3.9'\necho False\n")
    other.chmod(0o755)
    text, ok = check.report({"XRAY_SAMPLING": "local"}, [str(other), "app.py"])
    assert not ok
    assert f"the command ({other}) would NOT be traced" in section(text, "problems:")
    assert "install xray-autoinst in that environment" in text
    text, ok = check.report({"XRAY_SAMPLING": "local"}, ["no-such-command-xyz"])
    assert not ok and "would NOT be traced" in text
    text, ok = check.report({"XRAY_SAMPLING": "local"}, [sys.executable, "app.py"])
    assert ok and "problems:" not in text


def test_another_installation_with_the_agent_is_pointed_to_its_own_check(tmp_path):
    other = tmp_path / "python3"
    other.write_text("#!/bin/sh\necho '/srv/venv|3.12'\necho True\n")
    other.chmod(0o755)
    text, _ok = check.report({"XRAY_SAMPLING": "local"}, [str(other), "app.py"])
    assert "it has xray-autoinst of its own: check with /srv/venv/bin/xray-run --check " \
           f"{other} app.py" in text
    assert "(the integrations below are this installation's, not that interpreter's)" in text


def test_service_name_from_the_standard_variable():
    text, _ok = check.report({"AWS_XRAY_TRACING_NAME": "legacy", "XRAY_SAMPLING": "local"},
                             ["python", "app.py"])
    assert "service name: legacy  [AWS_XRAY_TRACING_NAME]" in text


def test_sampling_rules_are_counted_with_their_default_and_source(tmp_path):
    text, _ok = check.report({"XRAY_SAMPLING_RULES": RULES}, None)
    sampling = section(text, "sampling:")
    assert "1 rule before the default rule (2/s then 10%), from inline JSON" in sampling
    path = tmp_path / "rules.json"
    path.write_text('{"version": 1, "rules": [], "default": {"fixed_target": 0, "rate": 0.5}}')
    sampling = section(check.report({"XRAY_SAMPLING_RULES": str(path)}, None)[0], "sampling:")
    assert f"0 rules before the default rule (0/s then 50%), from {path}" in sampling
    assert "mode: local" in sampling and "proxy" not in sampling


def test_centralized_sampling_says_the_rules_come_from_the_daemon(monkeypatch):
    monkeypatch.setattr(centralized, "probe", lambda addr: (True, "2 rule(s) apply: a, Default"))
    sampling = section(check.report({}, None)[0], "sampling:")
    assert "mode: centralized, from the proxy at tcp 127.0.0.1:2000" in sampling
    assert "the rules and quotas come from the daemon: rules every 300 s, quotas every 10 s" \
        in sampling
    assert "proxy answers: 2 rule(s) apply: a, Default" in sampling
