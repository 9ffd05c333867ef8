"""Shared by the server integrations: wrap the application argument a server is built with."""

from __future__ import annotations

from ..core import wrapping
from .web_wsgi import wrap_app


def wrap_init_app(cls, position, keyword):
    """Wrap ``cls.__init__`` so that its application argument is wrapped once."""

    def _traced_init(wrapped, instance, args, kwargs):
        try:
            if keyword in kwargs:
                kwargs[keyword] = wrap_app(kwargs[keyword])
            elif len(args) > position:
                args = args[:position] + (wrap_app(args[position]),) + args[position + 1 :]
        except Exception:  # noqa: BLE001 - the server starts as without the agent
            pass
        return wrapped(*args, **kwargs)

    return wrapping.wrap(cls, "__init__", _traced_init)


def init_app_patchers(module_name, class_name, position, keyword):
    """``patch()`` and ``unpatch()`` of an integration that wraps the application argument
    (``position``, or ``keyword``) of ``module_name.class_name.__init__``; the marker is on the
    module."""

    def patch():
        from importlib import import_module

        module = import_module(module_name)
        if getattr(module, "_xray_autoinst_patched", False):
            return
        wrap_init_app(getattr(module, class_name), position, keyword)
        module._xray_autoinst_patched = True

    def unpatch():
        from importlib import import_module

        module = import_module(module_name)
        if not getattr(module, "_xray_autoinst_patched", False):
            return
        wrapping.unwrap(getattr(module, class_name), "__init__")
        module._xray_autoinst_patched = False

    return patch, unpatch


def dist_version(module_name):
    import sys

    module = sys.modules.get(module_name)
    return getattr(module, "__version__", "") if module is not None else ""
