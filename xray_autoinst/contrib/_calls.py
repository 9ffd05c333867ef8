"""The shape every traced call shares, written once (sync and async): the library's module opens
what is to be recorded (``state``, or None: the call runs untraced), the wrapped call runs
exactly once outside any instrumentation ``try``, and ``close(state, result, exc)`` records the
outcome. ``close`` never raises (each module guards it with its own failure logger, which
honours the test switch), so the result or the exception the application sees is the wrapped
call's own. The async variant awaits the call and stays a coroutine.
"""

from __future__ import annotations


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
