"""psycopg2: one ``remote`` subsegment per ``execute``/``executemany``/``callproc``, named
``database@host``.

psycopg2's connection and cursor are C types, so ``psycopg2.connect`` is wrapped to pass a
traced subclass of the connection class as ``connection_factory=`` (psycopg2's documented hook;
``extras.LoggingConnection`` or a user's class is subclassed the same way), and that connection
makes traced subclasses of the cursor classes (``cursor_factory=`` given to ``cursor()`` or set
on the connection, ``extras.RealDictCursor``, named server-side cursors...). The application
holds real psycopg2 objects: the C functions that check the type of a connection or cursor
(``register_type``, ``register_default_jsonb``, ``quote_ident``, ``sql.SQL.as_string``,
``extras.execute_values``...) accept them as they are, and no proxy sits in between.
"""

from __future__ import annotations

from ..core import wrapping
from ..core.wrapping import hide_frames
from . import _calls, _sql


def get_version():
    import psycopg2

    return psycopg2.__version__.split()[0]


def _info(conn):
    return _calls.remembered(conn, "_xray_sql", _describe)


def _describe(conn):
    import psycopg2

    return _sql.libpq_info(conn.info, conn.server_version,
                           "psycopg2 " + psycopg2.__version__.split()[0])


def _run(cursor, method, args, kwargs, preparation, names=("query",)):
    conn = cursor.connection
    return _sql.run("psycopg2", conn, _info, method, args, kwargs, preparation, names, conn)


class TracedCursorMixin:
    __slots__ = ()

    def execute(self, /, *args, **kwargs):
        try:
            return _run(self, super().execute, args, kwargs, "statement")
        except BaseException as exc:
            hide_frames(exc)
            raise

    def executemany(self, /, *args, **kwargs):
        try:
            return _run(self, super().executemany, args, kwargs, "statement")
        except BaseException as exc:
            hide_frames(exc)
            raise

    def callproc(self, /, *args, **kwargs):
        try:
            return _run(self, super().callproc, args, kwargs, "call", ("procname",))
        except BaseException as exc:
            hide_frames(exc)
            raise


def _traced_cursor_class(factory):
    from psycopg2 import extensions

    if isinstance(factory, type) and issubclass(factory, extensions.cursor):
        return _sql.traced_subclass(factory, TracedCursorMixin)
    return factory


_overrides: dict = {}


def _overrides_cursor(cls) -> bool:
    """Does the application's connection class (below our mixin) define ``cursor`` itself?"""
    found = _overrides.get(cls)
    if found is None:
        from psycopg2 import extensions

        base = cls.__mro__[cls.__mro__.index(TracedConnectionMixin) + 1]
        found = _overrides[cls] = getattr(base, "cursor", None) is not extensions.connection.cursor
    return found


def _trace_cursor(cur):
    """Make a cursor built by the application's own ``cursor()`` traced, when its class is a
    Python subclass (same layout: ``__class__`` can be set)."""
    cls = type(cur)
    if isinstance(cur, TracedCursorMixin) or not cls.__flags__ & (1 << 9):  # Py_TPFLAGS_HEAPTYPE
        return cur
    cur.__class__ = _traced_cursor_class(cls)
    return cur


class TracedConnectionMixin:
    __slots__ = ()  # the traced class has the slot _xray_sql: the connection's description

    def cursor(self, /, *args, **kwargs):
        # cursor(name=None, cursor_factory=None, withhold=False, scrollable=None)
        if _overrides_cursor(type(self)):
            cur = super().cursor(*args, **kwargs)
            try:
                _trace_cursor(cur)
            except Exception:  # noqa: BLE001
                _sql.fail_internal("psycopg2.cursor")
            return cur
        try:
            # None (or nothing) means the connection's cursor_factory, else the cursor class,
            # as in psycopg2; a wrong factory goes to the driver as given (its own error)
            if len(args) > 1:
                factory = args[1] or self.cursor_factory
                args = (args[0], _traced_cursor_class(factory or _base_cursor())) + args[2:]
            else:
                factory = kwargs.get("cursor_factory") or self.cursor_factory
                kwargs["cursor_factory"] = _traced_cursor_class(factory or _base_cursor())
        except Exception:  # noqa: BLE001
            _sql.fail_internal("psycopg2.cursor")
        try:
            return super().cursor(*args, **kwargs)
        except BaseException as exc:
            hide_frames(exc)
            raise


def _base_cursor():
    from psycopg2 import extensions

    return extensions.cursor


def _traced_connect(wrapped, instance, args, kwargs):
    # connect(dsn=None, connection_factory=None, cursor_factory=None, **kwargs)
    try:
        from psycopg2 import extensions

        if len(args) > 1:
            factory = args[1] or extensions.connection
        else:
            factory = kwargs.get("connection_factory") or extensions.connection
        if isinstance(factory, type) and issubclass(factory, extensions.connection):
            traced = _sql.traced_subclass(factory, TracedConnectionMixin, ("_xray_sql",))
            if len(args) > 1:
                args = (args[0], traced) + tuple(args[2:])
            else:
                kwargs["connection_factory"] = traced
    except Exception:  # noqa: BLE001
        _sql.fail_internal("psycopg2.connect")
    return wrapped(*args, **kwargs)


def patch():
    import psycopg2

    if getattr(psycopg2, "_xray_autoinst_patched", False):
        return
    _sql.tracer_ready()
    wrapping.wrap(psycopg2, "connect", _traced_connect)
    psycopg2._xray_autoinst_patched = True


def unpatch():
    import psycopg2

    if not getattr(psycopg2, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(psycopg2, "connect")
    psycopg2._xray_autoinst_patched = False
