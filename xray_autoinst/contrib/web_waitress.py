"""waitress: wrap the application each server is built with (``serve``, ``create_server`` and
``waitress-serve`` all construct ``BaseWSGIServer``)."""

from ..core import wrapping
from ._server import wrap_init_app


def get_version():
    from importlib import metadata

    return metadata.version("waitress")


def patch():
    from waitress import server

    if getattr(server, "_xray_autoinst_patched", False):
        return
    wrap_init_app(server.BaseWSGIServer, 0, "application")
    server._xray_autoinst_patched = True


def unpatch():
    from waitress import server

    if not getattr(server, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(server.BaseWSGIServer, "__init__")
    server._xray_autoinst_patched = False
