"""gunicorn: wrap the application its WSGI workers (sync, gthread, gevent, eventlet) load via
``BaseApplication.wsgi()``; with ``--preload`` that happens once in the master.

Only gunicorn's own WSGI worker classes (and their subclasses) get the WSGI middleware. Other
worker classes load something else: uvicorn's ``UvicornWorker`` hands an ASGI application to
uvicorn, whose own hook traces it; aiohttp's and tornado's workers serve applications of their
own kind, which are left untouched (and said so once in the log).
"""

import sys

from .. import log as _log
from ..core import wrapping
from . import _web
from .web_asgi import is_asgi
from .web_wsgi import wrap_app

# gunicorn's WSGI workers: module -> class names
WSGI_WORKERS = {
    "gunicorn.workers.sync": ("SyncWorker",),
    "gunicorn.workers.gthread": ("ThreadWorker",),
    "gunicorn.workers.ggevent": ("GeventWorker",),
    "gunicorn.workers.geventlet": ("EventletWorker",),
}
# worker classes whose application another hook traces (by class name, any module)
TRACED_ELSEWHERE = ("UvicornWorker", "UvicornH11Worker")


def get_version():
    import gunicorn

    return gunicorn.__version__


def _worker_class(instance):
    cfg = getattr(instance, "cfg", None)
    if cfg is None:
        return None
    try:
        return cfg.worker_class
    except Exception:  # noqa: BLE001 - gunicorn reports a bad worker class itself
        return None


def serves_wsgi(worker_class) -> bool:
    """Whether ``worker_class`` is (a subclass of) one of gunicorn's WSGI workers."""
    if worker_class is None:
        return True  # no configuration to say otherwise: gunicorn's default, sync
    bases = []
    for module_name, names in WSGI_WORKERS.items():
        module = sys.modules.get(module_name)  # loaded when the worker class is one of them
        if module is not None:
            bases += [getattr(module, n) for n in names if hasattr(module, n)]
    return bool(bases) and issubclass(worker_class, tuple(bases))


def _traced_wsgi(wrapped, instance, args, kwargs):
    app = wrapped(*args, **kwargs)
    try:
        worker_class = _worker_class(instance)
        if not serves_wsgi(worker_class) or is_asgi(app):
            name = getattr(worker_class, "__name__", repr(worker_class))
            if name not in TRACED_ELSEWHERE:
                _log.once("gunicorn-worker-" + name, _log.INFO,
                          "gunicorn worker class %s is not traced by xray-autoinst (its "
                          "application is served as without the agent)", name)
            return app
        wrapped_app = wrap_app(app, getattr(instance, "app_uri", None))
        if wrapped_app is not app and getattr(instance, "callable", None) is app:
            instance.callable = wrapped_app
        return wrapped_app
    except Exception:  # noqa: BLE001 - serve the application untraced
        _web._fail("gunicorn")
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
