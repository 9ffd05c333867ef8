"""httpx, sync ``Client`` and ``AsyncClient``: one ``remote`` subsegment per request/response
exchange, named after the host, with the trace header injected.

The hook is the transport: ``HTTPTransport.handle_request`` and ``AsyncHTTPTransport.
handle_async_request`` (what every ``Client``/``AsyncClient`` sends through, once per exchange:
a redirect hop is an exchange of its own; mounted and proxy transports are ``HTTPTransport``
instances too). The exchange begins there, before httpcore writes the request, and ends when
the response's stream is closed -- at once for ``client.get(...)`` (httpx reads the body and
closes it), when the ``with client.stream(...)`` block ends for a streamed response -- or with
the exception the transport or the body raised. What is recorded (name, URL cleaned and
redacted, status flags, cause) is ``_http``'s (through ``_http_data``), shared with http.client.

A new connection opened for the exchange gets ``connect`` with ``dns`` (sync clients: the
lookup runs in the calling thread; the async ones resolve in a worker thread, so there the
lookup is inside ``dial``), ``dial`` and ``tls``, from httpcore's ``HTTPConnection._connect``
and its network backends' ``connect_tcp`` (which run on new connections only: a reused
keep-alive connection costs nothing more).

httpx does not go through http.client (httpcore writes HTTP itself), so nothing is recorded
twice; while an exchange is open, ``_http.internal`` holds it so that a traced layer
underneath (a transport built on another client) records nothing more.
"""

from __future__ import annotations

from ..core.entities import Subsegment
from . import _calls, _http, _http_data


def get_version():
    import httpx

    return httpx.__version__


def _begin(request):
    """(subsegment or None) for ``request``, the trace headers added to it."""
    if _http_data.idle():
        return None
    url = request.url
    return _http_data.begin_request(
        url.scheme, url.host, url.port, request.method,
        url.raw_path.decode("ascii", "replace"), request.headers)


def _content_length(response):
    length = response.headers.get("content-length")
    if length is not None:
        try:
            return int(length)
        except ValueError:
            return None
    return None


def _open(request, stream_class):
    """The exchange's state for ``_calls``: (subsegment, its ``internal`` token, the stream
    wrapper class), or None when nothing is to be recorded."""
    sub = _calls.attempt(_http.fail, "httpx", _begin, request)
    if sub is None:
        return None
    return sub, _http.internal.set(sub), stream_class


def _close(state, response, exc) -> None:
    """The transport returned: hand the exchange to the response's stream (ends at close); or
    it raised: the exchange ends with that exception."""
    sub, token, stream_class = state
    if exc is not None:
        try:
            _http_data.end_request(sub, exc=exc)
        except Exception:  # noqa: BLE001
            _http.fail("httpx")
        _http.internal.reset(token)
        return
    _http.internal.reset(token)
    try:
        response.stream = stream_class(response.stream, sub, response.status_code,
                                       _content_length(response))
    except Exception:  # noqa: BLE001
        _http.fail("httpx")


def _traced_handle_request(original):
    def handle_request(self, request):
        return _calls.call(_open(request, _TracedStream), _close, original, (self, request), {})

    return handle_request


def _traced_handle_async_request(original):
    async def handle_async_request(self, request):
        return await _calls.acall(
            _open(request, _TracedAsyncStream), _close, original, (self, request), {})

    return handle_async_request


# -- connection phases (httpcore, new connections only) -----------------------------------------
def _phases_begin(connection):
    sub = _http.internal.get()
    if sub.__class__ is not Subsegment:
        return None
    return _http_data.phases_begin(sub, connection._origin.scheme in (b"https", b"wss"))


def _phases_open(connection):
    return _calls.attempt(_http.fail, "httpx connect", _phases_begin, connection)


def _phases_close(started, _stream, exc) -> None:
    try:
        _http_data.phases_end(started, exc)
    except Exception:  # noqa: BLE001
        _http.fail("httpx connect")


def _dialed(_state, _stream, exc) -> None:
    if exc is None:
        try:
            _http_data.dialed()
        except Exception:  # noqa: BLE001
            _http.fail("httpx connect")


def _traced_connect(original):
    def _connect(self, request):
        return _calls.call(_phases_open(self), _phases_close, original, (self, request), {})

    return _connect


def _traced_async_connect(original):
    async def _connect(self, request):
        return await _calls.acall(_phases_open(self), _phases_close, original, (self, request), {})

    return _connect


def _traced_connect_tcp(original):
    def connect_tcp(self, /, *args, **kwargs):
        return _calls.call(True, _dialed, original, (self, *args), kwargs)

    return connect_tcp


def _traced_async_connect_tcp(original):
    async def connect_tcp(self, /, *args, **kwargs):
        return await _calls.acall(True, _dialed, original, (self, *args), kwargs)

    return connect_tcp


def _httpcore_targets():
    """(class, method, wrapper factory) for httpcore's connects, where importable."""
    found = []
    try:
        from httpcore._async.connection import AsyncHTTPConnection
        from httpcore._sync.connection import HTTPConnection

        found += [(HTTPConnection, "_connect", _traced_connect),
                  (AsyncHTTPConnection, "_connect", _traced_async_connect)]
        from httpcore._backends.sync import SyncBackend

        found.append((SyncBackend, "connect_tcp", _traced_connect_tcp))
        from httpcore._backends.anyio import AnyIOBackend

        found.append((AnyIOBackend, "connect_tcp", _traced_async_connect_tcp))
    except ImportError:  # another httpcore layout, or anyio absent: fewer phases, same exchange
        pass
    return found


class _Ending:
    """What both stream wrappers share: the exchange ends once, at close or on a read error
    (the attributes are the subclasses' slots)."""

    __slots__ = ()

    def __init__(self, inner, sub, status, length):
        self._xray_inner = inner
        self._xray_sub = sub
        self._xray_status = status
        self._xray_length = length

    def _end(self, exc=None):
        sub = self._xray_sub
        if sub is None:
            return
        self._xray_sub = None
        try:
            if exc is None:
                _http_data.end_request(sub, self._xray_status, self._xray_length)
            else:
                _http.record_response(sub, self._xray_status, self._xray_length)
                _http_data.end_request(sub, exc=exc)
        except Exception:  # noqa: BLE001
            _http.fail("httpx")


def _stream_classes(target):
    """Subclasses of httpx's stream bases, taken from the transport module (the hook may run
    while the ``httpx`` package itself is still being imported)."""

    class TracedStream(_Ending, target.SyncByteStream):
        __slots__ = ("_xray_inner", "_xray_sub", "_xray_status", "_xray_length")

        def __iter__(self):
            try:
                yield from self._xray_inner
            except BaseException as exc:
                if not isinstance(exc, GeneratorExit):
                    self._end(exc)
                raise

        def close(self):
            try:
                self._xray_inner.close()
            except BaseException as exc:
                self._end(exc)
                raise
            self._end()

    class TracedAsyncStream(_Ending, target.AsyncByteStream):
        __slots__ = ("_xray_inner", "_xray_sub", "_xray_status", "_xray_length")

        async def __aiter__(self):
            try:
                async for part in self._xray_inner:
                    yield part
            except BaseException as exc:
                if not isinstance(exc, GeneratorExit):
                    self._end(exc)
                raise

        async def aclose(self):
            try:
                await self._xray_inner.aclose()
            except BaseException as exc:
                self._end(exc)
                raise
            self._end()

    return TracedStream, TracedAsyncStream


_TracedStream = _TracedAsyncStream = None


def patch():
    from httpx._transports import default as target

    global _TracedStream, _TracedAsyncStream
    if getattr(target, "_xray_autoinst_patched", False):
        return
    if _TracedStream is None:
        _TracedStream, _TracedAsyncStream = _stream_classes(target)
    _http.replace_method(target.HTTPTransport, "handle_request", _traced_handle_request)
    _http.replace_method(
        target.AsyncHTTPTransport, "handle_async_request", _traced_handle_async_request)
    for cls, name, make in _httpcore_targets():
        _http.replace_method(cls, name, make)
    _http.install("httpx")  # the getaddrinfo hook timing dns
    target._xray_autoinst_patched = True


def unpatch():
    from httpx._transports import default as target

    from ..core import wrapping

    if not getattr(target, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(target.HTTPTransport, "handle_request")
    wrapping.unwrap(target.AsyncHTTPTransport, "handle_async_request")
    for cls, name, _make in _httpcore_targets():
        wrapping.unwrap(cls, name)
    _http.uninstall("httpx")
    target._xray_autoinst_patched = False
