"""The shape every traced call shares, written once (sync and async): the library's module opens
what is to be recorded (``state``, or None: the call runs untraced), the wrapped call runs
exactly once outside any instrumentation ``try``, and ``close(state, result, exc)`` records the
outcome. ``close`` never raises (each module guards it with its reporter from ``_guard``,
which honours the test switch), so the result or the exception the application sees is the wrapped
call's own. The async variant awaits the call and stays a coroutine.
"""

from __future__ import annotations

from ..core import tracer as _tracer_mod
from ..core import wrapping


def call(state, close, wrapped, args, kwargs):
    if state is None:
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        close(state, None, exc)
        raise
    close(state, result, None)
    return result


async def acall(state, close, wrapped, args, kwargs):
    if state is None:
        return await wrapped(*args, **kwargs)
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        close(state, None, exc)
        raise
    close(state, result, None)
    return result


def attempt(fail, what, fn, *args):
    """``fn(*args)``, or None after ``fail(what)`` when the instrumentation itself raised (a
    begin that must never reach the application)."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001
        fail(what)
        return None


def remembered(obj, attr, describe):
    """``describe(obj)`` computed once and kept on ``obj`` as ``attr`` (computed again each time
    when ``obj`` takes no attributes)."""
    try:
        info = getattr(obj, attr)
    except AttributeError:
        info = None
    if info is None:
        info = describe(obj)
        try:
            setattr(obj, attr, info)
        except AttributeError:
            pass
    return info


def end_remote(sub, exc, fail, message=None) -> None:
    """Close the ``remote`` subsegment of a client call (SQL, Redis); on the call's exception
    record it first: fault + cause, its message replaced by ``message(exc)`` when given (no user
    data); a BaseException that is no Exception (KeyboardInterrupt, CancelledError,
    GeneratorExit: the call did not complete) only as a fault. Never raises: a failure goes to
    ``fail("end")`` / ``fail("error")``."""
    try:
        if exc is not None:
            if isinstance(exc, Exception):
                sub.add_exception(exc, remote=True)
                if message is not None and isinstance(sub.cause, dict):  # not a reference
                    sub.cause["exceptions"][0]["message"] = message(exc)
            else:
                sub.fault = True
        _tracer_mod.tracer.end_subsegment(sub)
    except Exception:  # noqa: BLE001
        fail("end" if exc is None else "error")


# -- patching a list of (owner, attribute name, wrapper) ----------------------------------------
def patch_targets(marked, targets, wrap=None) -> bool:
    """Wrap each of ``targets`` (``wrap`` is ``wrapping.wrap`` unless given, e.g.
    ``wrapping.wrap_async``), once: ``marked``, the library's module, carries the marker. The
    tracer is configured first (from the environment) if nothing did yet."""
    if getattr(marked, "_xray_autoinst_patched", False):
        return False
    _tracer_mod.get_tracer()
    wrap = wrap or wrapping.wrap
    for owner, name, wrapper in targets:
        wrap(owner, name, wrapper)
    marked._xray_autoinst_patched = True
    return True


def unpatch_targets(marked, targets) -> bool:
    if not getattr(marked, "_xray_autoinst_patched", False):
        return False
    for owner, name, _wrapper in targets:
        wrapping.unwrap(owner, name)
    marked._xray_autoinst_patched = False
    return True

