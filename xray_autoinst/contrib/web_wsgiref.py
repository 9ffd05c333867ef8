"""wsgiref: wrap the application given to ``WSGIServer.set_app``."""

from ..core import wrapping
from .web_wsgi import wrap_app


def get_version():
    import platform

    return platform.python_version()


def _traced_set_app(wrapped, instance, args, kwargs):
    if args:
        args = (wrap_app(args[0]),) + tuple(args[1:])
    elif "application" in kwargs:
        kwargs["application"] = wrap_app(kwargs["application"])
    return wrapped(*args, **kwargs)


def patch():
    from wsgiref import simple_server

    if getattr(simple_server, "_xray_autoinst_patched", False):
        return
    wrapping.wrap(simple_server.WSGIServer, "set_app", _traced_set_app)
    simple_server._xray_autoinst_patched = True


def unpatch():
    from wsgiref import simple_server

    if not getattr(simple_server, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(simple_server.WSGIServer, "set_app")
    simple_server._xray_autoinst_patched = False
