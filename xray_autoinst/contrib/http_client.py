"""http.client (and so urllib.request, urllib3, requests): one ``remote`` subsegment per
request/response exchange, named after the host, with the trace header injected.

On ``http.client.HTTPConnection``: ``endheaders`` begins the exchange (the request line and
headers are complete; a connection is opened lazily inside it) and adds ``X-Amzn-Trace-Id``
unless the caller set one, a failure to send ends the exchange with ``fault``; ``getresponse``
ends it with the status, or with ``fault`` and the cause; ``connect`` (on both connection
classes) times the ``connect``/``dns``/``dial``/``tls`` phases of new connections. See
``_http`` for the details.

``endheaders`` and ``getresponse`` run on every request, so their replacements keep the
originals' signatures (``_http.replace_method``) rather than going through the generic
``(wrapped, instance, args, kwargs)`` wrapper; the discipline is the same: the original is
called exactly once, outside any instrumentation ``try``, its result and exception untouched.
"""

from __future__ import annotations

from ..core.wrapping import hide_frames
from . import _http


def get_version():
    import platform

    return platform.python_version()


def _traced_endheaders(original):
    def endheaders(self, message_body=None, *, encode_chunked=False):
        try:
            _http.begin_exchange(self)
        except Exception:  # noqa: BLE001
            _http.fail("endheaders")
        try:
            return original(self, message_body, encode_chunked=encode_chunked)
        except BaseException as exc:
            if self._xray_autoinst_sub is not None:
                try:
                    _http.send_failed(self, exc)
                except Exception:  # noqa: BLE001
                    _http.fail("endheaders")
            hide_frames(exc)
            raise

    return endheaders


def _traced_getresponse(original):
    def getresponse(self):
        try:
            response = original(self)
        except BaseException as exc:
            if self._xray_autoinst_sub is not None:
                try:
                    _http.end_exchange(self, exc=exc)
                except Exception:  # noqa: BLE001
                    _http.fail("getresponse")
            hide_frames(exc)
            raise
        if self._xray_autoinst_sub is not None:
            try:
                _http.end_exchange(self, response)
            except Exception:  # noqa: BLE001
                _http.fail("getresponse")
        return response

    return getresponse


def _traced_connect(wrapped, instance, args, kwargs):
    """``connect`` of both classes: the outermost call times the phases; the inner one (HTTPS
    calling HTTP's) marks the end of the TCP dial."""
    started = None
    try:
        started = _http.connect_begin(instance, instance.default_port == 443)
    except Exception:  # noqa: BLE001
        _http.fail("connect")
    if started is None:
        result = wrapped(*args, **kwargs)
        try:
            _http.tcp_done(instance)
        except Exception:  # noqa: BLE001
            _http.fail("connect")
        return result
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        try:
            _http.connect_end(instance, started, exc)
        except Exception:  # noqa: BLE001
            _http.fail("connect")
        raise
    try:
        _http.connect_end(instance, started)
    except Exception:  # noqa: BLE001
        _http.fail("connect")
    return result


def patch():
    import http.client as target

    from ..core import wrapping

    if getattr(target, "_xray_autoinst_patched", False):
        return
    conn = target.HTTPConnection
    _http.replace_method(conn, "endheaders", _traced_endheaders)
    _http.replace_method(conn, "getresponse", _traced_getresponse)
    wrapping.wrap(conn, "connect", _traced_connect)
    if hasattr(target, "HTTPSConnection"):  # absent when Python is built without ssl
        wrapping.wrap(target.HTTPSConnection, "connect", _traced_connect)
    _http.install("httplib")
    _http.state["exchanges"] = True
    target._xray_autoinst_patched = True


def unpatch():
    import http.client as target

    from ..core import wrapping

    if not getattr(target, "_xray_autoinst_patched", False):
        return
    conn = target.HTTPConnection
    for name in ("endheaders", "getresponse", "connect"):
        wrapping.unwrap(conn, name)
    if hasattr(target, "HTTPSConnection"):
        wrapping.unwrap(target.HTTPSConnection, "connect")
    _http.uninstall("httplib")
    _http.state["exchanges"] = False
    target._xray_autoinst_patched = False
