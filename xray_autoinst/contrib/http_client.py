"""http.client (and so urllib.request, urllib3, requests): one ``remote`` subsegment per
request/response exchange, named after the host, with the trace header injected.

Wrapped on ``http.client.HTTPConnection``: ``putrequest`` (the exchange begins once it has
succeeded), ``endheaders`` (the ``X-Amzn-Trace-Id`` header is added unless the caller set one;
a failure to send ends the exchange with ``fault``), ``getresponse`` (the exchange ends with the
status, or with ``fault`` and the cause); and ``connect`` on both connection classes for the
``connect``/``dns``/``dial``/``tls`` phases of new connections. See ``_http`` for the details.
"""

from __future__ import annotations

from . import _http

_time = _http._time


def get_version():
    import platform

    return platform.python_version()


def _traced_putrequest(wrapped, instance, args, kwargs):
    start = _time()
    result = wrapped(*args, **kwargs)
    try:
        method = args[0] if args else kwargs.get("method")
        url = args[1] if len(args) > 1 else kwargs.get("url")
        _http.begin_exchange(instance, method, url, start)
    except Exception:  # noqa: BLE001
        _http.fail("putrequest")
    return result


def _traced_endheaders(wrapped, instance, args, kwargs):
    try:
        _http.inject_header(instance)
    except Exception:  # noqa: BLE001
        _http.fail("endheaders")
    try:
        return wrapped(*args, **kwargs)
    except BaseException as exc:
        if _http.has_exchange(instance):
            try:
                _http.send_failed(instance, exc)
            except Exception:  # noqa: BLE001
                _http.fail("endheaders")
        raise


def _traced_getresponse(wrapped, instance, args, kwargs):
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as exc:
        if _http.has_exchange(instance):
            try:
                _http.end_exchange(instance, exc=exc)
            except Exception:  # noqa: BLE001
                _http.fail("getresponse")
        raise
    if _http.has_exchange(instance):
        try:
            _http.end_exchange(instance, response)
        except Exception:  # noqa: BLE001
            _http.fail("getresponse")
    return response


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
    wrapping.wrap(conn, "putrequest", _traced_putrequest)
    wrapping.wrap(conn, "endheaders", _traced_endheaders)
    wrapping.wrap(conn, "getresponse", _traced_getresponse)
    wrapping.wrap(conn, "connect", _traced_connect)
    if hasattr(target, "HTTPSConnection"):  # absent when Python is built without ssl
        wrapping.wrap(target.HTTPSConnection, "connect", _traced_connect)
    _http.install_dns_hook("httplib")
    _http.state["exchanges"] = True
    target._xray_autoinst_patched = True


def unpatch():
    import http.client as target

    from ..core import wrapping

    if not getattr(target, "_xray_autoinst_patched", False):
        return
    conn = target.HTTPConnection
    for name in ("putrequest", "endheaders", "getresponse", "connect"):
        wrapping.unwrap(conn, name)
    if hasattr(target, "HTTPSConnection"):
        wrapping.unwrap(target.HTTPSConnection, "connect")
    _http.remove_dns_hook("httplib")
    _http.state["exchanges"] = False
    target._xray_autoinst_patched = False
