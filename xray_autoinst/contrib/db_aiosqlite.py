"""aiosqlite: its statements land under the coroutine's request, once.

aiosqlite runs a real ``sqlite3`` connection in a thread of its own and hands it work through
a queue (``Connection._execute(fn, *args)``, which every ``execute``, cursor method,
``commit``, ``execute_fetchall``... goes through). That thread never sees the request's
context: it was copied, if at all, from whoever opened the connection. So ``_execute`` is
wrapped to run each queued function inside a copy of the *calling* coroutine's context, and
the statement is recorded by the sqlite3 integration (``db_sqlite3``) in that thread: one
``remote`` subsegment with sqlite3's fields, under the request that awaited it, never a second
one from this module. Outside any request the copy holds no entity, so nothing is recorded
there by default (``XRAY_CONTEXT_MISSING`` decides, as for sqlite3). Nothing is traced when the
sqlite3 integration is disabled.
"""

from __future__ import annotations

import contextvars

from ..core import wrapping

_copy_context = contextvars.copy_context


def get_version():
    import aiosqlite

    return getattr(aiosqlite, "__version__", "")


async def _traced_execute(wrapped, instance, args, kwargs):
    if not args:  # not the documented call shape: left as it is
        return await wrapped(*args, **kwargs)
    ctx = None
    try:
        ctx = _copy_context()
    except Exception:  # noqa: BLE001 - runs as without the agent
        pass
    if ctx is None:
        return await wrapped(*args, **kwargs)
    return await wrapped(ctx.run, *args, **kwargs)


def patch():
    import aiosqlite
    from aiosqlite import core

    if getattr(aiosqlite, "_xray_autoinst_patched", False):
        return
    wrapping.wrap_async(core.Connection, "_execute", _traced_execute)
    aiosqlite._xray_autoinst_patched = True


def unpatch():
    import aiosqlite
    from aiosqlite import core

    if not getattr(aiosqlite, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(core.Connection, "_execute")
    aiosqlite._xray_autoinst_patched = False
