"""gunicorn: wrap the application every worker (sync, gthread, gevent) loads via
``BaseApplication.wsgi()``; with ``--preload`` that happens once in the master."""

from ..core import tracer as _tracer_mod
from ..core import wrapping
from .web_wsgi import wrap_app


def get_version():
    import gunicorn

    return gunicorn.__version__


def _traced_wsgi(wrapped, instance, args, kwargs):
    app = wrapped(*args, **kwargs)
    try:
        uri = getattr(instance, "app_uri", None)
        if isinstance(uri, str) and uri:
            module = uri.split(":", 1)[0].strip()
            if module:
                _tracer_mod.get_tracer().set_name_hint(module)
        wrapped_app = wrap_app(app)
        if wrapped_app is not app and getattr(instance, "callable", None) is app:
            instance.callable = wrapped_app
        return wrapped_app
    except Exception:  # noqa: BLE001 - serve the application untraced
        return app


def patch():
    from gunicorn.app import base

    if getattr(base, "_xray_autoinst_patched", False):
        return
    wrapping.wrap(base.BaseApplication, "wsgi", _traced_wsgi)
    base._xray_autoinst_patched = True


def unpatch():
    from gunicorn.app import base

    if not getattr(base, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(base.BaseApplication, "wsgi")
    base._xray_autoinst_patched = False
