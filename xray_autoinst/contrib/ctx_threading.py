"""Context follows the work into threads: ``threading.Thread.start`` runs the thread's ``run``
inside a copy of the starting thread's context, so subsegments recorded in a thread started
while a request is open nest under that request. (The standard library copies no context into
threads.) Only done when an entity is current; the agent's own threads and the workers of a
``ThreadPoolExecutor`` (each of whose tasks carries its own context, see ctx_futures) are left
alone."""

import contextvars

from ..core import wrapping
from ..core.tracer import current_entity

_copy_context = contextvars.copy_context


def get_version():
    return ""


def _traced_start(wrapped, instance, args, kwargs):
    try:
        if current_entity.get() is not None and not getattr(
            instance, "_xray_autoinst_internal", False
        ):
            target = getattr(instance, "_target", None)
            if getattr(target, "__module__", None) != "concurrent.futures.thread":
                ctx = _copy_context()
                run = instance.run

                def _run_in_context():
                    return ctx.run(run)

                instance.run = _run_in_context
    except Exception:  # noqa: BLE001 - the thread starts as without the agent
        pass
    return wrapped(*args, **kwargs)


def patch():
    import threading

    if getattr(threading, "_xray_autoinst_patched", False):
        return
    wrapping.wrap(threading.Thread, "start", _traced_start)
    threading._xray_autoinst_patched = True


def unpatch():
    import threading

    if not getattr(threading, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(threading.Thread, "start")
    threading._xray_autoinst_patched = False
