"""psycopg 3: one ``remote`` subsegment per ``execute``/``executemany``, named
``database@host``.

psycopg 3's connections and cursors are Python classes, so their methods are patched in place
(no proxy, no subclass): ``Cursor.execute``/``executemany`` (also what ``Connection.execute``,
``ClientCursor`` and ``RawCursor`` run), ``ServerCursor.execute`` (the ``DECLARE`` of a named
cursor), and the same methods of the async classes. Every connection, however it is made
(``connect``, ``psycopg_pool``, a subclass), is traced, and adapters, row factories, ``copy``
and pipelines are untouched. The empty statement psycopg_pool's ``check_connection`` sends is
not recorded. The async methods stay coroutine functions, and each subsegment belongs to the
awaiting task's context, so concurrent requests on one event loop never see each other's.
"""

from __future__ import annotations

import functools

from ..core import wrapping
from . import _calls, _sql

_recording = _sql.recording
_begin = _sql.begin
_run = _sql.run


def get_version():
    import psycopg

    return psycopg.__version__


def _info(conn):
    # getattr, not conn.__dict__: on Python 3.11 reading an instance's __dict__ gives up its
    # compact attribute storage (thousands of instructions on every later attribute access)
    info = getattr(conn, "_xray_sql", None)
    if info is None:
        info = _describe(conn)
        conn._xray_sql = info
    return info


def _describe(conn):
    import psycopg

    i = conn.info
    try:
        impl = psycopg.pq.__impl__
    except AttributeError:
        impl = None
    return _sql.libpq_info(
        i, i.server_version, "psycopg %s%s" % (psycopg.__version__, " (%s)" % impl if impl else ""))


def _start(cursor, args, kwargs):
    try:
        conn = cursor._conn
        query = args[0] if args else _sql.first_arg(args, kwargs, "query")
        if query == "":  # psycopg_pool's check_connection(): a ping, not a statement
            return None
        return _begin(_info(conn), query, "statement", conn)
    except Exception:  # noqa: BLE001
        _sql.fail_internal("psycopg")
        return None


def _traced_execute(wrapped, instance, args, kwargs):
    # psycopg_pool's check_connection() sends "": a ping, not a statement
    conn = getattr(instance, "_conn", None)
    return _run("psycopg", conn, _info, wrapped, args, kwargs, "statement", ("query",), conn, "")


def _wrap_async(owner, name):
    """Like ``wrapping.wrap`` but the replacement is itself a coroutine function (so
    ``inspect.iscoroutinefunction`` still says so); ``wrapping.unwrap`` undoes it."""
    raw = owner.__dict__[name]
    if wrapping.is_wrapped(raw):
        return

    @functools.wraps(raw)
    async def method(self, /, *args, **kwargs):
        try:
            return await _async_execute(raw.__get__(self, type(self)), self, args, kwargs)
        except BaseException as exc:
            wrapping.hide_frames(exc)
            raise

    wrapping.mark(method, raw)
    setattr(owner, name, method)


async def _async_execute(wrapped, instance, args, kwargs):
    if not _recording():
        return await wrapped(*args, **kwargs)
    return await _calls.acall(_start(instance, args, kwargs), _sql.close, wrapped, args, kwargs)


def _targets():
    import psycopg

    sync = [
        (psycopg.Cursor, "execute"),
        (psycopg.Cursor, "executemany"),
        (psycopg.ServerCursor, "execute"),
    ]
    asyn = [
        (psycopg.AsyncCursor, "execute"),
        (psycopg.AsyncCursor, "executemany"),
        (psycopg.AsyncServerCursor, "execute"),
    ]
    return sync, asyn


def patch():
    import psycopg

    if getattr(psycopg, "_xray_autoinst_patched", False):
        return
    _sql.tracer_ready()
    sync, asyn = _targets()
    for owner, name in sync:
        wrapping.wrap(owner, name, _traced_execute)
    for owner, name in asyn:
        _wrap_async(owner, name)
    psycopg._xray_autoinst_patched = True


def unpatch():
    import psycopg

    if not getattr(psycopg, "_xray_autoinst_patched", False):
        return
    sync, asyn = _targets()
    for owner, name in sync + asyn:
        wrapping.unwrap(owner, name)
    psycopg._xray_autoinst_patched = False
