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

from . import _calls, _sql


def get_version():
    import MySQLdb

    return ".".join(str(p) for p in MySQLdb.version_info[:3])


def _info(conn):
    return _calls.remembered(conn, "_xray_sql", _describe)


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


_traced_execute, _traced_callproc = _sql.cursor_wrappers("mysqlclient", _info)


def _targets():
    # hooked on MySQLdb.connections (imported by the first connect()), which imports
    # MySQLdb.cursors first: both are complete here, whereas a hook on MySQLdb.cursors would
    # fire while MySQLdb.connections is half-initialized
    from MySQLdb import connections, cursors

    return (*_sql.cursor_targets(cursors.BaseCursor, _traced_execute, _traced_callproc),
            (connections.Connection, "__init__", _traced_init))


def patch():
    from MySQLdb import cursors

    _calls.patch_targets(cursors, _targets())


def unpatch():
    from MySQLdb import cursors

    _calls.unpatch_targets(cursors, _targets())
