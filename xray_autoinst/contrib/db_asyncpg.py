"""asyncpg: one ``remote`` subsegment per statement, named ``database@host``, with the same
``sql`` fields as psycopg (``_sql.pg_info``).

asyncpg's ``Connection`` and ``PreparedStatement`` are Python classes, so their coroutine
methods are patched in place with coroutine functions (``wrapping.wrap_async``):

- ``Connection.execute``/``executemany``/``fetch``/``fetchval``/``fetchrow``/``fetchmany`` and
  ``copy_from_query``: the query text is sanitized;
- ``Connection.copy_from_table``/``copy_to_table``/``copy_records_to_table``: recorded as
  ``COPY schema.table TO STDOUT`` / ``FROM STDIN`` (the table is an identifier, never data);
- ``PreparedStatement.fetch``/``fetchval``/``fetchrow``/``fetchmany``/``executemany``: the
  prepared statement's query. ``Connection.prepare`` itself is not a subsegment, so a
  statement prepared then run (what SQLAlchemy's asyncpg dialect does) is recorded once;
  a ``prepare`` the server rejects (a syntax error, a missing table: the statement never
  runs) is recorded, with its error, from the start of the ``prepare``;
- cursors (``conn.cursor(...)`` iterated or awaited, ``PreparedStatement.cursor``): one
  subsegment for the round trip that opens the cursor's portal; later fetches are not
  separate subsegments (as with psycopg's server-side cursors).

Pools (``asyncpg.create_pool``, ``Pool.fetch``, ``pool.acquire()``) hand out proxies whose
methods call these, so pooled calls are traced with no pool-specific code. What asyncpg runs
for its own bookkeeping is not recorded: the reset query a pool runs when a connection is
released (``Connection.reset``) and a ``Transaction``'s ``BEGIN``/``COMMIT``/``ROLLBACK``
(as psycopg's ``commit()`` is not); a ``BEGIN`` the application executes itself is.
"""

from __future__ import annotations

import contextvars
import time
import weakref

from ..core import wrapping
from . import _calls, _sql

_recording = _sql.recording
_begin = _sql.begin
_close_with_error = _sql.close_with_error
# set while asyncpg runs statements of its own (pool reset, transaction control)
_quiet: contextvars.ContextVar = contextvars.ContextVar("xray_autoinst_asyncpg_quiet",
                                                        default=False)
_quiet_get = _quiet.get
_infos: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_time = time.time

QUERY_METHODS = ("execute", "executemany", "fetch", "fetchval", "fetchrow", "fetchmany",
                 "copy_from_query")
COPY_OUT = ("copy_from_table",)
COPY_IN = ("copy_to_table", "copy_records_to_table")
PREPARED_METHODS = ("fetch", "fetchval", "fetchrow", "fetchmany", "executemany")
# a cursor's first round trip (Bind, or Bind and Execute for an iterated cursor)
CURSOR_METHODS = ("_bind_exec", "_bind")
QUIET_CONNECTION = ("reset",)
# what commit()/rollback() and ``async with`` run
QUIET_TRANSACTION = ("start", "_Transaction__commit", "_Transaction__rollback")


def get_version():
    import asyncpg

    return asyncpg.__version__


def _info(conn):
    info = _infos.get(conn)
    if info is None:
        info = _describe(conn)
        try:
            _infos[conn] = info
        except TypeError:  # not weakly referenceable: described on every call
            pass
    return info


def _describe(conn):
    import asyncpg

    params = getattr(conn, "_params", None)
    addr = getattr(conn, "_addr", None)
    host = port = None
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
    elif isinstance(addr, str):  # a Unix socket: /run/postgresql/.s.PGSQL.5432
        host, _, name = addr.rpartition("/")
        host = host or "/"
        port = name.rsplit(".", 1)[-1] if name.startswith(".s.PGSQL.") else None
    version = standard = None
    try:
        settings = conn._protocol.get_settings()
        version = getattr(settings, "server_version", None)
        standard = getattr(settings, "standard_conforming_strings", None)
    except Exception:  # noqa: BLE001 - described without them
        pass
    if not version:
        try:
            version = "%d.%d" % tuple(conn.get_server_version()[:2])
        except Exception:  # noqa: BLE001
            version = None
    return _sql.pg_info(
        getattr(params, "database", None),
        getattr(params, "user", None),
        host,
        port,
        version,
        standard,
        "asyncpg %s" % asyncpg.__version__,
    )


def _start(conn, query):
    try:
        return _begin(_info(conn), query, "statement")
    except Exception:  # noqa: BLE001
        _sql.fail_internal("asyncpg")
        return None


async def _traced_query(wrapped, instance, args, kwargs):
    if not _recording() or _quiet_get():
        return await wrapped(*args, **kwargs)
    sub = _start(instance, args[0] if args else _sql.first_arg(args, kwargs, "query",
                                                               "command"))
    return await _calls.acall(sub, _sql.close, wrapped, args, kwargs)


def _copy_query(args, kwargs, direction):
    table = args[0] if args else kwargs.get("table_name")
    schema = kwargs.get("schema_name")
    if not isinstance(table, str):
        return "COPY " + direction
    name = "%s.%s" % (schema, table) if isinstance(schema, str) and schema else table
    return "COPY %s %s" % (name, direction)


def _start_copy(conn, args, kwargs, direction):
    return _start(conn, _copy_query(args, kwargs, direction))


def _traced_copy(direction):
    """The wrapper of ``copy_*_to_table``/``copy_*_from_*`` (``direction``: TO STDOUT or FROM
    STDIN)."""

    async def traced_copy(wrapped, instance, args, kwargs):
        if not _recording() or _quiet_get():
            return await wrapped(*args, **kwargs)
        sub = _calls.attempt(_sql.fail_internal, "asyncpg", _start_copy, instance, args, kwargs,
                             direction)
        return await _calls.acall(sub, _sql.close, wrapped, args, kwargs)

    return traced_copy


_traced_copy_out = _traced_copy("TO STDOUT")
_traced_copy_in = _traced_copy("FROM STDIN")


def _start_prepared(statement):
    return _start(statement._connection, statement._query)


async def _traced_prepared(wrapped, instance, args, kwargs):
    if not _recording() or _quiet_get():
        return await wrapped(*args, **kwargs)
    sub = _calls.attempt(_sql.fail_internal, "asyncpg", _start_prepared, instance)
    return await _calls.acall(sub, _sql.close, wrapped, args, kwargs)


async def _traced_prepare(wrapped, instance, args, kwargs):
    if not _recording() or _quiet_get():
        return await wrapped(*args, **kwargs)
    started = _time()
    try:
        return await wrapped(*args, **kwargs)
    except Exception as exc:
        _failed_prepare(instance, args, kwargs, started, exc)
        raise


def _failed_prepare(conn, args, kwargs, started, exc):
    try:
        sub = _start(conn, _sql.first_arg(args, kwargs, "query"))
        if sub is not None:
            sub.start_time = started
            _close_with_error(sub, exc)
    except Exception:  # noqa: BLE001
        _sql.fail_internal("asyncpg")


async def _traced_quietly(wrapped, instance, args, kwargs):
    token = _quiet.set(True)
    try:
        return await wrapped(*args, **kwargs)
    finally:
        _quiet.reset(token)


def _sync_adapter(async_wrapper):
    """For a method that is a plain function returning a coroutine (asyncpg's
    ``connresource.guarded`` methods check the connection when called, not when awaited): the
    method is called at once, as without the agent, and the coroutine it returned is awaited
    under ``async_wrapper``."""

    def wrapper(wrapped, instance, args, kwargs):
        awaitable = wrapped(*args, **kwargs)
        return async_wrapper(lambda *_a, **_k: awaitable, instance, args, kwargs)

    return wrapper


def _targets():
    from asyncpg import connection, cursor, prepared_stmt, transaction

    conn = connection.Connection
    stmt = prepared_stmt.PreparedStatement
    xact = transaction.Transaction
    out = [(conn, n, _traced_query) for n in QUERY_METHODS]
    out += [(conn, n, _traced_copy_out) for n in COPY_OUT]
    out += [(conn, n, _traced_copy_in) for n in COPY_IN]
    out += [(stmt, n, _traced_prepared) for n in PREPARED_METHODS]
    out.append((conn, "prepare", _traced_prepare))
    out += [(cursor.BaseCursor, n, _traced_prepared) for n in CURSOR_METHODS]
    out += [(conn, n, _traced_quietly) for n in QUIET_CONNECTION]
    out += [(xact, n, _traced_quietly) for n in QUIET_TRANSACTION]
    return [(owner, name, wrapper) for owner, name, wrapper in out if name in owner.__dict__]


def _wrap(owner, name, wrapper):
    import inspect

    raw = owner.__dict__[name]
    if wrapping.is_wrapped(raw):
        return
    if inspect.iscoroutinefunction(raw):
        wrapping.wrap_async(owner, name, wrapper)
    else:
        wrapping.wrap(owner, name, _sync_adapter(wrapper))


def patch():
    from asyncpg import connection  # the marker's module (the registry's target)

    if getattr(connection, "_xray_autoinst_patched", False):
        return
    _sql.tracer_ready()
    for owner, name, wrapper in _targets():
        _wrap(owner, name, wrapper)
    connection._xray_autoinst_patched = True


def unpatch():
    from asyncpg import connection

    if not getattr(connection, "_xray_autoinst_patched", False):
        return
    for owner, name, _wrapper in _targets():
        wrapping.unwrap(owner, name)
    connection._xray_autoinst_patched = False

