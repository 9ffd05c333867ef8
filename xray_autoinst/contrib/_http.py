"""Shared machinery of the outbound HTTP integrations (``http_client``, ``http_urllib3``) and
the botocore one: one subsegment per request/response exchange, the connection phases of a new
connection, trace header injection, and telling the agent's own traffic apart.

The exchange
    begins when ``putrequest`` has succeeded (``request``, ``urllib.request``, urllib3 and
    requests all go through it), is kept on the connection object -- never made the current
    entity, so nothing the application does meanwhile nests under it -- and ends when
    ``getresponse`` returns or fails, or when sending the request fails.

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
"""

from __future__ import annotations

import contextvars
import errno
import functools
import os
import socket
import threading
import time

from .. import config as _config
from .. import log as _log
from ..core import tracer as _tracer_mod
from ..core.entities import Subsegment, clip
from ..core.urls import clean_url, redact_query

TRACE_HEADER = "X-Amzn-Trace-Id"
_TRACE_HEADER_LINE = b"x-amzn-trace-id:"
_TRACE_HEADER_PREFIX = b"X-Amzn-Trace-Id: "
_STATE = "_HTTPConnection__state"  # http.client's request state, name-mangled
_REQ_STARTED = "Request-started"  # http.client._CS_REQ_STARTED: putheader is allowed
SUB = "_xray_autoinst_sub"  # the open exchange subsegment, on the connection
PHASES = "_xray_autoinst_phases"  # phases of a connect that preceded its exchange
INTERNAL = "_xray_autoinst_internal"  # on a thread or a connection: the agent's own traffic

_time = time.time
_current = _tracer_mod.current_entity
get_tracer = _tracer_mod.get_tracer

# True while work the agent does for itself runs (calls to the X-Ray service, the daemon relay)
internal: contextvars.ContextVar = contextvars.ContextVar("xray_autoinst_internal", default=False)
# The connect being timed in this context (a _Phases), for the getaddrinfo hook
_recording: contextvars.ContextVar = contextvars.ContextVar("xray_autoinst_connect", default=None)

# Set by http_client.patch(): exchanges are recorded (otherwise only phases under AWS calls)
state = {"exchanges": False}


def fail(what: str) -> None:
    """Instrumentation bookkeeping failed: log at most once a minute; the call is unaffected."""
    _log.limited(
        "http-" + what, _log.WARNING,
        "xray-autoinst outbound HTTP instrumentation failed (%s); the call is unaffected", what,
        exc_info=True,
    )
    if getattr(getattr(_tracer_mod.tracer, "config", None), "reraise", False):
        raise


_LOOPBACK = frozenset(("127.0.0.1", "localhost", "::1", "localhost.localdomain"))


def mark_internal(conn) -> None:
    """Mark an HTTP connection as the agent's own: it is never recorded nor given a header."""
    conn.__dict__[INTERNAL] = True


def is_agent_traffic(conn, tracer, cur=None) -> bool:
    """The daemon's address (its sampling proxy), a connection marked with mark_internal,
    work under ``internal``, or (outside any request) a thread the agent flags as its own."""
    host, port = tracer.config.tcp_address
    if conn.port == port:
        target = conn.host
        if target == host or (target in _LOOPBACK and host in _LOOPBACK):
            return True
    if conn.__dict__.get(INTERNAL) or internal.get():
        return True
    # the agent's threads never carry a request's context (ctx_threading leaves them alone)
    return cur is None and getattr(threading.current_thread(), INTERNAL, False)


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


_ORIGIN = "_xray_autoinst_origin"  # (tunnel host, name, "scheme://host[:port]"), cached


def _origin(conn):
    """(subsegment name, ``scheme://host[:port]``) of the server behind ``conn``."""
    d = conn.__dict__
    tunnel = d.get("_tunnel_host")
    cached = d.get(_ORIGIN)
    if cached is not None and cached[0] == tunnel:
        return cached[1], cached[2]
    host = tunnel or conn.host
    port = (d.get("_tunnel_port") if tunnel else None) or conn.port
    if "@" in host:  # never keep userinfo, even one smuggled into the host
        host = host[host.rfind("@") + 1 :]
    default = conn.default_port
    origin = ("https://" if default == 443 else "http://") + (
        "[" + host + "]" if ":" in host else host)
    if port and port != default:
        origin += ":%d" % port
    name = _name(host)
    d[_ORIGIN] = (tunnel, name, origin)
    return name, origin


def _target(conn, path, secret_keys):
    """(subsegment name, recorded URL) of the request ``path`` sent on ``conn``: no userinfo,
    secret query values redacted, no fragment, at most 250 characters."""
    if path[:1] == "/":
        name, origin = _origin(conn)
        cut = path.find("#")
        if cut >= 0:
            path = path[:cut]
        q = path.find("?")
        if q >= 0:
            path = path[: q + 1] + redact_query(path[q + 1 :], secret_keys)
        url = origin + path
        return name, url if len(url) <= 250 else clip(url)
    if path[:7].lower() == "http://" or path[:8].lower() == "https://":  # to a forward proxy
        return _name(_hostport_of(path)[1]), clean_url(path, secret_keys)
    name, origin = _origin(conn)  # "*" (OPTIONS) or a path without its slash
    return name, clean_url(origin + "/" + path, secret_keys)


# -- the exchange ------------------------------------------------------------------------------
def begin_exchange(conn, method, path, start) -> None:
    """Called once ``putrequest`` has succeeded on ``conn``."""
    d = conn.__dict__
    stale = d.pop(SUB, None)
    pending = d.pop(PHASES, None)
    tracer = get_tracer()
    if stale is not None:  # the previous exchange was abandoned without a response
        tracer.end_subsegment(stale)
    if not tracer.enabled:
        return
    cur = _current.get()
    if cur is None:
        if tracer.context_missing == "ignore":
            return
    elif not cur.sampled:
        return
    elif cur.namespace == "aws":  # the AWS call is the node; its phases go under it
        if pending is not None and pending.entity is cur:
            attach_phases(tracer, cur, pending, None)
        return
    if is_agent_traffic(conn, tracer, cur):
        return
    if not isinstance(path, str):
        path = path.decode("latin-1") if isinstance(path, (bytes, bytearray)) else str(path)
    name, url = _target(conn, path, tracer.config.redact_query_params)
    sub = tracer.begin_subsegment(name, "remote")
    if sub is None:
        return
    _current.set(cur)  # the exchange is never the current entity
    if not isinstance(method, str):
        method = str(method)
    sub.http = {"request": {"method": method[:250], "url": url}}
    if pending is not None and pending.entity is cur:
        sub.start_time = pending.start
        attach_phases(tracer, sub, pending, None)
    else:
        sub.start_time = start
    d[SUB] = sub


def inject_header(conn) -> None:
    """Add ``X-Amzn-Trace-Id`` to the request being written on ``conn`` (before
    ``endheaders``) unless the caller set one."""
    tracer = get_tracer()
    if not tracer.enabled:
        return
    d = conn.__dict__
    sub = d.get(SUB)
    if sub is None:
        cur = _current.get()
        if cur is None or is_agent_traffic(conn, tracer, cur):
            return
        value = tracer.outgoing_header(None)  # unsampled (Sampled=0) or inside an AWS call
    else:
        value = tracer.outgoing_header(sub)
    if value is None:
        return
    buf = d.get("_buffer")
    if buf is not None:
        for line in buf:
            if line[:16].lower() == _TRACE_HEADER_LINE:
                return
        if d.get(_STATE) == _REQ_STARTED:
            # what putheader would append; the value is ASCII by construction
            buf.append(_TRACE_HEADER_PREFIX + value.encode("ascii"))
            return
    conn.putheader(TRACE_HEADER, value)


def end_exchange(conn, response=None, exc=None) -> None:
    sub = conn.__dict__.pop(SUB, None)
    if sub is None:
        return
    try:
        if exc is None:
            status = response.status
            resp = {"status": status}
            length = getattr(response, "length", None)
            if length is not None:
                resp["content_length"] = length
            sub.http["response"] = resp
            sub.set_status(status)
        else:
            record_exception(sub, exc)
    finally:
        get_tracer().end_subsegment(sub)


_SALVAGED = (errno.EPIPE, errno.EPROTOTYPE, errno.ECONNRESET)


def send_failed(conn, exc) -> None:
    """Writing the request failed. urllib3 swallows a broken pipe or a reset here and still
    reads the response the server may have sent: then the exchange waits for getresponse."""
    if (
        isinstance(exc, OSError)
        and exc.errno in _SALVAGED
        and "_response_options" in conn.__dict__
    ):
        return
    end_exchange(conn, exc=exc)


_AGENT_PATH = os.sep + "xray_autoinst" + os.sep


def record_exception(sub, exc, remote=True) -> None:
    """``fault`` and ``cause`` on ``sub``, without the agent's own frames in the stack."""
    sub.add_exception(exc, remote=remote)
    try:
        for record in sub.cause["exceptions"]:
            record["stack"] = [f for f in record["stack"] if _AGENT_PATH not in f["path"]]
    except (KeyError, TypeError):
        pass


def has_exchange(conn) -> bool:
    return SUB in conn.__dict__


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
    if SUB not in conn.__dict__:
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
    sub = conn.__dict__.get(SUB)
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
        conn.__dict__[PHASES] = rec  # for the exchange about to begin on this connection
        return
    # a connect that failed before any request was written: that attempt is an exchange
    name, url = _target(conn, "/", ())
    failed = tracer.begin_subsegment(name, "remote")
    if failed is None:
        return
    _current.set(cur)
    failed.start_time = rec.start
    failed.http = {"request": {"url": url}}
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


def install_dns_hook(user: str) -> None:
    """Time ``socket.getaddrinfo`` during recorded connects (shared by the HTTP patchers)."""
    if not _dns["users"] and socket.getaddrinfo is not _timed_getaddrinfo:
        original = socket.getaddrinfo
        _dns["original"] = original
        functools.update_wrapper(_timed_getaddrinfo, original)
        socket.getaddrinfo = _timed_getaddrinfo
    _dns["users"].add(user)


def remove_dns_hook(user: str) -> None:
    _dns["users"].discard(user)
    if not _dns["users"] and socket.getaddrinfo is _timed_getaddrinfo:
        socket.getaddrinfo = _dns["original"]
