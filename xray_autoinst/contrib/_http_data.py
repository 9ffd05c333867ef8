"""Outbound HTTP for clients that hand a request over as data rather than writing it through
http.client (``http_httpx``, ``http_aiohttp``): ``begin_request``/``end_request`` for the
exchange, ``phases_begin``/``dialed``/``phases_end`` for the phases of a connection opened
inside one. What is recorded is ``_http``'s: the same names, URLs (cleaned, redacted, cached
per distinct request), daemon check, status flags and causes as http.client's exchanges.
"""

from __future__ import annotations

import threading

from ..core.entities import Subsegment
from . import _http

_current = _http._current

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def idle() -> bool:
    """True when ``begin_request`` would record nothing and send no header whatever the
    request (no request open and calls outside one are ignored, or the agent's own work):
    lets a client skip reading the request's URL and headers on that path."""
    if _http.internal.get():
        return True
    if _current.get() is None:
        tracer = _http.get_tracer()
        return tracer.context_missing == "ignore" or not tracer.enabled
    return False


def begin_request(scheme, host, port, method, target, headers):
    """Begin the exchange of ``method target`` sent to ``scheme://host:port`` (``target``: the
    path and query as sent, a str; ``headers``: the request's headers, a case-insensitive
    mapping with ``get`` and item assignment, such as httpx's ``Headers`` or aiohttp's
    ``CIMultiDict``). Returns the subsegment, or None: it is never made the current entity (end
    it with ``end_request``).

    The trace headers go into ``headers`` as for http.client: ``X-Amzn-Trace-Id`` (and W3C
    ``traceparent``/``tracestate`` when that propagator is on) unless the caller set one; one
    this module set for an earlier exchange (clients copy a request's headers into the request
    that follows a redirect, or send a request again) is replaced. Inside an AWS call or an
    unsampled request there is no subsegment but the headers go on."""
    tracer = _http.get_tracer()
    if not tracer.enabled or _http.internal.get():
        return None  # the agent's own work, or inside an exchange already recorded
    cur = _current.get()
    if cur is None:
        if tracer.context_missing == "ignore" or getattr(
                threading.current_thread(), _http.INTERNAL, False):
            return None
    cfg = tracer.config
    if port is None:
        port = DEFAULT_PORTS.get(scheme)
    if _http.is_daemon(host, port, cfg):
        return None
    if cur is not None and (not cur.sampled or cur.namespace == "aws"):
        _propagate(tracer, headers, cur, None)
        return None
    key = (scheme, host, port, method, target)
    if _http._requests[0] is not cfg:
        _http._requests[1] = {}
        _http._requests[0] = cfg
    table = _http._requests[1]
    known = table.get(key)
    if known is None:
        if "@" in host:
            host = host[host.rfind("@") + 1 :]
        origin = _http.origin_of(scheme, host, port, DEFAULT_PORTS.get(scheme))
        known = (_http._name(host), {
            "method": method if len(method) <= 250 else method[:250],
            "url": _http._url(origin, target or "/", cfg.redact_query_params)})
        if len(table) >= _http.REQUESTS_CACHED:
            table = _http._requests[1] = {}
        table[key] = known
    if cur is not None:
        sub = Subsegment(known[0], cur, "remote")
    else:
        sub = tracer.begin_subsegment(known[0], "remote")  # XRAY_CONTEXT_MISSING decides
        if sub is None:
            return None
        _current.set(None)
    sub.http = {"request": known[1].copy()}
    _propagate(tracer, headers, sub, sub)
    return sub


def _propagate(tracer, headers, entity, sub) -> None:
    """The trace headers for a call made by ``entity`` (``sub``: the exchange, None when
    there is none), into ``headers`` where the caller set none."""
    injected = _injected[0]
    existing = headers.get(_XRAY)
    if existing is None or existing in injected:
        value = tracer.outgoing_header(sub)
        if value is not None:
            headers[_XRAY] = value
            if sub is not None:
                _remember(value)
    if tracer.use_w3c:
        existing = headers.get("traceparent")
        if existing is None or existing in injected:
            for name, value in tracer.w3c_headers(entity):
                headers[name] = value
                if sub is not None and name == "traceparent":
                    _remember(value)


def _remember(value) -> None:
    injected = _injected[0]
    if len(injected) >= INJECTED_KEPT:
        injected = _injected[0] = {}
    injected[value] = True


_XRAY = "X-Amzn-Trace-Id"


# the header values begin_request made lately (see there); replaced when full, never cleared
# in place
INJECTED_KEPT = 1024
_injected: list = [{}]


def end_request(sub, status=None, length=None, exc=None) -> None:
    """End an exchange begun by ``begin_request``: with the response's status (and length), or
    with the exception the client raised."""
    try:
        if exc is not None:
            _http.record_exception(sub, exc)
        elif status is not None:
            _http.record_response(sub, status, length)
    finally:
        _http.get_tracer().end_subsegment(sub)


def phases_begin(sub, tls):
    """For a client whose connection is opened inside an exchange ``sub`` already begun
    (httpx): start timing the phases of that connect. Returns what ``phases_end`` takes."""
    rec = _http._Phases(None, sub.parent, tls)
    return rec, _http._recording.set(rec), sub


def dialed() -> None:
    """The TCP socket of the connect being timed in this context is connected."""
    rec = _http._recording.get()
    if rec is not None and rec.tcp_end is None:
        rec.tcp_end = _http._time()


def phases_end(started, exc=None) -> None:
    rec, token, sub = started
    rec.end = _http._time()
    try:
        _http._recording.reset(token)
    except ValueError:  # ended in another context
        _http._recording.set(None)
    _http.attach_phases(_http.get_tracer(), sub, rec, exc)
