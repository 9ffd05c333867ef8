"""Configuration: every environment variable the agent reads lives here, parsed once.

``SETTINGS`` is the table: one row per variable (name, ``Config`` field, parser, default, the
default as documented, a one-line doc). ``from_env`` reads it in one loop; the README's
Configuration table and ``xray-run --check`` follow it (a test compares the README with it).

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
PROPAGATOR_CHOICES = ("xray", "tracecontext")
CONTEXT_MISSING_CHOICES = ("ignore", "log", "call", "process")
_AWS_CONTEXT_MISSING = {"RUNTIME_ERROR": "log", "LOG_ERROR": "log", "IGNORE_ERROR": "ignore"}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

_NAME_OK = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ \t\n\r\f\v.:/%&#=+-@"
)
NAME_MAX = 200

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# --- parsers: text -> value; a bad value raises ValueError saying what is accepted (the
# parsers in _SAYS_WHY: what is wrong). No classes of our own here: each costs start-up time.


def _bool(raw):
    v = raw.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError("true or false")


def _choice(choices, accepted=None):
    def parse(raw):
        v = raw.strip().lower()
        if v in choices:
            return v
        raise ValueError(accepted or " | ".join(choices))
    return parse


def _names(raw):
    return frozenset(p.strip().lower() for p in raw.split(",") if p.strip())


def _lower_list(raw):
    return tuple(p.strip().lower() for p in raw.split(",") if p.strip())


def _list(raw):
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def _service_name(raw):  # (and Lambda's function name)
    return clean_name(raw.strip())[0]  # a changed service name is said by from_env


def _daemon(raw):
    try:
        return parse_daemon_address(raw)
    except ValueError:
        raise ValueError(_daemon_address.EXPECTED) from None


def _rules(raw):
    from .core import sampling

    return sampling.load_rules(raw)


def _poll(raw):
    try:
        poll = float(raw)
    except ValueError:
        poll = -1.0
    if 0.05 <= poll <= 3600:
        return poll
    raise ValueError("seconds from 0.05 to 3600")


def _aws_context_missing(raw):
    v = raw.strip()
    if v.upper() in _AWS_CONTEXT_MISSING:
        return _AWS_CONTEXT_MISSING[v.upper()]
    if v.lower() in CONTEXT_MISSING_CHOICES:
        return v.lower()
    raise ValueError("RUNTIME_ERROR, LOG_ERROR or IGNORE_ERROR")


def _propagators(raw):
    chosen = _lower_list(raw)
    if not chosen or any(p not in PROPAGATOR_CHOICES for p in chosen):
        raise ValueError("a comma-separated list of xray, tracecontext")
    return tuple(dict.fromkeys(chosen))


def _sampling_default(kw, get):
    """Local with local rules, and in AWS Lambda (each invocation carries Lambda's decision:
    no rules to poll for); else centralized."""
    local = kw.get("sampling_rules") is not None or get(LAMBDA_FUNCTION_NAME) is not None
    return "local" if local else "centralized"


# --- the table ------------------------------------------------------------------------------


# One row per variable: (variable, the Config field it sets, parser, default, the default as
# the README writes it, a one-line doc). The field is None for a variable documented here and
# read elsewhere; a tuple when the parser gives one value per field. The default is a value, or
# a function (fields parsed so far, get) for a derived one. When two rows set one field, the
# first wins when its variable is set (ours over the X-Ray SDK's standard one), even with a bad
# value (its default is used then); the other is still checked.
SETTINGS = (
    (SERVICE_NAME, "service_name", _service_name, None, "program name",
      "Segment name. Falls back to AWS_XRAY_TRACING_NAME, then to the project the server was "
      "started with (uvicorn app:app -> app; gunicorn shop.wsgi -> shop; Django: the package of "
      "DJANGO_SETTINGS_MODULE), else the main script's stem or -m module; decided once."),
    (TRACING_NAME, "service_name", _service_name, None, "unset",
      "Standard X-Ray SDK name variable; XRAY_SERVICE_NAME wins."),
    (DAEMON_ADDRESS, ("udp_address", "tcp_address"), _daemon,
      (("127.0.0.1", 2000), ("127.0.0.1", 2000)), DEFAULT_DAEMON,
      "Daemon address: host:port, [ipv6]:port, or 'udp:host:port tcp:host:port' (host and port "
      "required; the daemon reads it the same way). A malformed value turns tracing off."),
    (ENABLED, "enabled", _bool, True, "true",
      "false: nothing is patched at all. Wins over AWS_XRAY_SDK_ENABLED."),
    (SDK_ENABLED, "enabled", _bool, True, "true",
      "Standard X-Ray SDK switch, same meaning as XRAY_ENABLED."),
    (DISABLED_INSTRUMENTATIONS, "disabled_instrumentations", _names, frozenset(), "empty",
      "Comma-separated integration names to skip."),
    (SAMPLING_RULES, "sampling_rules", _rules, None, "unset",
      "Path to, or inline JSON of, local sampling rules (version 1 or 2); unset: the X-Ray "
      "default rule (1 request/s, then 5%)."),
    (SAMPLING, "sampling_mode", _choice(("local", "centralized"), "local or centralized"),
      _sampling_default, "centralized",
      "centralized: rules from the daemon's proxy; local: local rules only (the default when "
      "XRAY_SAMPLING_RULES is set, and in AWS Lambda)."),
    (SAMPLING_POLL, "sampling_poll", _poll, 10.0, "10",
      "Internal, for tests: seconds between centralized sampling target polls; rules are "
      "fetched every 30 polls (5 minutes by default)."),
    (TRUST_TRACE_HEADER, "trust_trace_header", _bool, True, "true",
      "false: ignore the incoming Sampled= decision (edge services)."),
    (ROUTE_ANNOTATION, "route_annotation", _bool, True, "true",
      "Record the framework's route template as the annotation http_route; false: don't."),
    (PROPAGATORS, "propagators", _propagators, PROPAGATOR_CHOICES, "xray,tracecontext",
      "Trace context read from requests and sent downstream: xray (X-Amzn-Trace-Id), "
      "tracecontext (W3C traceparent/tracestate); X-Ray's wins when both."),
    (LOG_CORRELATION, "log_correlation", _bool, False, "false",
      "true: also put the trace id into the log format of applications that set none."),
    (LOG_GROUP_NAMES, "log_groups", _list, (), "unset",
      "CloudWatch log groups (names or ARNs, comma-separated) recorded as aws.cloudwatch_logs."),
    (SERVICE_VERSION, "service_version", lambda raw: raw.strip()[:250], None, "unset",
      "The application's version, recorded as service.version."),
    (RESOURCE_DETECTION, "resource_detection", _bool, True, "true",
      "Detect where the service runs (Elastic Beanstalk, EKS, ECS, EC2) in the background and "
      "record origin and aws.* on segments; false: don't."),
    (ECS_METADATA_URI, "ecs_metadata_uri", str.strip, None, "set by ECS",
      "Read by the detection: ECS's task metadata endpoint."),
    (K8S_HOST, "k8s_host", str.strip, None, "set by Kubernetes",
      "Read by the detection (with KUBERNETES_SERVICE_PORT): the service runs in a pod."),
    (K8S_PORT, None, None, None, "set by Kubernetes",
      "Read by the detection: the Kubernetes API's port (443 when unset)."),
    (IMDS_ENDPOINT, "imds_endpoint", str.strip, "http://169.254.169.254", "http://169.254.169.254",
      "Internal, for the agent's tests: the EC2 instance metadata endpoint."),
    (RESOURCE_ROOT, "resource_root", str.strip, "/", "/",
      "Internal, for the agent's tests: where /sys, /proc and /var are read."),
    (K8S_API, "k8s_api", str.strip, None, "https://KUBERNETES_SERVICE_HOST:PORT",
      "Internal, for the agent's tests: the Kubernetes API."),
    (LOG_LEVEL, "log_level", _choice(LOG_LEVELS), "warning", "warning",
      "The agent's own log level (stderr, logger 'xray_autoinst')."),
    (CONTEXT_MISSING, "context_missing", _choice(CONTEXT_MISSING_CHOICES), "ignore", "ignore",
      "Calls outside a request: ignore | log | call | process."),
    (AWS_CONTEXT_MISSING, "context_missing", _aws_context_missing, "ignore", "unset",
      "Standard SDK values: RUNTIME_ERROR/LOG_ERROR = log, IGNORE_ERROR = ignore. "
      "XRAY_CONTEXT_MISSING wins."),
    (SQL_QUERIES, "sql_queries", _choice(("sanitized", "off"), "sanitized or off"),
      "sanitized", "sanitized", "sanitized: record queries with literals replaced by ?; off."),
    (REDACT_QUERY_PARAMS, "redact_query_params", _lower_list, tuple(DEFAULT_REDACT.split(",")),
      DEFAULT_REDACT, "URL query parameter name fragments whose values are replaced by "
      "REDACTED (case-insensitive)."),
    (LAMBDA_FUNCTION_NAME, "lambda_function_name", _service_name, None, "set by Lambda",
      "Names the subsegment recorded for each Lambda invocation."),
    (LAMBDA_TRACE_ID, None, None, None, "set by Lambda",
      "The invocation's trace header, read per invocation: the subsegments of each invocation "
      "go under its Parent; Sampled=0 records nothing."),
    (LAMBDA_INIT_TYPE, "lambda_snap_start", lambda raw: raw.strip() == "snap-start", False,
      "set by Lambda", "snap-start: fresh ids and socket in every restored environment."),
    (EXPECT, None, None, None, "set by xray-run",
      "Internal: the installation xray-run prepared; the start-up hook acts only in it."),
    (RAISE, "reraise", lambda raw: raw.strip().lower() in _TRUE, False, "unset",
      "Internal, for the agent's own tests only: 1 makes instrumentation failures raise."),
)
VAR, FIELD, PARSE, DEFAULT, SHOWN, DOC = range(6)  # the columns
# the messages' "using ..." where the documented default does not say it
_FALLBACK = {DAEMON_ADDRESS: "nothing: tracing is off",
             SAMPLING_RULES: "the default rule (1 request/s, then 5%)",
             AWS_CONTEXT_MISSING: "ignore"}
# variables whose parser's ValueError says what is wrong: "VAR: <what>; using <default>"
_SAYS_WHY = {SAMPLING_RULES}


def _field_defaults():
    """Config's fields and their defaults, from the table (the first row of a field gives it)."""
    defaults = {"sampling_mode": "centralized"}  # the derived default outside any environment
    for _var, field, _parse, default, _shown, _doc in SETTINGS:
        if isinstance(field, tuple):
            defaults.update(zip(field, default, strict=True))
        elif field and field not in defaults:
            defaults[field] = default
    # variable -> (value as text, "env" | "default" | "invalid" | "env (ignored: ...)")
    defaults["sources"] = None
    defaults["problems"] = ()
    return defaults


class Config:
    """The effective configuration; frozen once built. (A plain class rather than a dataclass:
    ``dataclasses`` imports ``inspect``, several milliseconds on every interpreter start.)"""

    _DEFAULTS = _field_defaults()
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


def clean_name(name: str) -> tuple[str, bool]:
    """Make ``name`` acceptable to the schema's ``name`` pattern (1-200 chars). Returns
    (name, changed)."""
    fixed = "".join(c if c in _NAME_OK else "_" for c in name)[:NAME_MAX]
    if not fixed.strip():
        fixed = "unnamed"
    return fixed, fixed != name


# the one grammar of AWS_XRAY_DAEMON_ADDRESS, shared with the daemon (daemon_address.py)
parse_daemon_address = _daemon_address.parse_daemon_address


_NAMES = frozenset(row[VAR] for row in SETTINGS)


def from_env(environ=None) -> Config:
    """Parse the agent's configuration from ``environ`` (default: os.environ). Never raises."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    sources: dict = {}
    kw: dict = {}  # fields not in it take Config's defaults
    claimed: dict = {}  # field -> the variable that set it

    def get(var):
        value = env.get(var)
        return None if value is None or value.strip() == "" else value

    if len(env) < 100:  # os.environ.get raises and catches a KeyError for each name it lacks:
        # for an environment of a usual size, one pass over its names costs less
        env = {var: env[var] for var in _NAMES.intersection(env)}
    for var, field, parse, default, shown, _doc in SETTINGS:
        raw = env.get(var)
        derived = callable(default)
        if not raw or raw.isspace():  # unset (a blank value is unset)
            if derived and field not in claimed:
                kw[field] = shown = default(kw, get)
            sources[var] = (shown, "default")
            continue
        if field is None:  # documented here, read elsewhere (or by the special cases below)
            sources[var] = (raw, "env")
            continue
        winner = claimed.get(field)  # an earlier row's variable is set: it wins
        origin = f"env (ignored: {winner} is set)" if winner else "env"
        try:
            value = parse(raw)
        except ValueError as exc:
            value = default(kw, get) if derived else default
            if winner:
                fallback = f"{winner}'s value"
            else:
                origin = "invalid"
                fallback = value if derived else _FALLBACK.get(var, shown)
            if var in _SAYS_WHY:
                problems.append(f"{var}: {exc}; using {fallback}")
            else:
                problems.append(_bad(var, raw, str(exc), fallback))
        sources[var] = (raw, origin)
        if not winner:
            claimed[field] = var
            if isinstance(field, tuple):  # one parser, several fields (the daemon's UDP, TCP)
                kw.update(zip(field, value, strict=True))
            else:
                kw[field] = value

    # the special cases: a service name X-Ray would refuse is cleaned (one warning); an unusable
    # daemon address turns tracing off; the Kubernetes API's address is host and port
    var = claimed.get("service_name")
    if var is not None and kw["service_name"] != env[var].strip():
        problems.append(f"{var}={env[var][:120]!r} has characters X-Ray does not accept in a "
                        f"name (or is over {NAME_MAX}); using {kw['service_name']!r}")
    if sources[DAEMON_ADDRESS][1] == "invalid":
        kw["enabled"] = False
    if "k8s_host" in kw:
        kw["k8s_host"] = f"{kw['k8s_host']}:{(get(K8S_PORT) or '443').strip()}"
    return Config(sources=sources, problems=tuple(problems), **kw)


def lambda_trace_header(environ=None):
    """The current Lambda invocation's trace header (``_X_AMZN_TRACE_ID``), or None. Read per
    invocation, not parsed once: the runtime client sets it before each one."""
    env = os.environ if environ is None else environ
    return env.get(LAMBDA_TRACE_ID)
