"""aiohttp client (``ClientSession``): one ``remote`` subsegment per request/response exchange,
named after the host, with the trace header injected.

``ClientSession._request`` runs each exchange (the first request, each redirect hop, each
retry, each call a client middleware makes) as ``connector.connect(req)``, ``req.send(conn)``
and ``resp.start(conn)``; those three are the hooks, on ``BaseConnector``, ``ClientRequest``
and ``ClientResponse`` (so sessions the application creates are covered without adding a
``TraceConfig`` to them, and no trace signal is sent for it):

- ``connect`` begins the exchange (before a connection is taken from the pool or opened, as
  http.client's begins before it connects) and adds ``X-Amzn-Trace-Id`` to the request's
  headers unless the caller set one; a connect that fails ends it with the client's error;
- ``send`` (writes the request) hands the exchange to the response, or ends it if it fails;
- ``start`` (reads the status line and headers) ends it with the status, or with the error.

A new connection (``TCPConnector._create_connection``, which runs only then) gets ``connect``
with ``dns`` (``_resolve_host``) and ``dial`` (TCP connect and, for HTTPS, the TLS handshake:
asyncio performs both in one call) under the exchange.

The exchange ends when the response's headers have arrived, as with http.client's
``getresponse``: the body is read by the application afterwards, at its own pace. What is
recorded (name, URL cleaned and redacted, status flags, cause) is ``_http``'s, shared with
http.client and httpx.
"""

from __future__ import annotations

from ..core.entities import Subsegment
from . import _http, _http_data

SUB = "_xray_autoinst_sub"  # the open exchange, on a ClientRequest then its ClientResponse


def get_version():
    import aiohttp

    return aiohttp.__version__


def _begin(req):
    if _http_data.idle():
        return None
    url = req.url
    return _http_data.begin_request(
        url.scheme, url.host or "", url.port, req.method, url.raw_path_qs, req.headers)


def _end(sub, status=None, length=None, exc=None) -> None:
    try:
        _http_data.end_request(sub, status, length, exc)
    except Exception:  # noqa: BLE001
        _http.fail("aiohttp")


def _traced_connect(original):
    async def connect(self, /, *args, **kwargs):
        sub = None
        req = args[0] if args else kwargs.get("req")
        try:
            if req is not None:
                sub = _begin(req)
        except Exception:  # noqa: BLE001
            _http.fail("aiohttp")
        if sub is None:
            return await original(self, *args, **kwargs)
        token = _http.internal.set(sub)  # for the phases of a new connection
        try:
            conn = await original(self, *args, **kwargs)
        except BaseException as exc:
            _end(sub, exc=exc)
            raise
        finally:
            _http.internal.reset(token)
        req._xray_autoinst_sub = sub
        return conn

    return connect


def _traced_create_connection(original):
    """``TCPConnector._create_connection``: runs for a new connection only; its time is
    ``connect``, holding ``dns`` (``_resolve_host``) and ``dial`` (the TCP connect and, for
    HTTPS, the TLS handshake, which asyncio does in one call)."""

    async def _create_connection(self, /, *args, **kwargs):
        started = None
        try:
            sub = _http.internal.get()
            if sub.__class__ is Subsegment:
                started = _http_data.phases_begin(sub, False)
        except Exception:  # noqa: BLE001
            _http.fail("aiohttp connect")
        if started is None:
            return await original(self, *args, **kwargs)
        try:
            proto = await original(self, *args, **kwargs)
        except BaseException as exc:
            _phases_end(started, exc)
            raise
        _phases_end(started)
        return proto

    return _create_connection


def _phases_end(started, exc=None):
    try:
        _http_data.phases_end(started, exc)
    except Exception:  # noqa: BLE001
        _http.fail("aiohttp connect")


def _traced_resolve_host(original):
    async def _resolve_host(self, /, *args, **kwargs):
        rec = _http._recording.get()
        if rec is None or rec.dns_start is not None:
            return await original(self, *args, **kwargs)
        rec.dns_start = _http._time()
        try:
            return await original(self, *args, **kwargs)
        except BaseException:
            rec.dns_failed = True
            raise
        finally:
            rec.dns_end = _http._time()

    return _resolve_host


def _traced_send(original):
    async def send(self, /, *args, **kwargs):
        sub = self._xray_autoinst_sub
        if sub is None:
            return await original(self, *args, **kwargs)
        self._xray_autoinst_sub = None
        try:
            response = await original(self, *args, **kwargs)
        except BaseException as exc:
            _end(sub, exc=exc)
            raise
        try:
            response._xray_autoinst_sub = sub
        except Exception:  # noqa: BLE001
            _end(sub)
            _http.fail("aiohttp")
        return response

    return send


def _traced_start(original):
    async def start(self, /, *args, **kwargs):
        sub = self._xray_autoinst_sub
        if sub is None:
            return await original(self, *args, **kwargs)
        self._xray_autoinst_sub = None
        try:
            result = await original(self, *args, **kwargs)
        except BaseException as exc:
            _end(sub, exc=exc)
            raise
        status = length = None
        try:
            status = self.status
            raw = self.headers.get("Content-Length")
            if raw is not None and raw.isdigit():
                length = int(raw)
        except Exception:  # noqa: BLE001
            _http.fail("aiohttp")
        _end(sub, status, length)
        return result

    return start


def patch():
    from aiohttp import client_reqrep as target
    from aiohttp import connector

    if getattr(target, "_xray_autoinst_patched", False):
        return
    _http.replace_method(connector.BaseConnector, "connect", _traced_connect)
    _http.replace_method(connector.TCPConnector, "_create_connection", _traced_create_connection)
    _http.replace_method(connector.TCPConnector, "_resolve_host", _traced_resolve_host)
    _http.replace_method(target.ClientRequest, "send", _traced_send)
    _http.replace_method(target.ClientResponse, "start", _traced_start)
    target.ClientRequest._xray_autoinst_sub = None
    target.ClientResponse._xray_autoinst_sub = None
    target._xray_autoinst_patched = True


def unpatch():
    from aiohttp import client_reqrep as target
    from aiohttp import connector

    from ..core import wrapping

    if not getattr(target, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(connector.BaseConnector, "connect")
    wrapping.unwrap(connector.TCPConnector, "_create_connection")
    wrapping.unwrap(connector.TCPConnector, "_resolve_host")
    wrapping.unwrap(target.ClientRequest, "send")
    wrapping.unwrap(target.ClientResponse, "start")
    for cls in (target.ClientRequest, target.ClientResponse):
        if SUB in cls.__dict__:
            delattr(cls, SUB)
    target._xray_autoinst_patched = False
