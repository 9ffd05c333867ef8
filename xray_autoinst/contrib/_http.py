"""Shared machinery of the outbound HTTP integrations (``http_client``, ``http_urllib3``,
``http_httpx``, ``http_aiohttp``) and the botocore one: one subsegment per request/response
exchange, the connection phases of a new connection, trace header injection, and telling the
agent's own traffic apart. Clients that hand a request over as data rather than writing it
through http.client (httpx, aiohttp) go through ``_http_data``, built on the pieces here: the
same names, URLs, redaction, status flags and causes.

The exchange
    begins at ``endheaders``, when the request line and headers written by ``putrequest`` and
    ``putheader`` are about to be sent (``request``, ``urllib.request``, urllib3 and requests
    all go through them), before any connection is opened; it is kept on the connection
    object -- never made the current entity, so nothing the application does meanwhile nests
    under it -- and ends when ``getresponse`` returns or fails, or when sending fails.

The connection phases
    are timed by the outermost ``connect`` of a connection: ``dns`` is the ``socket.getaddrinfo``
    call made while connecting (a process-wide hook that only times calls made inside a
    connect we are recording; everything else goes straight through), ``dial`` runs from the
    end of the lookup to the moment the TCP socket is connected, ``tls`` from there to the end
    of ``connect`` (HTTPS only). They become a ``connect`` subsegment holding ``dns``, ``dial``
    and ``tls`` under the exchange. A connection opened before the request is written (urllib3
    connects HTTPS connections ahead of ``putrequest``; code may call ``connect()`` itself)
    keeps its phases until its next exchange begins in the same trace context. A reused
    keep-alive connection has no ``connect`` child.

Inside a botocore call (an ``aws`` subsegment is current) no HTTP subsegment is made -- the
AWS call is the node -- but the phases become children of the AWS subsegment.

Why one module of ~530 lines: the exchange, the connection phases and the getaddrinfo hook are
one job -- recording one request on a connection -- and share its per-connection state (the
attributes kept on the connection object: a connect's phases wait there for the exchange that
takes them). The phases (about 150 lines) are the part that could move out, with that hand-over
as their interface.
"""

from __future__ import annotations

import contextvars
import errno
import functools
import socket
import threading
import time

from .. import config as _config
from ..core import header as _header
from ..core import tracer as _tracer_mod
from ..core import wrapping
from ..core.entities import Subsegment, clip
from ..core.urls import clean_url, redact_query
from . import _cpython, _guard

TRACE_HEADER = "X-Amzn-Trace-Id"
_TRACE_HEADER_LINE = b"\nx-amzn-trace-id:"
_TRACE_HEADER_PREFIX = b"X-Amzn-Trace-Id: "
_TRACEPARENT_LINE = b"\ntraceparent:"
# http.client internals (what each means, and the test that checks it: _cpython.py)
_STATE = _cpython.STATE  # the request state: _REQ_STARTED while putheader is allowed
_REQ_STARTED = _cpython.REQ_STARTED
_BUFFER = _cpython.BUFFER  # the request line and header lines being written
_METHOD = _cpython.METHOD
_TUNNEL_HOST = _cpython.TUNNEL_HOST
_TUNNEL_PORT = _cpython.TUNNEL_PORT
# State kept on connections, as attributes whose class defaults (None) are set on
# http.client.HTTPConnection while patched. Never through ``conn.__dict__``: reading an
# instance's ``__dict__`` makes CPython 3.11+ give up its compact attribute storage for that
# object, and every attribute access http.client makes on the connection afterwards is slower
# (about 10 000 more instructions per request, measured with callgrind).
SUB = "_xray_autoinst_sub"  # the open exchange subsegment
PHASES = "_xray_autoinst_phases"  # phases of a connect that preceded its exchange
ORIGIN = "_xray_autoinst_origin"  # (tunnel host, name, "scheme://host[:port]"), cached
INTERNAL = "_xray_autoinst_internal"  # on a thread or a connection: the agent's own traffic
CONN_DEFAULTS = {SUB: None, PHASES: None, ORIGIN: None, INTERNAL: False}

_time = time.time
_current = _tracer_mod.current_entity
get_tracer = _tracer_mod.get_tracer

# True while work the agent does for itself runs (calls to the X-Ray service, the daemon relay);
# the exchange subsegment while httpx's transport runs one (nothing underneath records more,
# and the connect phases of a connection opened for it go under it)
internal: contextvars.ContextVar = contextvars.ContextVar("xray_autoinst_internal", default=False)
# The connect being timed in this context (a _Phases), for the getaddrinfo hook
_recording: contextvars.ContextVar = contextvars.ContextVar("xray_autoinst_connect", default=None)

# Set by http_client.patch(): exchanges are recorded (otherwise only phases under AWS calls)
state = {"exchanges": False}


# instrumentation bookkeeping failed: logged at most once a minute; the call is unaffected
fail = _guard.reporter(
    "http", "xray-autoinst outbound HTTP instrumentation failed (%s); the call is unaffected")


_LOOPBACK = frozenset(("127.0.0.1", "localhost", "::1", "localhost.localdomain"))


def mark_internal(conn) -> None:
    """Mark an HTTP connection as the agent's own: it is never recorded nor given a header."""
    conn._xray_autoinst_internal = True


def is_agent_traffic(conn, tracer, cur=None) -> bool:
    """The daemon's address (its sampling proxy), a connection marked with mark_internal,
    work under ``internal``, or (outside any request) a thread the agent flags as its own."""
    if _server(conn, tracer)[3] or conn._xray_autoinst_internal or internal.get():
        return True
    # the agent's threads never carry a request's context (ctx_threading leaves them alone)
    return cur is None and getattr(threading.current_thread(), INTERNAL, False)


def replace_method(owner, name, make) -> bool:
    """Install ``make(original)`` as ``owner.name``, marked as ``core.wrapping``'s wrappers are
    (``wrapping.unwrap`` restores it; the registry contract sees it). For the per-request hot
    path: a replacement with the original's own signature costs ~0.1 us a call where the
    generic ``(wrapped, instance, args, kwargs)`` wrapper costs ~1.4 us (bound method, argument
    packing; measured on http.client's endheaders and getresponse). False if already done."""
    raw = owner.__dict__.get(name)
    if raw is None or wrapping.is_wrapped(raw):
        return False
    replacement = make(raw)
    functools.update_wrapper(replacement, raw)
    wrapping.mark(replacement, raw)
    setattr(owner, name, replacement)
    return True


# -- names and URLs ------------------------------------------------------------------------------
_names: dict = {}


def _name(host: str) -> str:
    name = _names.get(host)
    if name is None:
        name, _ = _config.clean_name(host or "unknown")
        if len(_names) > 512:
            _names.clear()
        _names[host] = name
    return name


def _hostport_of(url: str):
    """(scheme, host) of an absolute URL (as sent to a forward proxy)."""
    scheme, _, rest = url.partition("://")
    cut = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if 0 <= i < cut:
            cut = i
    netloc = rest[:cut]
    hostport = netloc[netloc.rfind("@") + 1 :]
    if hostport.startswith("["):
        host = hostport[1 : hostport.find("]")] if "]" in hostport else hostport[1:]
    else:
        host = hostport.rpartition(":")[0] if ":" in hostport else hostport
    return scheme.lower(), host


def _server(conn, tracer):
    """(tunnel host, subsegment name, ``scheme://host[:port]``, is the daemon's address,
    config) of the server behind ``conn``, cached on the connection."""
    tunnel = getattr(conn, _TUNNEL_HOST, None)
    cached = conn._xray_autoinst_origin
    cfg = tracer.config
    if cached is not None and cached[0] == tunnel and cached[4] is cfg:
        return cached
    host = tunnel or conn.host
    port = (getattr(conn, _TUNNEL_PORT, None) if tunnel else None) or conn.port
    if "@" in host:  # never keep userinfo, even one smuggled into the host
        host = host[host.rfind("@") + 1 :]
    default = conn.default_port
    origin = origin_of("https" if default == 443 else "http", host, port, default)
    daemon = not tunnel and is_daemon(conn.host, conn.port, cfg)
    cached = conn._xray_autoinst_origin = (tunnel, _name(host), origin, daemon, cfg)
    return cached


def origin_of(scheme: str, host: str, port, default) -> str:
    """``scheme://host[:port]`` as recorded: IPv6 hosts bracketed, the default port left out."""
    origin = scheme + "://" + ("[" + host + "]" if ":" in host else host)
    if port and port != default:
        origin += ":%d" % port
    return origin


def is_daemon(host, port, cfg) -> bool:
    """``host:port`` is the daemon's TCP address (its sampling proxy), under any loopback name."""
    daemon_host, daemon_port = cfg.tcp_address
    return port == daemon_port and (
        host == daemon_host or (host in _LOOPBACK and daemon_host in _LOOPBACK))


def _url(origin, path, secret_keys):
    """The URL recorded for the request ``path`` sent to ``origin``: no userinfo, secret query
    values redacted, no fragment, at most 250 characters."""
    if path[:1] == "/":
        q = path.find("?")
        if q >= 0:
            query = path[q + 1 :]
            cut = query.find("#")
            if cut >= 0:
                query = query[:cut]
            url = origin + path[: q + 1] + redact_query(query, secret_keys)
        else:
            cut = path.find("#")
            url = origin + (path if cut < 0 else path[:cut])
        return url if len(url) <= 250 else clip(url)
    if path[:7].lower() == "http://" or path[:8].lower() == "https://":  # to a forward proxy
        return clean_url(path, secret_keys)
    return clean_url(origin + "/" + path, secret_keys)  # "*" (OPTIONS), a path without "/"


# -- the exchange ------------------------------------------------------------------------------
# The hot path reads http.client's attributes by name (one specialized attribute load each
# rather than a getattr call); the names are _cpython's, checked here at import
if (_STATE, _BUFFER, _METHOD, _TUNNEL_HOST) != (
        "_HTTPConnection__state", "_buffer", "_method", "_tunnel_host"):  # pragma: no cover
    raise ImportError("contrib._cpython names changed: update _http's hot path")


def begin_exchange(conn) -> None:
    """At ``endheaders``: begin the exchange of the request whose headers are about to be sent
    on ``conn`` and add the trace header to them."""
    stale = conn._xray_autoinst_sub
    pending = conn._xray_autoinst_phases
    if stale is not None or pending is not None:
        conn._xray_autoinst_sub = conn._xray_autoinst_phases = None
        if stale is not None:  # the previous exchange was abandoned without a response
            (_tracer_mod.tracer if _tracer_mod._configured else get_tracer()).end_subsegment(
                stale)
    tracer = _tracer_mod.tracer if _tracer_mod._configured else get_tracer()
    if not tracer.enabled:
        return
    cur = _current.get()
    if cur is None:
        if tracer.context_missing == "ignore":
            return
    elif not cur.sampled or cur.namespace == "aws":
        # unsampled: Sampled=0 goes on; inside an AWS call: that call is the node, the
        # phases of a connection it opened go under it
        if is_agent_traffic(conn, tracer, cur):
            return
        if pending is not None and pending.entity is cur and cur.sampled:
            attach_phases(tracer, cur, pending, None)
        _inject(conn, tracer.outgoing_header(None))
        if tracer.use_w3c and not b"\n".join(
                getattr(conn, _BUFFER, None) or ()).lower().partition(_TRACEPARENT_LINE)[1]:
            _inject_w3c(conn, tracer, cur)
        return
    cfg = tracer.config
    server = conn._xray_autoinst_origin  # _server's cache, checked here (one call less)
    if server is None or server[4] is not cfg or server[0] != conn._tunnel_host:
        server = _server(conn, tracer)
    if server[3] or conn._xray_autoinst_internal or internal.get() or (
            cur is None and getattr(threading.current_thread(), INTERNAL, False)):
        return  # the agent's own traffic (see is_agent_traffic)
    buf = conn._buffer
    if not buf:
        return  # no request line: not a request being written by putrequest
    line = buf[0]  # the request line: b"METHOD target HTTP/1.1"
    if _requests[0] is not cfg:  # another configuration (tests): start afresh
        _requests[1] = {}
        _requests[0] = cfg
    table = _requests[1]
    known = table.get((server[2], line))
    if known is None:
        method = conn._method
        if not isinstance(method, str):
            return  # not a request line written by putrequest
        known = _request(server, line, method, cfg.redact_query_params)
        if len(table) >= REQUESTS_CACHED:
            table = _requests[1] = {}
        table[(server[2], line)] = known
    if cur is not None:  # what tracer.begin_subsegment does, without making it current
        sub = Subsegment(known[0], cur, "remote")
    else:
        sub = tracer.begin_subsegment(known[0], "remote")  # XRAY_CONTEXT_MISSING decides
        if sub is None:
            return
        _current.set(None)  # the exchange is never the current entity
    sub.http = {"request": known[1].copy()}
    if pending is not None and pending.entity is cur:
        sub.start_time = pending.start
        attach_phases(tracer, sub, pending, None)
    conn._xray_autoinst_sub = sub
    # the trace headers, appended as putheader would (the values are ASCII by construction);
    # the formats are core.header's format and format_traceparent, written out for the usual
    # case (sampled, no lineage, no tracestate: tests/test_http_client.py compares them); a
    # header the caller set wins. Scanned with bytes.partition (one argument, no parsing), not
    # "in": "x in bytes" first tries x as an int and raises and clears a TypeError (~1 800
    # instructions each on CPython 3.11), and find parses its optional arguments (~500 more)
    written = b"\n".join(buf).lower()
    direct = conn._HTTPConnection__state == _REQ_STARTED
    seg = sub.segment
    root = seg.trace_id_
    if tracer.use_w3c and not written.partition(_TRACEPARENT_LINE)[1]:
        w3c = _w3c_prefix[0]  # (root, "traceparent: 00-<32 hex>-") of the last segment seen
        if w3c[0] is not root:
            w3c = (root, "traceparent: 00-%s%s-" % (root[2:10], root[11:])
                   if len(root) == 35 and root[:2] == "1-" else None)
            _w3c_prefix[0] = w3c
        if direct and w3c[1] is not None and not seg.tracestate:
            buf.append((w3c[1] + sub.id + "-01").encode())
        else:
            _inject_w3c(conn, tracer, sub)
    if not tracer.use_xray or written.partition(_TRACE_HEADER_LINE)[1]:
        return  # the xray propagator is off, or the caller set the header
    if direct and not seg.lineage:
        buf.append(("X-Amzn-Trace-Id: Root=%s;Parent=%s;Sampled=1" % (root, sub.id)).encode())
        return
    value = _header.format(root, sub.id, True, seg.lineage)
    if direct:
        buf.append(_TRACE_HEADER_PREFIX + value.encode("ascii"))
    else:
        conn.putheader(TRACE_HEADER, value)


# the traceparent line's start for one trace id, computed once for the calls of one request
# (replaced as a whole: a thread reading it meanwhile sees one pair or the other)
_w3c_prefix: list = [(None, None)]


def _inject_w3c(conn, tracer, entity) -> None:
    """``traceparent`` (and ``tracestate``) for the request being written."""
    for name, value in tracer.w3c_headers(entity):
        buf = getattr(conn, _BUFFER, None)
        if buf and getattr(conn, _STATE, None) == _REQ_STARTED:
            buf.append(name.encode("ascii") + b": " + value.encode("latin-1"))
        else:
            conn.putheader(name, value)


# [config, {(origin, request line): (name, http.request)}]: what a request line records,
# computed once for a request line seen again (a client calling its usual URLs); bounded.
# Replaced, never cleared in place, so a thread reading it meanwhile never sees it half done.
REQUESTS_CACHED = 1024
_requests: list = [None, {}]


def _request(server, line, method, secret_keys):
    path = line[len(method) + 1 : line.rfind(b" ")].decode("ascii", "replace")
    name = server[1]
    if path[:1] != "/" and "://" in path:  # absolute form, to a forward proxy
        name = _name(_hostport_of(path)[1])
    return name, {"method": method if len(method) <= 250 else method[:250],
                  "url": _url(server[2], path, secret_keys)}


def _inject(conn, value) -> None:
    """Add ``X-Amzn-Trace-Id: value`` to the headers being written unless the caller set one."""
    if value is None:
        return
    buf = getattr(conn, _BUFFER, None)
    if buf:
        # buf[0] is the request line: every header line follows a newline
        if b"\n".join(buf).lower().partition(_TRACE_HEADER_LINE)[1]:  # (not "in": see above)
            return
        if getattr(conn, _STATE, None) == _REQ_STARTED:
            # what putheader would append; the value is ASCII by construction
            buf.append(_TRACE_HEADER_PREFIX + value.encode("ascii"))
            return
    conn.putheader(TRACE_HEADER, value)


def end_exchange(conn, response=None, exc=None) -> None:
    sub = conn._xray_autoinst_sub
    if sub is None:
        return
    conn._xray_autoinst_sub = None
    try:
        if exc is None:  # record_response, inlined (once per request)
            status = response.status
            length = getattr(response, "length", None)
            sub.http["response"] = {"status": status} if length is None else {
                "status": status, "content_length": length}
            if status >= 400:
                sub.set_status(status)
        else:
            record_exception(sub, exc)
    finally:
        (_tracer_mod.tracer if _tracer_mod._configured else get_tracer()).end_subsegment(sub)


def record_response(sub, status, length=None) -> None:
    """``http.response`` (status, content_length when known) and the flags the status sets."""
    sub.http["response"] = {"status": status} if length is None else {
        "status": status, "content_length": length}
    if status >= 400:
        sub.set_status(status)


_SALVAGED = (errno.EPIPE, errno.EPROTOTYPE, errno.ECONNRESET)


def send_failed(conn, exc) -> None:
    """Writing the request failed. urllib3 swallows a broken pipe or a reset here and still
    reads the response the server may have sent: then the exchange waits for getresponse."""
    if (
        isinstance(exc, OSError)
        and exc.errno in _SALVAGED
        and hasattr(conn, "_response_options")
    ):
        return
    end_exchange(conn, exc=exc)


def record_exception(sub, exc, remote=True) -> None:
    """``fault`` and ``cause`` on ``sub`` (``add_exception`` leaves the agent's frames out)."""
    sub.add_exception(exc, remote=remote)


def has_exchange(conn) -> bool:
    return getattr(conn, SUB, None) is not None


# -- connection phases -------------------------------------------------------------------------
class _Phases:
    __slots__ = ("conn", "entity", "start", "dns_start", "dns_end", "dns_failed", "tcp_end",
                 "end", "tls")

    def __init__(self, conn, entity, tls):
        self.conn = conn
        self.entity = entity
        self.tls = tls
        self.dns_start = self.dns_end = self.tcp_end = self.end = None
        self.dns_failed = False
        self.start = _time()


def connect_begin(conn, tls):
    """At the start of a connection's outermost ``connect``: a (phases, token) pair when the
    phases are to be recorded, else None."""
    rec = _recording.get()
    if rec is not None and rec.conn is conn:
        return None  # an inner connect of the same connection (HTTPS calling HTTP's)
    tracer = get_tracer()
    if not tracer.enabled:
        return None
    cur = _current.get()
    if getattr(conn, SUB, None) is None:
        if cur is None:
            if tracer.context_missing in ("ignore", "log"):
                return None
        elif not cur.sampled:
            return None
    if is_agent_traffic(conn, tracer, cur):
        return None
    rec = _Phases(conn, cur, tls)
    return rec, _recording.set(rec)


def tcp_done(conn) -> None:
    """The TCP socket of the connection being timed is connected."""
    rec = _recording.get()
    if rec is not None and rec.conn is conn:
        rec.tcp_end = _time()


def connect_end(conn, started, exc=None) -> None:
    rec, token = started
    rec.end = _time()
    try:
        _recording.reset(token)
    except ValueError:  # ended in another context
        _recording.set(None)
    tracer = get_tracer()
    sub = getattr(conn, SUB, None)
    if sub is not None:  # connected lazily while the request was being written
        attach_phases(tracer, sub, rec, exc)
        return
    cur = _current.get()
    if cur is not None and cur.sampled and cur.namespace == "aws":
        attach_phases(tracer, cur, rec, exc)
        return
    if not state["exchanges"]:
        return
    if exc is None:
        conn._xray_autoinst_phases = rec  # for the exchange about to begin on this connection
        return
    # a connect that failed before any request was written: that attempt is an exchange
    server = _server(conn, tracer)
    failed = tracer.begin_subsegment(server[1], "remote")
    if failed is None:
        return
    _current.set(cur)
    failed.start_time = rec.start
    failed.http = {"request": {"url": server[2] + "/"}}
    attach_phases(tracer, failed, rec, exc)
    record_exception(failed, exc)
    tracer.end_subsegment(failed, end_time=rec.end)


def _phase(name, parent, start, end, failed=False):
    sub = Subsegment(name, parent, None, start)
    sub.end_time = end
    if failed:
        sub.fault = True
    return sub


def attach_phases(tracer, parent, rec, exc) -> None:
    """Build ``connect`` (with ``dns``, ``dial``, ``tls``) under ``parent`` from ``rec``; when
    the connect failed, the phase that was running is marked ``fault`` as well."""
    end = rec.end
    connect = Subsegment("connect", parent, None, rec.start)
    children = []
    dial_start = rec.start
    if rec.dns_start is not None:
        dns_end = rec.dns_end if rec.dns_end is not None else end
        children.append(_phase("dns", connect, rec.dns_start, dns_end, rec.dns_failed))
        dial_start = dns_end
    if not rec.dns_failed:
        tcp_end = rec.tcp_end
        if tcp_end is None:  # plain http.client (its connect is the dial) or the dial failed
            children.append(_phase("dial", connect, dial_start, end, exc is not None))
        else:
            children.append(_phase("dial", connect, dial_start, tcp_end))
            if rec.tls:
                children.append(_phase("tls", connect, tcp_end, end, exc is not None))
    connect.subsegments = children
    if exc is not None:
        connect.fault = True
    tracer.end_subsegment(connect, end_time=end)


# -- the getaddrinfo hook ------------------------------------------------------------------------
_dns = {"users": set(), "original": None}


def _timed_getaddrinfo(*args, **kwargs):
    rec = _recording.get()
    if rec is None:
        return _dns["original"](*args, **kwargs)
    t0 = _time()
    try:
        return _dns["original"](*args, **kwargs)
    except BaseException:
        rec.dns_failed = True
        raise
    finally:
        if rec.dns_start is None:
            rec.dns_start = t0
        rec.dns_end = _time()


def install(user: str) -> None:
    """Shared by the HTTP patchers: the connection attributes' class defaults on
    ``http.client.HTTPConnection`` and the ``socket.getaddrinfo`` hook timing ``dns``."""
    import http.client as client  # (the "as" form works inside http.client's import hook)

    if not _dns["users"]:
        for attr, value in CONN_DEFAULTS.items():
            setattr(client.HTTPConnection, attr, value)
        if socket.getaddrinfo is not _timed_getaddrinfo:
            original = socket.getaddrinfo
            _dns["original"] = original
            functools.update_wrapper(_timed_getaddrinfo, original)
            socket.getaddrinfo = _timed_getaddrinfo
    _dns["users"].add(user)


def uninstall(user: str) -> None:
    import http.client as client

    _dns["users"].discard(user)
    if _dns["users"]:
        return
    if socket.getaddrinfo is _timed_getaddrinfo:
        socket.getaddrinfo = _dns["original"]
    for attr in CONN_DEFAULTS:
        if attr in client.HTTPConnection.__dict__:
            delattr(client.HTTPConnection, attr)
