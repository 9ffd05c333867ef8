"""sqlite3: one ``remote`` subsegment per ``execute``/``executemany``/``executescript`` of a
cursor or of the connection's shortcuts, named after the database file (basename) or
``:memory:``.

``sqlite3.Connection`` and ``Cursor`` are C types whose methods cannot be patched, so
``sqlite3.connect`` is wrapped to pass a traced subclass of the connection class as
``factory=`` (the documented hook; a user's own factory class is subclassed the same way), and
that connection hands a traced subclass of the cursor class to ``cursor(factory=...)``. The
objects the application gets are real sqlite3 connections and cursors: ``isinstance``,
``with conn:``, ``backup()`` (which checks the target's C type), ``iterdump()``, row factories,
``create_function`` and every attribute behave exactly as without the agent, with no proxy
in between.
"""

from __future__ import annotations

from ..core import wrapping
from ..core.wrapping import hide_frames
from . import _sql

_FACTORY_POS = 5  # connect(database, timeout, detect_types, isolation_level, check_same_thread,
#                           factory, ...)


def get_version():
    import sqlite3

    return sqlite3.sqlite_version


def _info(conn):
    try:
        return conn._xray_sql
    except AttributeError:  # a connection not made by the wrapped connect()
        info = _sql.sqlite_info(None)
        if isinstance(conn, TracedConnectionMixin):
            conn._xray_sql = info
        return info


_NAMES = ("sql", "sql_script")
_run = _sql.run  # run(lib, conn, info_of, method, args, kwargs, preparation, names): one frame


class TracedCursorMixin:
    __slots__ = ()

    def execute(self, /, *args, **kwargs):
        try:
            return _run("sqlite3", self.connection, _info, super().execute, args, kwargs,
                        "statement", _NAMES)
        except BaseException as exc:
            hide_frames(exc)
            raise

    def executemany(self, /, *args, **kwargs):
        try:
            return _run("sqlite3", self.connection, _info, super().executemany, args, kwargs,
                        "statement", _NAMES)
        except BaseException as exc:
            hide_frames(exc)
            raise

    def executescript(self, /, *args, **kwargs):
        try:
            return _run("sqlite3", self.connection, _info, super().executescript, args, kwargs,
                        "statement", _NAMES)
        except BaseException as exc:
            hide_frames(exc)
            raise


class TracedConnectionMixin:
    # the connection's description, set by the wrapped connect()
    __slots__ = ()  # the traced class has the slot _xray_sql: the connection's description

    def cursor(self, /, *args, **kwargs):
        # cursor(factory=Cursor): a factory the caller passed, even None or a wrong one, goes
        # to the driver as given (so its own TypeError) unless it is a Cursor subclass
        try:
            if args:
                if _traceable(args[0]):
                    args = (_sql.traced_subclass(args[0], TracedCursorMixin),) + args[1:]
            elif not kwargs:  # (factory is its only parameter: others are the driver's error)
                args = (_cursor_class(),)
            elif _traceable(kwargs.get("factory")):
                kwargs["factory"] = _sql.traced_subclass(kwargs["factory"], TracedCursorMixin)
        except Exception:  # noqa: BLE001
            _sql.fail_internal("sqlite3.cursor")
        try:
            return super().cursor(*args, **kwargs)
        except BaseException as exc:
            hide_frames(exc)
            raise

    def execute(self, /, *args, **kwargs):
        try:
            return _run("sqlite3", self, _info, super().execute, args, kwargs,
                        "statement", _NAMES)
        except BaseException as exc:
            hide_frames(exc)
            raise

    def executemany(self, /, *args, **kwargs):
        try:
            return _run("sqlite3", self, _info, super().executemany, args, kwargs,
                        "statement", _NAMES)
        except BaseException as exc:
            hide_frames(exc)
            raise

    def executescript(self, /, *args, **kwargs):
        try:
            return _run("sqlite3", self, _info, super().executescript, args, kwargs,
                        "statement", _NAMES)
        except BaseException as exc:
            hide_frames(exc)
            raise


def _base_cursor():
    import sqlite3

    return sqlite3.Cursor


def _traceable(factory) -> bool:
    return isinstance(factory, type) and issubclass(factory, _base_cursor())


_default_cursor = None


def _cursor_class():
    global _default_cursor
    if _default_cursor is None:
        _default_cursor = _sql.traced_subclass(_base_cursor(), TracedCursorMixin)
    return _default_cursor


def _traced_connect(wrapped, instance, args, kwargs):
    import sqlite3

    database = _sql.first_arg(args, kwargs, "database")
    factory = None
    try:
        if len(args) > _FACTORY_POS:
            factory = args[_FACTORY_POS]
        else:
            factory = kwargs.get("factory", sqlite3.Connection)
        if isinstance(factory, type) and issubclass(factory, sqlite3.Connection):
            traced = _sql.traced_subclass(factory, TracedConnectionMixin, ("_xray_sql",))
            if len(args) > _FACTORY_POS:
                args = args[:_FACTORY_POS] + (traced,) + args[_FACTORY_POS + 1:]
            else:
                kwargs["factory"] = traced
        else:
            factory = None
    except Exception:  # noqa: BLE001
        factory = None
        _sql.fail_internal("sqlite3.connect")
    conn = wrapped(*args, **kwargs)
    if factory is not None:
        try:
            if isinstance(conn, TracedConnectionMixin):
                conn._xray_sql = _sql.sqlite_info(database, bool(kwargs.get("uri")) or (
                    len(args) > 7 and bool(args[7])))
        except Exception:  # noqa: BLE001
            _sql.fail_internal("sqlite3.connect")
    return conn


def patch():
    import sqlite3
    import sqlite3.dbapi2 as dbapi2

    if getattr(sqlite3, "_xray_autoinst_patched", False):
        return
    _sql.tracer_ready()
    wrapping.wrap(dbapi2, "connect", _traced_connect)
    if sqlite3.connect is not dbapi2.connect:
        wrapping.wrap(sqlite3, "connect", _traced_connect)
    sqlite3._xray_autoinst_patched = True


def unpatch():
    import sqlite3
    import sqlite3.dbapi2 as dbapi2

    if not getattr(sqlite3, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(sqlite3, "connect")
    wrapping.unwrap(dbapi2, "connect")
    sqlite3._xray_autoinst_patched = False
