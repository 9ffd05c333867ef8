"""Configuration: every environment variable the agent reads lives here, parsed once.

``from_env(environ)`` is pure: it never raises for a bad value. Each problem becomes one message
naming the variable, the bad value and what is accepted, and the documented default is used (for
a daemon address that cannot be used, tracing is turned off).
"""


import os

from . import daemon_address as _daemon_address

# --- variable names (nothing else in the agent reads os.environ for these) ------------------
SERVICE_NAME = "XRAY_SERVICE_NAME"
TRACING_NAME = "AWS_XRAY_TRACING_NAME"
DAEMON_ADDRESS = "AWS_XRAY_DAEMON_ADDRESS"
ENABLED = "XRAY_ENABLED"
SDK_ENABLED = "AWS_XRAY_SDK_ENABLED"
DISABLED_INSTRUMENTATIONS = "XRAY_DISABLED_INSTRUMENTATIONS"
SAMPLING_RULES = "XRAY_SAMPLING_RULES"
SAMPLING = "XRAY_SAMPLING"
TRUST_TRACE_HEADER = "XRAY_TRUST_TRACE_HEADER"
LOG_LEVEL = "XRAY_LOG_LEVEL"
CONTEXT_MISSING = "XRAY_CONTEXT_MISSING"
AWS_CONTEXT_MISSING = "AWS_XRAY_CONTEXT_MISSING"
SQL_QUERIES = "XRAY_SQL_QUERIES"
REDACT_QUERY_PARAMS = "XRAY_REDACT_QUERY_PARAMS"
ROUTE_ANNOTATION = "XRAY_ROUTE_ANNOTATION"
PROPAGATORS = "XRAY_PROPAGATORS"
LOG_CORRELATION = "XRAY_LOG_CORRELATION"
LOG_GROUP_NAMES = "XRAY_LOG_GROUP_NAMES"
SERVICE_VERSION = "XRAY_SERVICE_VERSION"
RESOURCE_DETECTION = "XRAY_RESOURCE_DETECTION"
# Read (never set) to find where the service runs: ECS's task metadata endpoint, Kubernetes.
ECS_METADATA_URI = "ECS_CONTAINER_METADATA_URI_V4"
K8S_HOST = "KUBERNETES_SERVICE_HOST"
K8S_PORT = "KUBERNETES_SERVICE_PORT"
# Internal (tests): the EC2 instance metadata endpoint, a directory standing in for the file
# system root where resource files are read (/sys, /proc, /var), the Kubernetes API base URL.
IMDS_ENDPOINT = "XRAY_AUTOINST_IMDS_ENDPOINT"
RESOURCE_ROOT = "XRAY_AUTOINST_RESOURCE_ROOT"
K8S_API = "XRAY_AUTOINST_K8S_API"
PROPAGATOR_CHOICES = ("xray", "tracecontext")
# Set by the launcher: which Python installation it prepared ("<sys.prefix>|<major.minor>").
EXPECT = "XRAY_AUTOINST_EXPECT"
# Test switch: hooks and patchers re-raise instead of logging.
RAISE = "XRAY_AUTOINST_RAISE"
# Internal (tests): seconds between centralized sampling target polls (rules: 30 times that).
SAMPLING_POLL = "XRAY_AUTOINST_SAMPLING_POLL"
# set by AWS Lambda (not by users): the function's name, and the trace header of the invocation
# being handled (the runtime client rewrites it before each invocation)
LAMBDA_FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"
LAMBDA_TRACE_ID = "_X_AMZN_TRACE_ID"
LAMBDA_INIT_TYPE = "AWS_LAMBDA_INITIALIZATION_TYPE"

DEFAULT_DAEMON = "127.0.0.1:2000"
DEFAULT_REDACT = "password,passwd,pwd,secret,token,key,signature,credential,auth,session"
CONTEXT_MISSING_CHOICES = ("ignore", "log", "call", "process")
_AWS_CONTEXT_MISSING = {"RUNTIME_ERROR": "log", "LOG_ERROR": "log", "IGNORE_ERROR": "ignore"}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

_NAME_OK = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ \t\n\r\f\v.:/%&#=+-@"
)
NAME_MAX = 200

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Config:
    """The effective configuration; frozen once built. (A plain class rather than a dataclass:
    ``dataclasses`` imports ``inspect``, several milliseconds on every interpreter start.)"""

    _DEFAULTS = {
        "enabled": True,
        "service_name": None,  # None: derived from the program at first use
        "udp_address": ("127.0.0.1", 2000),
        "tcp_address": ("127.0.0.1", 2000),
        "disabled_instrumentations": frozenset(),
        "sampling_rules": None,  # core.sampling.LocalRules, or None for the default rule
        "sampling_mode": "centralized",  # "centralized" or "local"
        "sampling_poll": 10.0,  # seconds between SamplingTargets calls (internal)
        "trust_trace_header": True,
        "route_annotation": True,
        "propagators": PROPAGATOR_CHOICES,
        "log_correlation": False,
        "log_groups": (),  # CloudWatch log group names or ARNs
        "service_version": None,
        "resource_detection": True,
        "ecs_metadata_uri": None,
        "k8s_host": None,  # "host:port" of the Kubernetes API when running in a pod
        "imds_endpoint": "http://169.254.169.254",
        "resource_root": "/",
        "k8s_api": None,
        "log_level": "warning",
        "context_missing": "ignore",
        "sql_queries": "sanitized",
        "redact_query_params": tuple(DEFAULT_REDACT.split(",")),
        "reraise": False,
        "lambda_function_name": None,  # AWS_LAMBDA_FUNCTION_NAME, cleaned; None outside Lambda
        "lambda_snap_start": False,  # AWS_LAMBDA_INITIALIZATION_TYPE=snap-start
        # variable -> (effective value as text, "env" | "default" | "invalid: ...")
        "sources": None,
        "problems": (),
    }
    __slots__ = tuple(_DEFAULTS)

    def __init__(self, **kw):
        for key, default in self._DEFAULTS.items():
            object.__setattr__(self, key, kw.pop(key, default))
        if kw:
            raise TypeError(f"unknown settings: {sorted(kw)}")
        if self.sources is None:
            object.__setattr__(self, "sources", {})

    def __setattr__(self, key, value):
        raise AttributeError("Config is frozen")

    def replace(self, **kw) -> "Config":
        values = {k: getattr(self, k) for k in self._DEFAULTS}
        values.update(kw)
        return Config(**values)

    def __repr__(self):
        return "Config(%s)" % ", ".join(
            f"{k}={getattr(self, k)!r}" for k in self._DEFAULTS if k not in ("sources",)
        )


def _bad(var: str, value: str, accepted: str, fallback: str) -> str:
    shown = value if len(value) <= 120 else value[:117] + "..."
    return f"{var}={shown!r} is not valid: expected {accepted}; using {fallback}"


def parse_bool(var: str, value: str, default: bool, problems: list) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    problems.append(_bad(var, value, "true or false", str(default).lower()))
    return default


def clean_name(name: str) -> tuple[str, bool]:
    """Make ``name`` acceptable to the schema's ``name`` pattern (1-200 chars). Returns
    (name, changed)."""
    fixed = "".join(c if c in _NAME_OK else "_" for c in name)[:NAME_MAX]
    if not fixed.strip():
        fixed = "unnamed"
    return fixed, fixed != name


# the one grammar of AWS_XRAY_DAEMON_ADDRESS, shared with the daemon (daemon_address.py)
parse_daemon_address = _daemon_address.parse_daemon_address


def from_env(environ=None) -> Config:
    """Parse the agent's configuration from ``environ`` (default: os.environ). Never raises."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    sources: dict = {}
    kw: dict = {}

    def get(var):
        value = env.get(var)
        return None if value is None or value.strip() == "" else value

    def record(var, value, origin):
        sources[var] = (value, origin)

    # enabled: XRAY_ENABLED wins over AWS_XRAY_SDK_ENABLED
    enabled = True
    for var in (SDK_ENABLED, ENABLED):
        raw = get(var)
        if raw is not None:
            n = len(problems)
            enabled = parse_bool(var, raw, True, problems)
            record(var, raw, "env" if len(problems) == n else "invalid")
        else:
            record(var, "true", "default")
    kw["enabled"] = enabled

    # service name
    name = None
    for var in (SERVICE_NAME, TRACING_NAME):
        raw = get(var)
        if raw is not None and name is None:
            name, changed = clean_name(raw.strip())
            if changed:
                problems.append(
                    f"{var}={raw[:120]!r} has characters X-Ray does not accept in a name (or is "
                    f"over {NAME_MAX}); using {name!r}"
                )
            record(var, name, "env")
        elif raw is not None:
            record(var, raw, f"env (ignored: {SERVICE_NAME} is set)")
    if name is None:
        record(SERVICE_NAME, "(program name)", "default")
    kw["service_name"] = name

    # daemon address
    raw = get(DAEMON_ADDRESS)
    if raw is None:
        record(DAEMON_ADDRESS, DEFAULT_DAEMON, "default")
    else:
        try:
            kw["udp_address"], kw["tcp_address"] = parse_daemon_address(raw)
            record(DAEMON_ADDRESS, raw, "env")
        except ValueError:
            problems.append(
                _bad(
                    DAEMON_ADDRESS,
                    raw,
                    "host:port, [ipv6]:port or 'udp:host:port tcp:host:port'",
                    "nothing: tracing is off",
                )
            )
            record(DAEMON_ADDRESS, raw, "invalid: tracing off")
            kw["enabled"] = False

    raw = get(DISABLED_INSTRUMENTATIONS)
    if raw is not None:
        kw["disabled_instrumentations"] = frozenset(
            p.strip().lower() for p in raw.split(",") if p.strip()
        )
        record(DISABLED_INSTRUMENTATIONS, raw, "env")
    else:
        record(DISABLED_INSTRUMENTATIONS, "", "default")

    # sampling rules
    raw = get(SAMPLING_RULES)
    if raw is not None:
        from .core import sampling

        try:
            kw["sampling_rules"] = sampling.load_rules(raw)
            record(SAMPLING_RULES, raw, "env")
        except ValueError as exc:
            problems.append(
                f"{SAMPLING_RULES}: {exc}; using the default rule (1 request/s, then 5%)"
            )
            record(SAMPLING_RULES, raw, "invalid: default rule")
    else:
        record(SAMPLING_RULES, "(X-Ray default rule: 1/s + 5%)", "default")

    raw = get(SAMPLING)
    # in AWS Lambda each invocation carries Lambda's decision: no rules to poll for
    local = kw.get("sampling_rules") is not None or get(LAMBDA_FUNCTION_NAME) is not None
    mode = "local" if local else "centralized"
    if raw is not None:
        v = raw.strip().lower()
        if v in ("local", "centralized"):
            mode = v
            record(SAMPLING, v, "env")
        else:
            problems.append(_bad(SAMPLING, raw, "local or centralized", mode))
            record(SAMPLING, raw, f"invalid: {mode}")
    else:
        record(SAMPLING, mode, "default")
    kw["sampling_mode"] = mode

    raw = get(SAMPLING_POLL)
    if raw is not None:
        try:
            poll = float(raw)
            if not 0.05 <= poll <= 3600:
                raise ValueError(raw)
            kw["sampling_poll"] = poll
            record(SAMPLING_POLL, raw, "env")
        except ValueError:
            problems.append(_bad(SAMPLING_POLL, raw, "seconds from 0.05 to 3600", "10"))
            record(SAMPLING_POLL, raw, "invalid: 10")
    else:
        record(SAMPLING_POLL, "10", "default")

    raw = get(TRUST_TRACE_HEADER)
    if raw is not None:
        n = len(problems)
        kw["trust_trace_header"] = parse_bool(TRUST_TRACE_HEADER, raw, True, problems)
        record(TRUST_TRACE_HEADER, raw, "env" if len(problems) == n else "invalid")
    else:
        record(TRUST_TRACE_HEADER, "true", "default")

    raw = get(ROUTE_ANNOTATION)
    if raw is not None:
        n = len(problems)
        kw["route_annotation"] = parse_bool(ROUTE_ANNOTATION, raw, True, problems)
        record(ROUTE_ANNOTATION, raw, "env" if len(problems) == n else "invalid")
    else:
        record(ROUTE_ANNOTATION, "true", "default")

    raw = get(LOG_LEVEL)
    if raw is not None:
        v = raw.strip().lower()
        if v in LOG_LEVELS:
            kw["log_level"] = v
            record(LOG_LEVEL, v, "env")
        else:
            problems.append(_bad(LOG_LEVEL, raw, " | ".join(LOG_LEVELS), "warning"))
            record(LOG_LEVEL, raw, "invalid: warning")
    else:
        record(LOG_LEVEL, "warning", "default")

    # context missing: ours wins over the SDK's standard variable
    cm = "ignore"
    origin = "default"
    raw_aws = get(AWS_CONTEXT_MISSING)
    if raw_aws is not None:
        v = raw_aws.strip()
        if v.upper() in _AWS_CONTEXT_MISSING:
            cm, origin = _AWS_CONTEXT_MISSING[v.upper()], f"env {AWS_CONTEXT_MISSING}"
        elif v.lower() in CONTEXT_MISSING_CHOICES:
            cm, origin = v.lower(), f"env {AWS_CONTEXT_MISSING}"
        else:
            problems.append(
                _bad(AWS_CONTEXT_MISSING, raw_aws, "RUNTIME_ERROR, LOG_ERROR or IGNORE_ERROR", cm)
            )
    raw = get(CONTEXT_MISSING)
    if raw is not None:
        v = raw.strip().lower()
        if v in CONTEXT_MISSING_CHOICES:
            cm, origin = v, "env"
        else:
            problems.append(_bad(CONTEXT_MISSING, raw, " | ".join(CONTEXT_MISSING_CHOICES), cm))
    record(CONTEXT_MISSING, cm, origin)
    kw["context_missing"] = cm

    raw = get(SQL_QUERIES)
    if raw is not None:
        v = raw.strip().lower()
        if v in ("sanitized", "off"):
            kw["sql_queries"] = v
            record(SQL_QUERIES, v, "env")
        else:
            problems.append(_bad(SQL_QUERIES, raw, "sanitized or off", "sanitized"))
            record(SQL_QUERIES, raw, "invalid: sanitized")
    else:
        record(SQL_QUERIES, "sanitized", "default")

    raw = get(REDACT_QUERY_PARAMS)
    if raw is not None:
        kw["redact_query_params"] = tuple(
            p.strip().lower() for p in raw.split(",") if p.strip()
        )
        record(REDACT_QUERY_PARAMS, raw, "env")
    else:
        record(REDACT_QUERY_PARAMS, DEFAULT_REDACT, "default")

    _fleet(get, record, problems, kw)
    raw = get(LAMBDA_FUNCTION_NAME)
    if raw is not None:
        kw["lambda_function_name"] = clean_name(raw.strip())[0]
        record(LAMBDA_FUNCTION_NAME, raw, "env")
    raw = get(LAMBDA_INIT_TYPE)
    if raw is not None:
        kw["lambda_snap_start"] = raw.strip() == "snap-start"
        record(LAMBDA_INIT_TYPE, raw, "env")

    raw = get(RAISE)
    kw["reraise"] = raw is not None and raw.strip().lower() in _TRUE

    return Config(sources=sources, problems=tuple(problems), **kw)


def _fleet(get, record, problems, kw) -> None:
    """Propagation, log correlation and where the service runs."""
    raw = get(PROPAGATORS)
    if raw is not None:
        chosen = tuple(p.strip().lower() for p in raw.split(",") if p.strip())
        bad = [p for p in chosen if p not in PROPAGATOR_CHOICES]
        if bad or not chosen:
            problems.append(_bad(PROPAGATORS, raw, "a comma-separated list of xray, tracecontext",
                                 "xray,tracecontext"))
            record(PROPAGATORS, raw, "invalid: xray,tracecontext")
        else:
            kw["propagators"] = tuple(dict.fromkeys(chosen))
            record(PROPAGATORS, ",".join(kw["propagators"]), "env")
    else:
        record(PROPAGATORS, "xray,tracecontext", "default")

    for var, field, default in ((LOG_CORRELATION, "log_correlation", False),
                                (RESOURCE_DETECTION, "resource_detection", True)):
        raw = get(var)
        if raw is not None:
            n = len(problems)
            kw[field] = parse_bool(var, raw, default, problems)
            record(var, raw, "env" if len(problems) == n else "invalid")
        else:
            record(var, str(default).lower(), "default")

    raw = get(LOG_GROUP_NAMES)
    if raw is not None:
        kw["log_groups"] = tuple(g.strip() for g in raw.split(",") if g.strip())
        record(LOG_GROUP_NAMES, raw, "env")
    else:
        record(LOG_GROUP_NAMES, "unset", "default")
    raw = get(SERVICE_VERSION)
    if raw is not None:
        kw["service_version"] = raw.strip()[:250]
        record(SERVICE_VERSION, kw["service_version"], "env")
    else:
        record(SERVICE_VERSION, "unset", "default")

    kw["ecs_metadata_uri"] = get(ECS_METADATA_URI)
    host = get(K8S_HOST)
    if host is not None:
        kw["k8s_host"] = f"{host.strip()}:{(get(K8S_PORT) or '443').strip()}"
    for var, field in ((IMDS_ENDPOINT, "imds_endpoint"), (RESOURCE_ROOT, "resource_root"),
                       (K8S_API, "k8s_api")):
        raw = get(var)
        if raw is not None:
            kw[field] = raw.strip()


def lambda_trace_header(environ=None):
    """The current Lambda invocation's trace header (``_X_AMZN_TRACE_ID``), or None. Read per
    invocation, not parsed once: the runtime client sets it before each one."""
    env = os.environ if environ is None else environ
    return env.get(LAMBDA_TRACE_ID)


# Documentation of every variable (rendered into the README and by ``xray-run --check``).
DOCS = (
    (SERVICE_NAME, "program name", "Segment name. Falls back to AWS_XRAY_TRACING_NAME, then to "
     "the project the server was started with (uvicorn app:app -> app; gunicorn shop.wsgi -> shop; "
     "Django: the package of DJANGO_SETTINGS_MODULE), else the main script's stem or -m module; "
     "decided once per process."),
    (TRACING_NAME, "unset", "Standard X-Ray SDK name variable; XRAY_SERVICE_NAME wins."),
    (DAEMON_ADDRESS, DEFAULT_DAEMON, "Daemon address: host:port, [ipv6]:port, or "
     "'udp:host:port tcp:host:port' (host and port required; the daemon reads it the same way). "
     "A malformed value turns tracing off with one warning."),
    (ENABLED, "true", "false: nothing is patched at all. Wins over AWS_XRAY_SDK_ENABLED."),
    (SDK_ENABLED, "true", "Standard X-Ray SDK switch, same meaning as XRAY_ENABLED."),
    (DISABLED_INSTRUMENTATIONS, "empty", "Comma-separated integration names to skip."),
    (SAMPLING_RULES, "unset", "Path to, or inline JSON of, local sampling rules (version 1 or 2)."),
    (SAMPLING, "centralized", "centralized: rules from the daemon's proxy; local: local rules only "
     "(the default when XRAY_SAMPLING_RULES is set, and in AWS Lambda)."),
    (SAMPLING_POLL, "10", "Internal, for tests: seconds between centralized sampling target "
     "polls; rules are fetched every 30 polls (5 minutes by default)."),
    (TRUST_TRACE_HEADER, "true", "false: ignore the incoming Sampled= decision (edge services)."),
    (ROUTE_ANNOTATION, "true", "Record the framework's route template (FastAPI/Starlette, "
     "Django, Flask) as the annotation http_route; false: don't."),
    (PROPAGATORS, "xray,tracecontext", "Trace context read from requests and sent downstream: "
     "xray (X-Amzn-Trace-Id), tracecontext (W3C traceparent/tracestate); X-Ray's wins when both."),
    (LOG_CORRELATION, "false", "true: also put the trace id into the log format of applications "
     "that call logging.basicConfig() without a format."),
    (LOG_GROUP_NAMES, "unset", "CloudWatch log groups (names or ARNs, comma-separated) recorded "
     "on segments as aws.cloudwatch_logs, for the console's logs-for-this-trace link."),
    (SERVICE_VERSION, "unset", "The application's version, recorded as service.version."),
    (RESOURCE_DETECTION, "true", "Detect where the service runs (Elastic Beanstalk, EKS, ECS, "
     "EC2) in the background and record origin and aws.* on segments; false: don't."),
    (ECS_METADATA_URI, "set by ECS", "Read by the detection: ECS's task metadata endpoint."),
    (K8S_HOST, "set by Kubernetes", "Read by the detection (with KUBERNETES_SERVICE_PORT): a pod."),
    (IMDS_ENDPOINT, "http://169.254.169.254", "Internal, for the agent's tests: the EC2 instance "
     "metadata endpoint."),
    (RESOURCE_ROOT, "/", "Internal, for the agent's tests: where /sys, /proc and /var are read."),
    (K8S_API, "https://KUBERNETES_SERVICE_HOST:PORT", "Internal, for the agent's tests: the "
     "Kubernetes API."),
    (LOG_LEVEL, "warning", "The agent's own log level (stderr, logger 'xray_autoinst')."),
    (CONTEXT_MISSING, "ignore", "Calls outside a request: ignore | log | call | process."),
    (AWS_CONTEXT_MISSING, "unset", "Standard SDK values: RUNTIME_ERROR/LOG_ERROR = log, "
     "IGNORE_ERROR = ignore. XRAY_CONTEXT_MISSING wins."),
    (SQL_QUERIES, "sanitized", "sanitized: record queries with literals replaced by ?; off."),
    (REDACT_QUERY_PARAMS, DEFAULT_REDACT, "URL query parameter name fragments whose values are "
     "replaced by REDACTED (case-insensitive)."),
    (LAMBDA_FUNCTION_NAME, "set by Lambda", "Names the subsegment recorded for each Lambda "
     "invocation (the function's own segment is Lambda's)."),
    (LAMBDA_TRACE_ID, "set by Lambda", "The invocation's trace header (Root, Parent, Sampled): "
     "the subsegments of each invocation go under that Parent; Sampled=0 records nothing."),
    (LAMBDA_INIT_TYPE, "set by Lambda", "snap-start: fresh ids and socket in every environment "
     "restored from the snapshot."),
)
