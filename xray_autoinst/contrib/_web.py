"""Shared by the WSGI and ASGI middlewares and the framework integrations: the service's default
name, the route annotation and the exception a framework turned into a 500 itself."""

from __future__ import annotations

import os
import sys

from ..core import tracer as _tracer_mod
from ..core.entities import clip
from . import _guard

# the annotation users filter and group by: annotation.http_route = "/items/{item_id}"
ROUTE_KEY = "http_route"
# modules whose names say nothing about the service: a name is never derived from them
FRAMEWORKS = frozenset((
    "flask", "werkzeug", "django", "starlette", "fastapi", "uvicorn", "uvicorn_worker",
    "hypercorn", "daphne", "gunicorn", "asgiref", "a2wsgi", "quart", "falcon", "litestar",
    "sanic", "waitress", "wsgiref", "xray_autoinst", "aws_xray_sdk",
))


# the reporter of the framework and server integrations (``_web._fail("flask-route")``)
_fail = _guard.reporter(
    "web", "xray-autoinst web instrumentation failed (%s); the request is unaffected")


class AppWrapper:
    """What the WSGI and ASGI middlewares share: the wrapped application (whose own attributes
    stay reachable through the wrapper) and the marker that keeps it from being wrapped twice."""

    _xray_autoinst_app = True

    def __init__(self, app, name=None, tracer=None):
        self.app = app
        self.name = name
        self._tracer = tracer

    def __getattr__(self, attr):  # keep the application's own attributes reachable
        return getattr(self.__dict__["app"], attr)


def project_name(target) -> str | None:
    """The project a module path or server target names: ``shop.wsgi:application`` → ``shop``,
    ``app:app`` → ``app``; None for a framework's own module or the main program."""
    if not isinstance(target, str):
        return None
    module = target.split(":", 1)[0].strip()
    parts = [p for p in module.split(".") if p]
    if parts and parts[0] == "src" and len(parts) > 1:
        parts = parts[1:]
    if not parts or parts[0] in FRAMEWORKS or parts[0] == "__main__":
        return None
    if "/" in parts[0] or "\\" in parts[0]:  # hypercorn accepts file paths
        return None
    return parts[0]


def _django_project():
    conf = sys.modules.get("django.conf")
    if conf is None:
        return None
    try:
        return project_name(conf.settings.SETTINGS_MODULE)
    except Exception:  # noqa: BLE001 - settings not configured
        return None


def app_project(app) -> str | None:
    """The project an application object belongs to (never a framework's module)."""
    module = getattr(app, "__module__", None)
    name = project_name(module) if isinstance(module, str) else None
    if name is None and isinstance(module, str) and module.startswith("django."):
        name = _django_project()
    if name is None:
        # a framework object: Flask's import name, else Django's settings package, else the
        # module of the application's own that holds it (``app = FastAPI()`` in shop/main.py)
        name = project_name(getattr(app, "import_name", None)) or _django_project() \
            or project_name(_holder(app))
    return name


def _holder(app):
    """The name of the application's own module holding ``app`` as a global (run once, when
    a server loads the application; modules installed in site-packages are not searched)."""
    stdlib = os.path.dirname(os.__file__)
    main = sys.modules.get("__main__")
    for name, module in list(sys.modules.items()):
        if name.split(".", 1)[0] in FRAMEWORKS or module is main or name.startswith("__"):
            continue
        path = getattr(module, "__file__", None) or ""
        if not path or "-packages" in path or path.startswith(stdlib):
            continue
        try:
            if any(value is app for value in vars(module).values()):
                return name
        except Exception:  # noqa: BLE001 - exotic module objects
            continue
    return None


def name_hint(app=None, target=None) -> None:
    """Tell the tracer what the user started (a server target, else the application's
    project); the tracer keeps the first hint and never renames a service once named."""
    # (also installs the tracer now, while the server starts in its main thread: that is where
    # the flush on SIGTERM can be set up, which a first request in a worker thread cannot do)
    tracer = _tracer_mod.get_tracer()
    hint = project_name(target) if target is not None else None
    if hint is None and app is not None:
        hint = app_project(app)
    if hint:
        tracer.set_name_hint(hint)


def wrap_once(middleware, app, hint, fail):
    """``middleware(app)``, once (an application already wrapped is returned as it is); tell
    the tracer what the user started for the default name (``hint``: the server's target, e.g.
    gunicorn's ``shop.wsgi:application``)."""
    if app is None or getattr(app, "_xray_autoinst_app", False):
        return app
    try:
        name_hint(app, hint)
    except Exception:  # noqa: BLE001
        fail("wrap")
    return middleware(app)


def record_route(seg, template) -> None:
    """Record the route template on a sampled segment (never the raw path)."""
    if seg is None or not seg.sampled or not isinstance(template, str) or not template:
        return
    if not _tracer_mod.tracer.config.route_annotation:
        return
    seg.put_annotation(ROUTE_KEY, clip(template))


def record_current_route(template) -> None:
    """For frameworks that know the route only inside the request (Django, Flask)."""
    entity = _tracer_mod.current_entity.get()
    if entity is None or not entity.sampled:
        return
    try:
        record_route(entity.segment, template)
    except Exception:  # noqa: BLE001
        _fail("route")


def record_exception(exc) -> None:
    """Record an exception a framework turned into a 500 response itself (Flask, Django)."""
    entity = _tracer_mod.current_entity.get()
    if entity is None or not entity.sampled:
        return
    try:
        entity.segment.add_exception(exc)
    except Exception:  # noqa: BLE001
        _fail("exception")
