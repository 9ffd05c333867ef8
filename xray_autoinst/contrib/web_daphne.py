"""daphne: wrap the application its ``Server`` is built with (the ``daphne`` command and
Django Channels' ``runserver`` both build one)."""

from ..core import wrapping
from . import _web
from .web_asgi import wrap_asgi


def get_version():
    from importlib import metadata

    return metadata.version("daphne")


def _traced_init(wrapped, instance, args, kwargs):
    try:
        if "application" in kwargs:
            kwargs["application"] = wrap_asgi(kwargs["application"])
        elif args:
            args = (wrap_asgi(args[0]),) + tuple(args[1:])
    except Exception:  # noqa: BLE001 - serve the application untraced
        _web._fail("daphne")
    return wrapped(*args, **kwargs)


def patch():
    from daphne import server

    if getattr(server, "_xray_autoinst_patched", False):
        return
    wrapping.wrap(server.Server, "__init__", _traced_init)
    server._xray_autoinst_patched = True


def unpatch():
    from daphne import server

    if not getattr(server, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(server.Server, "__init__")
    server._xray_autoinst_patched = False
