"""``ThreadPoolExecutor.submit`` runs each task inside a copy of the submitting context, so
subsegments of the task nest under the request that submitted it, and nothing carries over from
one task to the next on the same worker thread. A task submitted while a received message is
being handled holds that message's segment open until it ends (see ``_work``)."""

import contextvars

from ..core import wrapping
from ..core.tracer import current_entity
from . import _work

_copy_context = contextvars.copy_context


def get_version():
    return ""


def _traced_submit(wrapped, instance, args, kwargs):
    unit = None
    try:
        cur = current_entity.get()
        if args and cur is not None:
            ctx = _copy_context()
            unit = _work.unit_of(cur) if _work.units else None
            if unit is not None:
                args = (ctx.run, _work.handoff(unit, args[0], args[1:])) + tuple(args[1:])
            else:
                args = (ctx.run,) + tuple(args)
    except Exception:  # noqa: BLE001
        pass
    if unit is None:
        return wrapped(*args, **kwargs)
    try:
        return wrapped(*args, **kwargs)
    except BaseException:  # the task will never run (executor shut down): its hold goes
        _work.release_hold(unit)
        raise


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
