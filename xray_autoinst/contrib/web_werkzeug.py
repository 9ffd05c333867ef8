"""werkzeug's development server (``flask run``, ``app.run()``, ``run_simple``): wrap the
application ``BaseWSGIServer`` is built with."""

from ..core import wrapping
from ._server import wrap_init_app


def get_version():
    from importlib import metadata

    return metadata.version("werkzeug")


def patch():
    from werkzeug import serving

    if getattr(serving, "_xray_autoinst_patched", False):
        return
    wrap_init_app(serving.BaseWSGIServer, 2, "app")
    serving._xray_autoinst_patched = True


def unpatch():
    from werkzeug import serving

    if not getattr(serving, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(serving.BaseWSGIServer, "__init__")
    serving._xray_autoinst_patched = False
