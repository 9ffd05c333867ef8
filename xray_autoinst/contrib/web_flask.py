"""Flask: what only the framework knows. It turns an unhandled exception into a 500 response
itself: the exception comes from its ``got_request_exception`` signal so the segment's fault
has its cause. The matched rule (``/items/<int:item_id>``) is recorded as the ``http_route``
annotation once the request is routed (``request_started``)."""

from . import _web


def get_version():
    from importlib import metadata

    return metadata.version("flask")


def _on_exception(sender, exception=None, **_kw):
    if exception is not None:
        _web.record_exception(exception)


def _on_request(sender, **_kw):
    try:
        from flask import request

        rule = request.url_rule
        if rule is not None:
            _web.record_current_route(rule.rule)
    except Exception:  # noqa: BLE001
        _web._fail("flask-route")


def patch():
    import flask

    if getattr(flask, "_xray_autoinst_patched", False):
        return
    flask.got_request_exception.connect(_on_exception, weak=False)
    flask.request_started.connect(_on_request, weak=False)
    flask._xray_autoinst_patched = True


def unpatch():
    import flask

    if not getattr(flask, "_xray_autoinst_patched", False):
        return
    flask.got_request_exception.disconnect(_on_exception)
    flask.request_started.disconnect(_on_request)
    flask._xray_autoinst_patched = False
