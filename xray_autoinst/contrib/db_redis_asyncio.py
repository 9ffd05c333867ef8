"""redis.asyncio: the same subsegments as the sync client (db_redis.py, whose helpers record
them), from ``Redis.execute_command``, ``Pipeline.execute`` and
``Pipeline.immediate_execute_command``, which stay coroutine functions. Each task records
under its own request: the current entity is a ``contextvars`` variable, and a task runs in a
copy of the context it was created in.
"""

from __future__ import annotations

import functools

from ..core import tracer as _tracer_mod
from ..core import wrapping
from . import db_redis as _r


def get_version():
    import redis

    return redis.__version__


async def _traced_execute_command(wrapped, instance, args, kwargs):
    if not _r.recording():
        return await wrapped(*args, **kwargs)
    sub = _r.begin(instance, args)
    if sub is None:
        return await wrapped(*args, **kwargs)
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _r.fail(sub, exc)
        raise
    _r.end(sub)
    return result


async def _traced_execute(wrapped, instance, args, kwargs):
    if not _r.recording():
        return await wrapped(*args, **kwargs)
    sub = None
    try:
        sub = _r.pipeline_begin(instance)
    except Exception:  # noqa: BLE001
        _r.fail_internal("pipeline")
    if sub is None:
        return await wrapped(*args, **kwargs)
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _r.fail(sub, exc)
        raise
    _r.end(sub)
    return result


def _wrap_async(owner, name, wrapper) -> bool:
    """Like ``wrapping.wrap`` for a coroutine method: the replacement is a coroutine function
    too (``inspect.iscoroutinefunction`` stays true); ``wrapping.unwrap`` restores it."""
    raw = owner.__dict__.get(name)
    if raw is None or wrapping.is_wrapped(raw):
        return False

    @functools.wraps(raw)
    async def method(self, *args, **kwargs):
        return await wrapper(raw.__get__(self, type(self)), self, args, kwargs)

    wrapping.mark(method, raw)
    setattr(owner, name, method)
    return True


def _targets():
    from redis.asyncio import client

    return (
        (client.Redis, "execute_command", _traced_execute_command),
        (client.Pipeline, "execute", _traced_execute),
        (client.Pipeline, "immediate_execute_command", _traced_execute_command),
    )


def patch():
    from redis.asyncio import client

    if getattr(client, "_xray_autoinst_patched", False):
        return
    _tracer_mod.get_tracer()
    for owner, name, wrapper in _targets():
        _wrap_async(owner, name, wrapper)
    client._xray_autoinst_patched = True


def unpatch():
    from redis.asyncio import client

    if not getattr(client, "_xray_autoinst_patched", False):
        return
    for owner, name, _wrapper in _targets():
        wrapping.unwrap(owner, name)
    client._xray_autoinst_patched = False
