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
from ..core.entities import clip
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
                elif key == b"tracestate":
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
            if state and hdr is not None:
                seg.tracestate = state.decode("latin-1")[:512]
            echo = "Root=" + seg.trace_id
            if hdr is not None and hdr.sampled == "?":
                echo += ";Sampled=1" if seg.sampled else ";Sampled=0"
            echo = echo.encode("latin-1")
            if seg.sampled:
                _record_request(seg, scope, kind, method, host, path, agent, xff, tracer)
        except Exception:  # noqa: BLE001
            _fail("begin")
            return await self.app(scope, receive, send)
        try:
            if seg.sampled:
                await _Sampled(tracer, seg, echo, scope, kind).run(self.app, receive, send)
            else:
                await self.app(scope, receive, _unsampled_send(send, echo))
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


def _unsampled_send(send, echo):
    """No document: answer with the trace header (downstream calls propagate ``Sampled=0``)."""

    async def _send(message):
        if message.get("type") == "http.response.start":
            try:
                message = _with_header(message, echo)
            except Exception:  # noqa: BLE001
                _fail("send")
        await send(message)

    return _send


class _Sampled:
    """One sampled request's response state and the ``send`` that watches it."""

    __slots__ = ("tracer", "seg", "echo", "scope", "kind", "status", "length", "sent", "done",
                 "root_path", "complete_at")

    def __init__(self, tracer, seg, echo, scope, kind):
        self.tracer = tracer
        self.seg = seg
        self.echo = echo
        self.scope = scope
        self.kind = kind
        self.status = None
        self.length = None  # Content-Length as the application declared it
        self.sent = 0
        self.done = False
        self.root_path = scope.get("root_path", "")
        self.complete_at = None

    async def run(self, app, receive, send):
        async def _send(message):
            try:
                message = self.watch(message)
            except Exception:  # noqa: BLE001
                _fail("send")
            await send(message)
            if self.done is None:  # the response is complete: end the segment now
                self.complete_at = _time()
                self.finish()

        try:
            await app(self.scope, receive, _send)
        except BaseException as exc:
            if not self.done:
                self.finish(exc)
            hide_frames(exc)
            raise
        if not self.done:
            self.finish()

    def watch(self, message):
        kind = message.get("type")
        if kind == "http.response.body":
            body = message.get("body")
            if body:
                self.sent += len(body)
            if not message.get("more_body", False) and self.status is not None:
                self.complete_at = _time()
                # a 5xx is often followed by the exception behind it (Starlette's error
                # middleware answers, then re-raises): end it when the application returns
                if not (isinstance(self.status, int) and self.status >= 500):
                    self.done = None  # ends once the server took the message
        elif kind == "http.response.start":
            self.status = message.get("status")
            self.route()
            message = _with_header(message, self.echo)
            for key, value in message["headers"]:
                if key.lower() == b"content-length":
                    self.length = value
                    break
        elif kind == "websocket.accept":
            self.status = 101
            self.route()
        elif kind == "websocket.close":
            if self.status is None:
                self.status = 403
        elif kind == "websocket.http.response.start":  # a denial response
            self.status = message.get("status")
        return message

    def route(self):
        """The framework's route template (Starlette/FastAPI put the matched route into the
        scope), never the raw path."""
        route = self.scope.get("route")
        if route is None:
            return
        template = getattr(route, "path", None)
        if isinstance(template, str):
            prefix = self.scope.get("root_path", "")[len(self.root_path):]
            _web.record_route(self.seg, prefix + template)

    def finish(self, exc=None):
        self.done = True
        seg = self.seg
        try:
            code = self.status
            if exc is not None:
                if isinstance(exc, Exception):
                    seg.add_exception(exc)
                if code is None:
                    code = 500
            resp = seg.http.setdefault("response", {})
            if code is not None:
                try:
                    code = int(code)
                    resp["status"] = code
                    seg.set_status(code)
                except (TypeError, ValueError):
                    pass
            length = self.length
            if length is not None:
                try:
                    resp["content_length"] = int(length)
                except (TypeError, ValueError):
                    length = None
            if length is None and self.kind == "http" and code is not None:
                resp["content_length"] = self.sent
            if not resp:
                del seg.http["response"]
            self.tracer.end_segment(seg, end_time=self.complete_at)
        except Exception:  # noqa: BLE001
            _fail("end")


def _with_header(message, echo):
    """A copy of ``message`` whose headers carry our X-Amzn-Trace-Id (replacing one the
    application set rather than sending two)."""
    headers = [h for h in message.get("headers") or () if h[0].lower() != _TRACE_HEADER]
    headers.append((_TRACE_HEADER, echo))
    message = dict(message)
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
    req = {"method": clip(method), "url": clip(url)}
    if xff:
        req["client_ip"] = clip(xff.decode("latin-1").split(",", 1)[0].strip())
        req["x_forwarded_for"] = True
    else:
        client = scope.get("client")
        if client and client[0]:
            req["client_ip"] = clip(client[0])
    if agent:
        req["user_agent"] = clip(agent.decode("latin-1"))
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
