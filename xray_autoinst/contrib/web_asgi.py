"""The generic ASGI middleware: one segment per sampled HTTP request or WebSocket connection.

Applied automatically to the application each supported server loads (uvicorn, hypercorn,
daphne, gunicorn's uvicorn workers); also public as ``xray_autoinst.asgi.XRayMiddleware``.

- ``http``: the segment ends when the response is complete (the last ``http.response.body``
  message, ``more_body`` false) or when the application returns, whichever comes first, so a
  streamed response is timed fully; work done after the response (background tasks) is sent as
  late subsegments of it. An exception escaping the application is the segment's cause.
- ``websocket``: one segment per connection, from the handshake to the application's return;
  status 101 once accepted, 403 when closed before it was accepted.
- ``lifespan`` and any other scope type pass through untouched.

The segment lives in the request task's ``contextvars`` context, so concurrent requests on one
event loop never see each other's entities. An application called while a traced request is
already current (a framework mounted inside another, or wrapped by hand as well) is not traced a
second time. An unsampled request costs a header scan, a sampling decision and the response
header: no document is built.
"""

from __future__ import annotations

import time

from ..core import header as _header
from ..core import tracer as _tracer_mod
from ..core.entities import FIELD_MAX, clip
from ..core.urls import redact_query
from ..core.wrapping import hide_frames
from . import _guard, _web

_parse = _header.parse
_current = _tracer_mod.current_entity
_ending = _tracer_mod.ending  # (a message taken during a request is let go when it ends)
_run_ending = _tracer_mod.run_ending
_TRACE_HEADER = b"x-amzn-trace-id"
_time = time.time


def get_version():
    return ""


_fail = _guard.reporter(
    "asgi", "xray-autoinst ASGI middleware failed (%s); the request is unaffected")


# the request headers the middleware reads: any other costs one set lookup (an if/elif chain
# of six bytes comparisons ran for every header of every request)
_WANTED = frozenset((b"host", _TRACE_HEADER, b"user-agent", b"x-forwarded-for", b"traceparent",
                     b"tracestate"))


class XRayMiddleware(_web.AppWrapper):
    """Wrap an ASGI 3 application: ``app = XRayMiddleware(app)``."""

    async def __call__(self, scope, receive, send):
        kind = scope.get("type")
        tracer = self._tracer
        if tracer is None:
            tracer = self._tracer = _tracer_mod.get_tracer()
        if (kind != "http" and kind != "websocket") or not tracer.enabled \
                or _current.get() is not None:
            return await self.app(scope, receive, send)
        try:
            raw = host = agent = xff = parent = state = None
            for key, value in scope.get("headers") or ():
                if key in _WANTED:
                    if key == b"host":
                        host = value
                    elif key == _TRACE_HEADER:
                        raw = value
                    elif key == b"user-agent":
                        agent = value
                    elif key == b"x-forwarded-for":
                        xff = value
                    elif key == b"traceparent":
                        parent = value
                    else:
                        state = value
            hdr = _parse(raw.decode("latin-1")) if raw and tracer.use_xray else None
            if hdr is None and parent and tracer.use_w3c:
                hdr = _header.parse_traceparent(parent.decode("latin-1"))
            else:
                state = None
            host = host.decode("latin-1") if host else _server_host(scope)
            method = scope.get("method") or "GET"
            path = scope.get("path") or ""
            seg, token = tracer.begin_segment(self.name, hdr, host, method, path)
            sampled = seg.sampled
            if state and hdr is not None:
                seg.tracestate = state.decode("latin-1")[:512]
            # a sampled segment's own slot (its trace_id is a property: a Python call)
            echo = "Root=" + (seg.trace_id_ if sampled else seg.trace_id)
            if hdr is not None and hdr.sampled == "?":
                echo += ";Sampled=1" if sampled else ";Sampled=0"
            echo = echo.encode("latin-1")
            if sampled:
                _record_request(seg, scope, kind, method, host, path, agent, xff, tracer)
        except Exception:  # noqa: BLE001
            _fail("begin")
            return await self.app(scope, receive, send)
        try:
            if sampled:
                await _sampled(self.app, scope, receive, send, tracer, seg, echo, kind)
            else:
                # unsampled, inline (one Python call less on the path production runs most):
                # no document; answer with the trace header (downstream calls propagate
                # ``Sampled=0`` from the context). A coroutine function, as the server's send
                # is (asgiref's async_to_sync, Channels' sync consumers, warn otherwise)
                async def _send(message):
                    if message.get("type") == "http.response.start":
                        try:
                            message = _with_header(message, echo)
                        except Exception:  # noqa: BLE001
                            _fail("send")
                    await send(message)

                await self.app(scope, receive, _send)
        except BaseException as exc:  # the application's: out of its traceback go our frames
            hide_frames(exc)
            raise
        finally:
            try:
                _current.reset(token)
            except ValueError:  # the application switched contexts under us
                _current.set(None)
            if _ending:  # unsampled, or taken after the response (work after it)
                _run_ending(seg)


async def _sampled(app, scope, receive, send, tracer, seg, echo, kind):
    """One sampled request: the ``send`` that watches the response, and its end."""
    status = length = complete_at = None
    sent = 0
    done = False  # None: complete, to end once the server took the last message
    root_path = scope.get("root_path", "")

    async def _send(message):
        nonlocal status, length, sent, done, complete_at
        try:
            what = message.get("type")
            if what == "http.response.body":
                body = message.get("body")
                if body:
                    sent += len(body)
                if status is not None and not message.get("more_body", False):
                    # a 5xx is often followed by the exception behind it (Starlette's error
                    # middleware answers, then re-raises): end it when the application returns
                    if isinstance(status, int) and status >= 500:
                        complete_at = _time()
                    else:
                        done = None  # ends once the server took the message
            elif what == "http.response.start":
                status = message.get("status")
                if scope.get("route") is not None:
                    _route(seg, scope, root_path)
                # _with_header inline, Content-Length read in the same pass (one Python
                # call less); only names of the two lengths are lowered (14, 15)
                headers = [*(message.get("headers") or ())]
                own = False
                for k, v in headers:
                    n = len(k)
                    if n == 14:
                        if length is None and k.lower() == b"content-length":
                            length = v
                    elif n == 15 and k.lower() == _TRACE_HEADER:
                        own = True
                if own:
                    headers = [h for h in headers if h[0].lower() != _TRACE_HEADER]
                headers.append((_TRACE_HEADER, echo))
                message = message.copy()
                message["headers"] = headers
            elif what == "websocket.accept":
                status = 101
                if scope.get("route") is not None:
                    _route(seg, scope, root_path)
            elif what == "websocket.close":
                if status is None:
                    status = 403
            elif what == "websocket.http.response.start":  # a denial response
                status = message.get("status")
        except Exception:  # noqa: BLE001
            _fail("send")
        await send(message)
        if done is None:  # the response is complete: end the segment now
            done = True
            _finish(tracer, seg, kind, status, length, sent, _time())

    try:
        await app(scope, receive, _send)
    except BaseException as exc:
        if not done:
            done = True
            _finish(tracer, seg, kind, status, length, sent, complete_at, exc)
        hide_frames(exc)
        raise
    if not done:
        _finish(tracer, seg, kind, status, length, sent, complete_at)


def _route(seg, scope, root_path):
    """The framework's route template (Starlette/FastAPI put the matched route into the
    scope), never the raw path."""
    template = getattr(scope.get("route"), "path", None)
    if isinstance(template, str):
        prefix = scope.get("root_path", "")[len(root_path):]
        _web.record_route(seg, prefix + template)


# the Content-Length values seen so far (b"1234" -> 1234): int() is a type call, the dict
# lookup a tenth of it; bounded
_LENGTHS: dict = {}


def _finish(tracer, seg, kind, code, length, sent, end_time, exc=None):
    """Record the response (status, flags, length declared else counted) and end ``seg``."""
    try:
        if exc is not None:
            if isinstance(exc, Exception):
                seg.add_exception(exc)
            if code is None:
                code = 500
        resp = {}
        if code is not None:
            if type(code) is not int:
                try:
                    code = int(code)
                except (TypeError, ValueError):
                    code = False  # not recorded (but a response was started)
            if code is not False:
                resp["status"] = code
                if code >= 400:
                    seg.set_status(code)
        if length is not None:
            n = _LENGTHS.get(length) if type(length) is bytes else None
            if n is None:
                try:
                    n = int(length)
                except (TypeError, ValueError):
                    length = None
                else:
                    if type(length) is bytes and len(_LENGTHS) < 256:
                        _LENGTHS[length] = n
            if length is not None:
                resp["content_length"] = n
        if length is None and kind == "http" and code is not None:
            resp["content_length"] = sent
        if resp:
            http = seg.http
            old = http.get("response")
            if old is None:
                http["response"] = resp
            else:
                old.update(resp)
        tracer.end_segment(seg, end_time=end_time)
    except Exception:  # noqa: BLE001
        _fail("end")


def _with_header(message, echo):
    """A copy of ``message`` whose headers carry our X-Amzn-Trace-Id (replacing one the
    application set rather than sending two)."""
    headers = [*(message.get("headers") or ())]  # any iterable of pairs, read once
    for k, _ in headers:
        # bytes.lower() only for a name of its length (15): a lower() per header and a list
        # comprehension were most of this function's cost
        if len(k) == 15 and k.lower() == _TRACE_HEADER:
            headers = [h for h in headers if h[0].lower() != _TRACE_HEADER]
            break
    headers.append((_TRACE_HEADER, echo))
    message = message.copy()  # the application's own message is left as it was
    message["headers"] = headers
    return message


def _server_host(scope):
    server = scope.get("server")
    if server and server[0]:
        host, port = server[0], server[1]
        return host if port is None else f"{host}:{port}"
    return ""


def _record_request(seg, scope, kind, method, host, path, agent, xff, tracer):
    scheme = scope.get("scheme") or ("ws" if kind == "websocket" else "http")
    url = scheme + "://" + host + (scope.get("root_path") or "") + path
    qs = scope.get("query_string")
    if qs:
        url += "?" + redact_query(qs.decode("latin-1"), tracer.config.redact_query_params)
    # clip() called only for what it would change (a Python call per field), as in WSGI
    if type(method) is not str or len(method) > FIELD_MAX:
        method = clip(method)
    if len(url) > FIELD_MAX:
        url = clip(url)
    req = {"method": method, "url": url}
    if xff:
        req["client_ip"] = clip(xff.decode("latin-1").split(",", 1)[0].strip())
        req["x_forwarded_for"] = True
    else:
        client = scope.get("client")
        if client:
            ip = client[0]
            if ip:
                req["client_ip"] = ip if type(ip) is str and len(ip) <= FIELD_MAX else clip(ip)
    if agent:
        agent = agent.decode("latin-1")
        req["user_agent"] = agent if len(agent) <= FIELD_MAX else clip(agent)
    seg.http = {"request": req}


def is_asgi(app) -> bool:
    """An ASGI 3 application: a coroutine function, or an object whose ``__call__`` is one."""
    import inspect

    if inspect.isclass(app):
        return False
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(app, "__call__", None)  # noqa: B004 - the method itself is inspected
    return inspect.iscoroutinefunction(call)


def wrap_asgi(app, hint=None):
    """Wrap ``app`` once (see ``_web.wrap_once``)."""
    return _web.wrap_once(XRayMiddleware, app, hint, _fail)


def patch():
    pass


def unpatch():
    pass
