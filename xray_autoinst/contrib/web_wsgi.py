"""The generic WSGI middleware: one segment per sampled request.

Applied automatically to the application each supported server loads; also public as
``xray_autoinst.wsgi.XRayMiddleware`` for wrapping by hand. The segment ends when the response
iterable is closed, so streamed bodies are timed fully. An unsampled request costs a header
parse, a sampling decision and a context switch: no document is built.
"""

from __future__ import annotations

from functools import partial

from ..core import header as _header
from ..core import tracer as _tracer_mod
from ..core.encoder import content_length as _content_length
from ..core.entities import UnsampledSegment
from ..core.wrapping import hide_frames
from . import _guard, _web

_parse = _header.parse
_ending = _tracer_mod.ending  # (a message taken during a request is let go when it ends)
_run_ending = _tracer_mod.run_ending
_reset = _tracer_mod.current_entity.reset
_set = _tracer_mod.current_entity.set


def get_version():
    return ""


_fail = _guard.reporter(
    "wsgi", "xray-autoinst WSGI middleware failed (%s); the request is unaffected")


class _ClosingResponse:
    """Ends the segment when the server closes the response iterable."""

    __slots__ = ("_result", "_done")

    def __init__(self, result, done):
        self._result = result
        self._done = done

    def __iter__(self):
        return iter(self._result)

    def close(self):
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._done()


class _ClosingSizedResponse(_ClosingResponse):
    """The same, for an iterable with a length: servers read it (wsgiref sets Content-Length
    for a one-block response) as they would the application's own."""

    __slots__ = ()

    def __len__(self):
        return len(self._result)


class _UnsampledRequest(UnsampledSegment):
    """An unsampled request's entity, which also answers the application's ``start_response``
    (appending the echo of the trace header) as a bound method: the object is made anyway, and
    a closure cost ~1 400 instructions more a request (its function object and two cells)."""

    echo = None
    server_start_response = None

    def start_response(self, status, headers, exc_info=None):
        try:
            # an application's own X-Amzn-Trace-Id (aws-xray-sdk's middleware) is replaced
            # rather than sent twice; only a name of its length is lowered (a lower() per
            # header was a sixth of the unsampled request's cost)
            for k, _v in headers:
                if len(k) == 15 and k.lower() == "x-amzn-trace-id":
                    headers[:] = [h for h in headers if h[0].lower() != "x-amzn-trace-id"]
                    break
            headers.append(("X-Amzn-Trace-Id", self.echo))
        except Exception:  # noqa: BLE001
            _fail("start_response")
        if exc_info is None:
            return self.server_start_response(status, headers)
        return self.server_start_response(status, headers, exc_info)


class XRayMiddleware(_web.AppWrapper):
    """Wrap a WSGI application: ``app = XRayMiddleware(app)``."""

    def __call__(self, environ, start_response):
        tracer = self._tracer
        if tracer is None:
            tracer = self._tracer = _tracer_mod.get_tracer()
        if not tracer.enabled:
            return self.app(environ, start_response)
        try:
            raw = environ.get("HTTP_X_AMZN_TRACE_ID") if tracer.use_xray else None
            hdr = _parse(raw) if raw else None
            if hdr is None and tracer.use_w3c and "HTTP_TRACEPARENT" in environ:
                hdr = _header.parse_traceparent(environ["HTTP_TRACEPARENT"])
            if tracer.reads_request:  # rules match on them
                method = environ.get("REQUEST_METHOD", "GET")
                path = environ.get("PATH_INFO", "")
                host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
                seg, token = tracer.begin_segment(None, hdr, host, method, path, None,
                                                  _UnsampledRequest)
            else:  # X-Ray's default rule alone: they are read for a sampled request only
                # (every argument positional: a keyword costs the call's fast path)
                seg, token = tracer.begin_segment(None, hdr, None, None, None, None,
                                                  _UnsampledRequest)
                method = None
            # the segment is named after it is made, and only if sampled: each attribute read
            # on this class goes through AppWrapper's __getattr__ hook (~300 instructions)
            sampled = seg.sampled  # (a class attribute: read once)
            if hdr is not None:
                if not raw and "HTTP_TRACESTATE" in environ:
                    seg.tracestate = environ["HTTP_TRACESTATE"][:512]
                if hdr.sampled == "?":
                    echo = "Root=" + hdr.root + (";Sampled=1" if sampled else ";Sampled=0")
                else:
                    echo = "Root=" + hdr.root
            else:
                # a sampled segment's own slot (its trace_id is a property: a Python call)
                echo = "Root=" + (seg.trace_id_ if sampled else seg.trace_id)
            if sampled:
                name = self.name
                if name:
                    seg.name = name
                if method is None:
                    method = environ.get("REQUEST_METHOD", "GET")
                    path = environ.get("PATH_INFO", "")
                    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
                # the request as its raw strings (see core/encoder.py, web_text)
                seg.raw_request = (
                    method, environ.get("wsgi.url_scheme", "http"), host,
                    environ.get("SCRIPT_NAME", ""), path, environ.get("QUERY_STRING"),
                    environ.get("HTTP_X_FORWARDED_FOR"), environ.get("REMOTE_ADDR"),
                    environ.get("HTTP_USER_AGENT"), tracer.config.redact_query_params)
            else:
                seg.echo = echo
                seg.server_start_response = start_response
                respond = seg.start_response
        except Exception:  # noqa: BLE001
            _fail("begin")
            return self.app(environ, start_response)
        if sampled:
            try:
                # a module function given the application: the wrapper's __getattr__ (the
                # application's attributes reachable through it) leaves every self.x lookup
                # unspecialised, and self._sampled made a bound method too
                return _sampled(self.app, environ, start_response, tracer, seg, token, echo)
            except BaseException as exc:  # the application's: out of its traceback go our frames
                hide_frames(exc)
                raise

        # unsampled, inline (one Python call less on the path production runs most): no
        # document; answer with the trace header, keep the context for downstream calls while
        # the application runs (they propagate ``Sampled=0``); ``respond`` is the entity's
        # bound start_response (see _UnsampledRequest)
        try:
            return self.app(environ, respond)
        except BaseException as exc:
            hide_frames(exc)
            raise
        finally:
            try:
                _reset(token)
            except ValueError:  # ended in another context
                _set(None)
            if _ending:  # an unsampled request does not pass through end_segment
                _run_ending(seg)


def _sampled(app, environ, start_response, tracer, seg, token, echo):
    state = [None, None]  # status, content-length

    def _start_response(status, headers, exc_info=None):
        try:
            state[0] = status
            # the echo appended (an application's own X-Amzn-Trace-Id replaced) and
            # Content-Length read in one pass; only names of the two lengths are lowered
            # (14: content-length, 15: x-amzn-trace-id)
            length = None
            own = False
            for k, v in headers:
                n = len(k)
                if n == 14:
                    if k.lower() == "content-length":
                        length = v
                elif n == 15 and k.lower() == "x-amzn-trace-id":
                    own = True
            if own:
                headers[:] = [h for h in headers if h[0].lower() != "x-amzn-trace-id"]
            headers.append(("X-Amzn-Trace-Id", echo))
            state[1] = length
        except Exception:  # noqa: BLE001
            _fail("start_response")
        if exc_info is None:
            return start_response(status, headers)
        return start_response(status, headers, exc_info)

    # the server's file wrapper is swapped only when it is a function (uWSGI's); a class
    # (gunicorn, waitress, wsgiref) costs this test alone
    watch = None
    try:
        fw = environ.get("wsgi.file_wrapper")
        if fw is not None and not isinstance(fw, type):
            watch = _watch_file_wrapper(environ)
    except Exception:  # noqa: BLE001
        _fail("file_wrapper")
    try:
        result = app(environ, _start_response)
    except BaseException as exc:
        if watch is not None:
            _unwatch(environ, watch)
        _end(tracer, seg, token, state, exc)
        hide_frames(exc)
        raise
    try:
        if watch is not None:
            _unwatch(environ, watch)
        if type(result) in (list, tuple):
            if state[1] is None:
                state[1] = sum(len(b) for b in result)
            _end(tracer, seg, token, state)
            return result
        if _is_file_wrapper(result, environ, watch):
            # the server's own file wrapper, returned untouched (its sendfile and
            # Content-Length logic key on its type or identity); the segment ends now
            _end(tracer, seg, token, state)
            return result
        # a function for close() made only here (a closure made on every request was
        # ~500 instructions, and its variables cells)
        done = partial(_end, tracer, seg, token, state)
        if hasattr(type(result), "__len__"):
            return _ClosingSizedResponse(result, done)
        return _ClosingResponse(result, done)
    except Exception:  # noqa: BLE001
        _fail("response")
        return result


def _end(tracer, seg, token, state, exc=None):
    """Record the response (``state``: the status line and Content-Length seen) and end
    the segment."""
    try:
        if exc is None and seg.raw_request is not None:
            # a request that returned, its request still raw: the status code and the length
            # as they came, for the encoder (see core/encoder.py, web_text); inline (the chain
            # of calls down to the emitter was half this path's Python frames)
            status = state[0]
            code = (_CODES.get(status) or _status_code(status)) if status else None
            if code is not None and code >= 400:
                seg.set_status(code)
            seg.raw_response = (code, state[1])
        else:
            _record_response(seg, state, exc)
        tracer.end_segment(seg, token)
    except Exception:  # noqa: BLE001
        _fail("end")


def _watch_file_wrapper(environ):
    """Note what ``environ['wsgi.file_wrapper']`` returns when it is not a class (uWSGI's is a
    built-in function that returns the file object itself): for the time of the application
    call it is swapped for a function that calls it and keeps its results. Returns
    ``[ours, server's, results...]``, or None when nothing is swapped."""
    fw = environ.get("wsgi.file_wrapper")
    if fw is None or isinstance(fw, type):
        return None

    def file_wrapper(*args, **kwargs):
        result = fw(*args, **kwargs)
        watch.append(result)
        return result

    file_wrapper.__wrapped__ = fw
    watch = [file_wrapper, fw]
    environ["wsgi.file_wrapper"] = file_wrapper
    return watch


def _unwatch(environ, watch):
    if watch is not None and environ.get("wsgi.file_wrapper") is watch[0]:
        environ["wsgi.file_wrapper"] = watch[1]


def _is_file_wrapper(result, environ, watch):
    """Is ``result`` what the server's ``wsgi.file_wrapper`` made? Recognised by the server's
    own class (waitress, gunicorn, wsgiref: an instance of ``environ['wsgi.file_wrapper']``)
    or, for a function (uWSGI), by identity with one of its results; never by duck typing."""
    if watch is not None:
        return any(result is made for made in watch[2:])
    fw = environ.get("wsgi.file_wrapper")
    return isinstance(fw, type) and isinstance(result, fw)


# the status codes of the status lines seen so far ("200 OK" -> 200): int() of a string is a
# type call, the dict lookup a tenth of it; bounded, a server sends few distinct lines
_CODES: dict = {}


def _status_code(status):
    code = _CODES.get(status)
    if code is None and type(status) is str:
        try:
            code = int(status[:3])
        except ValueError:
            return None
        if len(_CODES) < 256:
            _CODES[status] = code
        return code
    if code is None:
        try:
            return int(str(status)[:3])
        except ValueError:
            return None
    return code


def _record_response(seg, state, exc):
    status = state[0]
    code = _status_code(status) if status else None
    if exc is not None:
        if isinstance(exc, Exception):
            seg.add_exception(exc)
        if code is None:
            code = 500
    resp = {}
    if code is not None:
        resp["status"] = code
        seg.set_status(code)
    length = state[1]
    if length is not None:
        length = _content_length(length)
        if length is not None:
            resp["content_length"] = length
    if resp:
        seg.http["response"] = resp


def wrap_app(app, hint=None):
    """Wrap ``app`` once (see ``_web.wrap_once``)."""
    return _web.wrap_once(XRayMiddleware, app, hint, _fail)


record_exception = _web.record_exception


def patch():
    pass


def unpatch():
    pass


