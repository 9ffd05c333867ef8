"""``ThreadPoolExecutor.submit`` runs each task inside a copy of the submitting context, so
subsegments of the task nest under the request that submitted it, and nothing carries over from
one task to the next on the same worker thread."""

import contextvars

from ..core import wrapping
from ..core.tracer import current_entity

_copy_context = contextvars.copy_context


def get_version():
    return ""


def _traced_submit(wrapped, instance, args, kwargs):
    try:
        if args and current_entity.get() is not None:
            ctx = _copy_context()
            args = (ctx.run,) + tuple(args)
    except Exception:  # noqa: BLE001
        pass
    return wrapped(*args, **kwargs)


def patch():
    from concurrent.futures import thread

    if getattr(thread, "_xray_autoinst_patched", False):
        return
    wrapping.wrap(thread.ThreadPoolExecutor, "submit", _traced_submit)
    thread._xray_autoinst_patched = True


def unpatch():
    from concurrent.futures import thread

    if not getattr(thread, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(thread.ThreadPoolExecutor, "submit")
    thread._xray_autoinst_patched = False
