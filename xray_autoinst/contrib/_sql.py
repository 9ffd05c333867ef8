"""What the SQL integrations share: connection descriptions (name, url without a password,
the sanitized query through ``_sql_sanitize``), and the per-call tracing helpers.

Per call
    ``begin(conn_info, query, preparation)`` returns a Subsegment or None (nothing to record, or
    a statement nested in one already recorded); ``close(sub, result, exc)`` closes it (the
    ``close`` of ``_calls.call``/``acall``, which call the driver exactly once, outside these
    helpers, and re-raise the driver's own exception object unchanged);
    ``close_with_error(sub, exc)`` is ``close`` after an exception.
"""

from __future__ import annotations

from ..config import clean_name
from ..core import tracer as _tracer_mod
from ..core.encoder import Fields
from ..core.entities import Subsegment, clip
from . import _calls, _guard
from ._sql_sanitize import CACHE_KEY_MAX, sanitize

STATEMENTS_MAX = 256  # finished sql fields kept per connection


def query_text(query, context=None):
    """The text of a query given as str, bytes or a driver's composable object (psycopg
    ``sql.SQL``/``Composed``, rendered with ``context``, a connection). None if unknown."""
    if type(query) is str:
        return query
    if isinstance(query, (bytes, bytearray, memoryview)):
        return bytes(query).decode("utf-8", "replace")
    if isinstance(query, str):
        return str(query)
    as_string = getattr(query, "as_string", None)
    if as_string is not None and context is not None:
        text = as_string(context)
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return text if isinstance(text, str) else None
    return None


# -- connection descriptions ----------------------------------------------------------------
class ConnInfo:
    """What every subsegment of one connection shares (computed once per connection)."""

    __slots__ = ("name", "base", "backslash_escapes", "statements", "config", "mysql")

    def __init__(self, name, base, backslash_escapes=False, mysql=False):
        self.name = clean_name(name or "database")[0]
        self.base = {k: v for k, v in base.items() if v is not None and v != ""}
        for key in ("url", "user"):
            if key in self.base:
                self.base[key] = clip(self.base[key])
        self.backslash_escapes = backslash_escapes
        self.mysql = mysql
        # query text -> the finished ``sql`` dict, shared (read-only) by the subsegments of
        # that statement on this connection; valid for one configuration
        self.statements = {}
        self.config = None

    def sql(self, query, preparation, context=None):
        """The ``sql`` field of a subsegment running ``query``."""
        cfg = tracer.config
        if cfg is not self.config:
            self.statements = {}
            self.config = cfg
        key = query if type(query) is str and preparation == "statement" else None
        if key is not None:
            sql = self.statements.get(key)
            if sql is not None:
                return sql
        sql = Fields(self.base)
        sql["preparation"] = preparation
        if cfg.sql_queries != "off":
            text = query if type(query) is str else query_text(query, context)
            if text is not None:
                sql["sanitized_query"] = sanitize(text, self.backslash_escapes, self.mysql)
        if key is not None and len(key) <= CACHE_KEY_MAX:
            if len(self.statements) >= STATEMENTS_MAX:
                self.statements.clear()
            self.statements[key] = sql
        return sql


def _quote(text, safe=""):
    from urllib.parse import quote

    return quote(str(text), safe=safe)


def pg_url(user, host, port, dbname) -> str:
    """``postgresql://user@host:port/dbname``, from parsed connection info: never a password.
    A Unix-socket directory goes into a ``host`` query parameter."""
    netloc = ""
    query = ""
    if user:
        netloc = _quote(user) + "@"
    if host and not str(host).startswith("/"):
        h = str(host)
        netloc += "[%s]" % h if ":" in h else _quote(h, safe=".-_~")
        if port:
            netloc += ":%s" % port
    elif host:
        query = "?host=" + _quote(host, safe="/")
        if port and str(port) != "5432":
            query += "&port=%s" % port
    return "postgresql://%s/%s%s" % (netloc, _quote(dbname or ""), query)


_infos: dict = {}  # description -> ConnInfo: shared by the connections to one database


def _shared(key, make):
    info = _infos.get(key)
    if info is None:
        if len(_infos) >= 256:
            _infos.clear()
        info = _infos[key] = make()
    return info


def pg_info(dbname, user, host, port, server_version, standard_strings, driver) -> ConnInfo:
    key = ("pg", dbname, user, host, port, server_version, standard_strings, driver)
    return _shared(key, lambda: _pg_info(*key[1:]))


def libpq_info(i, server_version, driver) -> ConnInfo:
    """psycopg and psycopg2: the description read from the connection's libpq ``info``;
    ``server_version`` (the number) stands in when the server did not report its version."""
    return pg_info(
        i.dbname,
        i.user,
        i.host,
        i.port,
        i.parameter_status("server_version") or str(server_version),
        i.parameter_status("standard_conforming_strings"),
        driver,
    )


def _pg_info(dbname, user, host, port, server_version, standard_strings, driver) -> ConnInfo:
    return ConnInfo(
        "%s@%s" % (dbname or "postgres", host or "localhost"),
        {
            "url": pg_url(user, host, port, dbname),
            "database_type": "PostgreSQL",
            "database_version": server_version,
            "driver_version": driver,
            "user": user,
        },
        backslash_escapes=str(standard_strings).lower() == "off",
    )


def mysql_info(database, user, host, port, unix_socket, server_version, backslash_escapes,
               driver) -> ConnInfo:
    """MySQL / MariaDB (PyMySQL, mysqlclient): ``database_type`` from the server's version
    (``MariaDB`` when it says so), ``mysql://user@host:port/db`` (a Unix socket goes into a
    ``unix_socket`` query parameter), named ``db@host``."""
    key = ("mysql", database, user, host, port, unix_socket, server_version,
           bool(backslash_escapes), driver)
    return _shared(key, lambda: _mysql_info(*key[1:]))


def _mysql_info(database, user, host, port, unix_socket, server_version, backslash_escapes,
                driver) -> ConnInfo:
    version = _text(server_version)
    mariadb = "mariadb" in version.lower()
    if mariadb and version.startswith("5.5.5-"):  # the prefix MariaDB sends old clients
        version = version[6:]
    database = _text(database)
    user = _text(user)
    host = _text(host) or "localhost"
    netloc = _quote(user) + "@" if user else ""
    query = ""
    if unix_socket:
        netloc += "localhost"
        query = "?unix_socket=" + _quote(_text(unix_socket), safe="/")
    else:
        netloc += "[%s]" % host if ":" in host else _quote(host, safe=".-_~")
        if port:
            netloc += ":%s" % port
    return ConnInfo(
        "%s@%s" % (database or "mysql", "localhost" if unix_socket else host),
        {
            "url": "mysql://%s/%s%s" % (netloc, _quote(database), query),
            "database_type": "MariaDB" if mariadb else "MySQL",
            "database_version": version,
            "driver_version": driver,
            "user": user,
        },
        backslash_escapes=backslash_escapes,
        mysql=True,
    )


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def sqlite_info(database, uri=False) -> ConnInfo:
    """Name and url of a sqlite3 database given to ``connect`` (path, bytes, PathLike or a
    ``file:`` URI): the file's basename, or ``:memory:``."""
    if type(database) is str and (database == ":memory:" or database.startswith("/")):
        return _shared(("sqlite", database, bool(uri)), lambda: _sqlite_info(database, uri))
    return _sqlite_info(database, uri)  # relative to the current directory: not cached


def _sqlite_info(database, uri=False) -> ConnInfo:
    import os
    import sqlite3

    base = {
        "database_type": "sqlite",
        "database_version": sqlite3.sqlite_version,
        "driver_version": "sqlite3 (Python %s)" % _python_version(),
    }
    if database is None:  # unknown: a connection not opened through connect()
        return ConnInfo("sqlite", base)
    try:
        path = os.fsdecode(database)
    except TypeError:
        path = str(database)
    if uri and path.startswith("file:"):
        path = path[5:].split("?", 1)[0].split("#", 1)[0]
        if path.startswith("//"):  # file://host/path
            path = "/" + path[2:].split("/", 1)[-1]
        from urllib.parse import unquote

        path = unquote(path)
        if not path or path == ":memory:":
            path = ":memory:"
    if path in ("", ":memory:"):
        name = ":memory:"
        url = "sqlite://:memory:" if path else "sqlite://"
    else:
        name = os.path.basename(path.rstrip("/")) or path
        url = "sqlite:///" + os.path.abspath(path).lstrip("/")
    base["url"] = url
    return ConnInfo(name, base)


def _python_version():
    import sys

    return "%d.%d.%d" % sys.version_info[:3]


# -- per call --------------------------------------------------------------------------------
tracer = _tracer_mod.tracer
_get = _tracer_mod.current_entity.get
_set = _tracer_mod.current_entity.set


def tracer_ready():
    """Configure the tracer (from the environment) if nothing did yet: patchers call this."""
    _tracer_mod.get_tracer()


# an instrumentation failure: logged at most once a minute (re-raised in the tests)
fail_internal = _guard.reporter(
    "sql", "xray-autoinst SQL instrumentation failed (%s); the query is unaffected")


def recording() -> bool:
    """Quick check before any work: would a subsegment be recorded here?"""
    parent = _get()
    if parent is None:
        return tracer.context_missing != "ignore"
    if not parent.sampled:
        return False
    # a statement run by another traced statement (executescript through a cursor, ...)
    return not (parent.sql is not None and type(parent) is Subsegment)


def begin(info: ConnInfo, query, preparation: str, context=None):
    """Open the subsegment of one statement. Never raises (unless the test switch is set)."""
    sub = _calls.attempt(fail_internal, "begin", tracer.begin_subsegment, info.name, "remote")
    if sub is None:
        return None
    try:
        sub.sql = info.sql(query, preparation, context)
    except Exception:  # noqa: BLE001
        if sub.sql is None:
            sub.sql = {"preparation": preparation}
        fail_internal("query")
    return sub


def close(sub, _result=None, exc=None) -> None:
    """Close the subsegment; on the driver's exception record it first (fault + cause)."""
    _calls.end_remote(sub, exc, fail_internal)


def close_with_error(sub, exc) -> None:
    """Record the driver's exception ``exc`` (fault + cause) and close the subsegment."""
    close(sub, None, exc)


def _open(lib, conn, info_of, args, kwargs, names, preparation, context, ping=None):
    try:
        query = args[0] if args else first_arg(args, kwargs, *names)
        if ping is not None and query == ping:
            return None
        return begin(info_of(conn), query, preparation, context)
    except Exception:  # noqa: BLE001
        fail_internal(lib)
        return None


def run(lib, conn, info_of, method, args, kwargs, preparation, names, context=None,
        ping=None):
    """Trace one statement run by ``method`` (a bound method of the real driver object): the
    wrapped call happens exactly once, outside the instrumentation's own ``try``. ``ping``: a
    query text that is not recorded (psycopg_pool's empty ``check_connection`` statement).

    Under a sampled parent (the common case) this is ``recording`` + ``begin`` +
    ``_calls.call`` + ``close`` written out in one frame, the subsegment ended by
    ``end_subsegment`` directly on success (an exception goes to ``close``, as through
    ``_calls.call``): the calling thread's cost of a statement is mostly Python frames."""
    parent = _get()
    if parent is None:  # outside any request: XRAY_CONTEXT_MISSING decides
        if not recording():
            return method(*args, **kwargs)
        sub = _open(lib, conn, info_of, args, kwargs, names, preparation, context, ping)
        return _calls.call(sub, close, method, args, kwargs)
    if not parent.sampled or (parent.sql is not None and type(parent) is Subsegment):
        return method(*args, **kwargs)  # unsampled, or nested in a statement recorded
    sub = None
    try:
        query = args[0] if args else first_arg(args, kwargs, *names)
        if ping is None or query != ping:
            info = info_of(conn)
            sub = Subsegment(info.name, parent, "remote")
    except Exception:  # noqa: BLE001
        fail_internal(lib)
    if sub is None:
        return method(*args, **kwargs)
    try:
        sub.sql = info.sql(query, preparation, context)
    except Exception:  # noqa: BLE001
        sub.sql = {"preparation": preparation}
        fail_internal("query")
    _set(sub)
    try:
        result = method(*args, **kwargs)
    except BaseException as exc:
        close(sub, None, exc)
        raise
    try:
        tracer.end_subsegment(sub)
    except Exception:  # noqa: BLE001
        fail_internal("end")
    return result


def cursor_wrappers(lib, info_of):
    """The wrappers of a DB-API cursor whose connection is ``cursor.connection`` (PyMySQL,
    mysqlclient): one for ``execute``/``executemany``, one for ``callproc``."""

    def traced_execute(wrapped, instance, args, kwargs):
        if not recording():  # the common case outside requests: nothing else to do
            return wrapped(*args, **kwargs)
        return run(lib, instance.connection, info_of, wrapped, args, kwargs, "statement",
                   ("query",))

    def traced_callproc(wrapped, instance, args, kwargs):
        if not recording():
            return wrapped(*args, **kwargs)
        return run(lib, instance.connection, info_of, wrapped, args, kwargs, "call",
                   ("procname",))

    return traced_execute, traced_callproc


def cursor_targets(cursor_class, traced_execute, traced_callproc):
    return (
        (cursor_class, "execute", traced_execute),
        (cursor_class, "executemany", traced_execute),
        (cursor_class, "callproc", traced_callproc),
    )


def first_arg(args, kwargs, *names):
    if args:
        return args[0]
    for name in names:
        if name in kwargs:
            return kwargs[name]
    return None


# -- dynamic traced subclasses ---------------------------------------------------------------
_subclasses: dict = {}


def traced_subclass(base, mixin, slots=()):
    """A subclass of ``base`` with ``mixin``'s traced methods first, looking like ``base``
    (same name, qualname and module), created once per (base, mixin). ``base`` itself when it
    is already traced. ``mixin`` has empty ``__slots__``; ``slots`` go on the new class."""
    if issubclass(base, mixin):
        return base
    key = (base, mixin)
    cls = _subclasses.get(key)
    if cls is None:
        cls = type(base.__name__, (mixin, base), {"__slots__": slots})
        cls.__qualname__ = base.__qualname__
        cls.__module__ = base.__module__
        cls.__doc__ = base.__doc__
        cls._xray_autoinst_traced = True
        _subclasses[key] = cls
    return cls
