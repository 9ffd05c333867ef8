"""Django, under WSGI and ASGI alike: what only the framework knows.

- The exception behind a 500 Django produced itself comes from its ``got_request_exception``
  signal and becomes the segment's cause.
- The route template of the resolved URL pattern (``resolver_match.route``, e.g.
  ``items/<int:item_id>/``) is recorded as the ``http_route`` annotation, never the raw path.

The segment itself comes from the server's hook (gunicorn, uWSGI, waitress, runserver's wsgiref
server; uvicorn, hypercorn, daphne for ``asgi.py``).
"""

from ..core import wrapping
from . import _web


def get_version():
    import django

    return django.get_version()


def _on_exception(sender, request=None, **_kw):
    import sys

    exc = sys.exc_info()[1]
    if exc is not None:
        _web.record_exception(exc)


def _traced_resolve_request(wrapped, instance, args, kwargs):
    match = wrapped(*args, **kwargs)
    try:
        route = getattr(match, "route", None)
        if route:
            _web.record_current_route("/" + route.lstrip("^").rstrip("$"))
    except Exception:  # noqa: BLE001
        _web._fail("django-route")
    return match


def patch():
    from django.core import signals
    from django.core.handlers import base

    if getattr(base, "_xray_autoinst_patched", False):
        return
    signals.got_request_exception.connect(_on_exception, weak=False,
                                          dispatch_uid="xray_autoinst")
    wrapping.wrap(base.BaseHandler, "resolve_request", _traced_resolve_request)
    base._xray_autoinst_patched = True


def unpatch():
    from django.core import signals
    from django.core.handlers import base

    if not getattr(base, "_xray_autoinst_patched", False):
        return
    signals.got_request_exception.disconnect(dispatch_uid="xray_autoinst")
    wrapping.unwrap(base.BaseHandler, "resolve_request")
    base._xray_autoinst_patched = False
