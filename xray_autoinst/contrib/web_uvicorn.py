"""uvicorn: wrap the application ``Config.load()`` produced, outermost (after uvicorn's own
interface adapters and proxy-headers middleware), once per process.

This covers ``uvicorn app:app`` (``--factory``, ``--reload`` and ``--workers N``, whose workers
are fresh interpreters started by multiprocessing *spawn* that inherit the launcher's
environment and so load the hook again), ``uvicorn.run(...)`` from a script, and gunicorn's
uvicorn worker classes (``uvicorn.workers.UvicornWorker`` and the ``uvicorn-worker`` package),
which build a uvicorn ``Config`` in each worker.
"""

from ..core import wrapping
from . import _web
from .web_asgi import wrap_asgi


def get_version():
    import uvicorn

    return uvicorn.__version__


def _traced_load(wrapped, instance, args, kwargs):
    result = wrapped(*args, **kwargs)
    try:
        app = getattr(instance, "loaded_app", None)
        if app is not None:
            # named after what the user gave uvicorn ("app:app", or the application object),
            # not after the adapters uvicorn wrapped around it
            given = instance.app
            if isinstance(given, str):
                _web.name_hint(target=given)
            else:
                _web.name_hint(given)
            instance.loaded_app = wrap_asgi(app)
    except Exception:  # noqa: BLE001 - serve the application untraced
        _web._fail("uvicorn")
    return result


def patch():
    from uvicorn import config

    if getattr(config, "_xray_autoinst_patched", False):
        return
    wrapping.wrap(config.Config, "load", _traced_load)
    config._xray_autoinst_patched = True


def unpatch():
    from uvicorn import config

    if not getattr(config, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(config.Config, "load")
    config._xray_autoinst_patched = False
