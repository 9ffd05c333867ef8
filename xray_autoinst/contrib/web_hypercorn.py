"""hypercorn: wrap the framework its ``ASGIWrapper`` / ``WSGIWrapper`` is built with (the
``hypercorn`` command and ``hypercorn.asyncio.serve``/``hypercorn.trio.serve`` all build one),
with the ASGI or the WSGI middleware accordingly."""

from ..core import wrapping
from . import _web
from .web_asgi import wrap_asgi
from .web_wsgi import wrap_app


def get_version():
    from importlib import metadata

    return metadata.version("hypercorn")


def _wrapping_first_arg(wrap):
    def _traced_init(wrapped, instance, args, kwargs):
        try:
            if args:
                args = (wrap(args[0]),) + tuple(args[1:])
            elif "app" in kwargs:
                kwargs["app"] = wrap(kwargs["app"])
        except Exception:  # noqa: BLE001 - serve the application untraced
            _web._fail("hypercorn")
        return wrapped(*args, **kwargs)

    return _traced_init


def patch():
    from hypercorn import app_wrappers

    if getattr(app_wrappers, "_xray_autoinst_patched", False):
        return
    wrapping.wrap(app_wrappers.ASGIWrapper, "__init__", _wrapping_first_arg(wrap_asgi))
    wrapping.wrap(app_wrappers.WSGIWrapper, "__init__", _wrapping_first_arg(wrap_app))
    app_wrappers._xray_autoinst_patched = True


def unpatch():
    from hypercorn import app_wrappers

    if not getattr(app_wrappers, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(app_wrappers.ASGIWrapper, "__init__")
    wrapping.unwrap(app_wrappers.WSGIWrapper, "__init__")
    app_wrappers._xray_autoinst_patched = False
