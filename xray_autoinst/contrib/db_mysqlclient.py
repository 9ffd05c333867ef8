"""mysqlclient (``MySQLdb``): one ``remote`` subsegment per ``execute``/``executemany``/
``callproc``, named ``database@host``, with the MySQL/MariaDB ``sql`` fields (see
contrib/_sql.py).

The connection is a C type, but ``MySQLdb.cursors.BaseCursor`` is a Python class: its three
methods are wrapped in place, so every cursor class (``Cursor``, ``DictCursor``,
``SSCursor``...) and the application's own subclasses are traced and the application holds
mysqlclient's own objects. ``executemany`` and ``callproc`` run their statements through the
cursor itself: those are part of the outer call, so each call is one subsegment. Host, user,
database and port come from the attributes mysqlclient 2.2+ keeps on the connection, and
before 2.2 from what ``connect()`` was given (``Connection.__init__`` is wrapped to keep host,
user, database, port and socket: never the password). Strings are read with backslash
escapes (MySQL's default; the driver does not expose a session's ``NO_BACKSLASH_ESCAPES``).
"""

from __future__ import annotations

from ..core import wrapping
from . import _sql

_recording = _sql.recording


def get_version():
    import MySQLdb

    return ".".join(str(p) for p in MySQLdb.version_info[:3])


def _info(conn):
    try:
        info = conn._xray_sql
    except AttributeError:
        info = None
    if info is None:
        info = _describe(conn)
        try:
            conn._xray_sql = info
        except AttributeError:
            pass
    return info


_POSITIONAL = ("host", "user", "passwd", "db", "port", "unix_socket")


def _params(args, kwargs):
    """host, user, database, port and socket given to ``connect`` (mysqlclient < 2.2 keeps
    none of them on the connection); never the password."""
    given = dict(zip(_POSITIONAL, args, strict=False))
    given.update(kwargs)
    return {
        "host": given.get("host"),
        "user": given.get("user"),
        "database": given.get("database", given.get("db")),
        "port": given.get("port", 3306),
        "unix_socket": given.get("unix_socket"),
    }


def _traced_init(wrapped, instance, args, kwargs):
    wrapped(*args, **kwargs)
    try:
        instance._xray_params = _params(args, kwargs)
    except Exception:  # noqa: BLE001
        _sql.fail_internal("mysqlclient.connect")


def _describe(conn):
    # mysqlclient 2.2+ keeps host, user, database and port on the connection; before, what
    # connect() was given (saved by _traced_init)
    p = getattr(conn, "_xray_params", None) or {}
    host = getattr(conn, "host", None) or p.get("host")
    unix_socket = p.get("unix_socket")
    if host is None:  # "127.0.0.1 via TCP/IP", "Localhost via UNIX socket"
        try:
            host_info = conn.get_host_info()
        except Exception:  # noqa: BLE001
            host_info = ""
        if "UNIX socket" in host_info and not unix_socket:
            unix_socket = "socket"
        host = host_info.split(" via ", 1)[0] or None
    try:
        server = conn.get_server_info()
    except Exception:  # noqa: BLE001
        server = None
    return _sql.mysql_info(
        getattr(conn, "database", None) or p.get("database"),
        getattr(conn, "user", None) or p.get("user"),
        host,
        (getattr(conn, "port", None) or p.get("port")) if unix_socket is None else None,
        unix_socket,
        server,
        True,
        "mysqlclient " + get_version(),
    )


def _traced_execute(wrapped, instance, args, kwargs):
    if not _recording():  # the common case outside requests: nothing else to do
        return wrapped(*args, **kwargs)
    return _sql.run("mysqlclient", instance.connection, _info, wrapped, args, kwargs, "statement",
                    ("query",))


def _traced_callproc(wrapped, instance, args, kwargs):
    if not _recording():  # the common case outside requests: nothing else to do
        return wrapped(*args, **kwargs)
    return _sql.run("mysqlclient", instance.connection, _info, wrapped, args, kwargs, "call",
                    ("procname",))


def _targets():
    from MySQLdb import cursors

    return (
        (cursors.BaseCursor, "execute", _traced_execute),
        (cursors.BaseCursor, "executemany", _traced_execute),
        (cursors.BaseCursor, "callproc", _traced_callproc),
    )


def patch():
    # hooked on MySQLdb.connections (imported by the first connect()), which imports
    # MySQLdb.cursors first: both are complete here, whereas a hook on MySQLdb.cursors would
    # fire while MySQLdb.connections is half-initialized
    from MySQLdb import connections, cursors

    if getattr(cursors, "_xray_autoinst_patched", False):
        return
    _sql.tracer_ready()
    for owner, name, wrapper in _targets():
        wrapping.wrap(owner, name, wrapper)
    wrapping.wrap(connections.Connection, "__init__", _traced_init)
    cursors._xray_autoinst_patched = True


def unpatch():
    from MySQLdb import connections, cursors

    if not getattr(cursors, "_xray_autoinst_patched", False):
        return
    for owner, name, _wrapper in _targets():
        wrapping.unwrap(owner, name)
    wrapping.unwrap(connections.Connection, "__init__")
    cursors._xray_autoinst_patched = False
