"""redis.asyncio: the same subsegments as the sync client (db_redis.py, whose helpers record
them), from ``Redis.execute_command``, ``Pipeline.execute`` and
``Pipeline.immediate_execute_command``, which stay coroutine functions. Each task records
under its own request: the current entity is a ``contextvars`` variable, and a task runs in a
copy of the context it was created in.
"""

from __future__ import annotations

from ..core import wrapping
from . import _calls
from . import db_redis as _r


def get_version():
    import redis

    return redis.__version__


async def _traced_execute_command(wrapped, instance, args, kwargs):
    return await _calls.acall(_r.command_state(instance, args), _r.close, wrapped, args, kwargs)


async def _traced_execute(wrapped, instance, args, kwargs):
    return await _calls.acall(_r.pipeline_state(instance), _r.close, wrapped, args, kwargs)


def patch():
    from redis.asyncio import client

    _calls.patch_targets(client, _r.targets(client, _traced_execute_command, _traced_execute),
                         wrapping.wrap_async)


def unpatch():
    from redis.asyncio import client

    _calls.unpatch_targets(client, _r.targets(client, _traced_execute_command, _traced_execute))
