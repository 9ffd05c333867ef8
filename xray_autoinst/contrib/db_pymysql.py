"""PyMySQL: one ``remote`` subsegment per ``execute``/``executemany``/``callproc``, named
``database@host``, with the MySQL/MariaDB ``sql`` fields (see contrib/_sql.py).

PyMySQL's cursors are Python classes: ``Cursor``'s three methods are wrapped in place, so
``DictCursor``, ``SSCursor``, ``SSDictCursor`` and the application's own subclasses are traced
through them and the application holds PyMySQL's own objects. ``executemany`` and
``callproc`` call ``execute`` themselves: those inner statements are part of the outer one
(``_sql.recording`` leaves them out), so each call is one subsegment. The dialect follows the
connection: backslash escapes in strings unless the server reports ``NO_BACKSLASH_ESCAPES``.
"""

from __future__ import annotations

from . import _calls, _sql

_NO_BACKSLASH_ESCAPES = 512  # SERVER_STATUS_NO_BACKSLASH_ESCAPES


def get_version():
    import pymysql

    return pymysql.__version__


def _info(conn):
    escapes = not (getattr(conn, "server_status", 0) or 0) & _NO_BACKSLASH_ESCAPES
    try:
        cached = conn._xray_sql
    except AttributeError:
        cached = None
    if cached is not None and cached[0] == escapes:
        return cached[1]
    info = _describe(conn, escapes)
    try:
        conn._xray_sql = (escapes, info)
    except AttributeError:
        pass
    return info


def _describe(conn, escapes):
    import pymysql

    return _sql.mysql_info(
        getattr(conn, "db", None),
        getattr(conn, "user", None),
        getattr(conn, "host", None),
        getattr(conn, "port", None),
        getattr(conn, "unix_socket", None),
        getattr(conn, "server_version", None),
        escapes,
        "PyMySQL " + pymysql.__version__,
    )


_traced_execute, _traced_callproc = _sql.cursor_wrappers("pymysql", _info)


def _targets():
    from pymysql import cursors

    return _sql.cursor_targets(cursors.Cursor, _traced_execute, _traced_callproc)


def patch():
    from pymysql import cursors

    _calls.patch_targets(cursors, _targets())


def unpatch():
    from pymysql import cursors

    _calls.unpatch_targets(cursors, _targets())
