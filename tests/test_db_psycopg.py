"""psycopg 3 in-process against the real PostgreSQL on 127.0.0.1:5432: one subsegment per
statement (Connection.execute included), the fields, no password, the driver's exceptions
unchanged, async, pools, and the same results with and without the agent."""

import asyncio
import datetime

import pytest
from sqltrace import (
    PASSWORD,
    PG_DSN,
    assert_no_secret,
    request_segment,
    require_postgres,
    sql_subsegments,
)
from xray_testing import need

psycopg = need("psycopg")
from psycopg import adapt, rows, sql  # noqa: E402

from xray_autoinst.contrib import db_psycopg  # noqa: E402


@pytest.fixture(autouse=True)
def _postgres():
    require_postgres()


@pytest.fixture
def traced(tracer):
    db_psycopg.patch()
    yield tracer
    db_psycopg.unpatch()


def test_patch_and_unpatch_methods():
    import inspect

    original = psycopg.Cursor.execute
    original_async = psycopg.AsyncCursor.execute
    db_psycopg.patch()
    try:
        assert psycopg.Cursor.execute is not original
        assert psycopg.AsyncCursor.execute is not original_async
        assert inspect.iscoroutinefunction(psycopg.AsyncCursor.execute)
        assert inspect.iscoroutinefunction(psycopg.AsyncServerCursor.execute)
    finally:
        db_psycopg.unpatch()
    assert psycopg.Cursor.execute is original
    assert psycopg.AsyncCursor.execute is original_async


def test_fields_of_each_statement(traced):
    t, emitter = traced
    with request_segment(t) as seg:
        with psycopg.connect(PG_DSN) as conn:
            assert conn.execute("SELECT %s::text, 'lit-secret', 42",
                                ("param-secret",)).fetchone() == ("param-secret",
                                                                   "lit-secret", 42)
            with conn.cursor() as cur:
                cur.executemany("SELECT %s", [(1,), (2,)])
                cur.execute(sql.SQL("SELECT {} FROM (SELECT 1 AS a) t WHERE a = {}").format(
                    sql.Identifier("a"), sql.Literal(1)))
    subs = sql_subsegments(emitter)
    assert [s["sql"]["sanitized_query"] for s in subs] == [
        "SELECT %s::text, ?, ?",
        "SELECT %s",
        'SELECT "a" FROM (SELECT ? AS a) t WHERE a = ?',
    ]
    for s in subs:
        assert s["name"] == "test@127.0.0.1"
        assert s["namespace"] == "remote"
        assert s["sql"]["url"] == "postgresql://postgres@127.0.0.1:5432/test"
        assert s["sql"]["user"] == "postgres"
        assert s["sql"]["database_type"] == "PostgreSQL"
        assert s["sql"]["preparation"] == "statement"
        assert s["sql"]["driver_version"].startswith("psycopg " + psycopg.__version__)
        assert s["sql"]["database_version"][:2].isdigit()
    [doc] = emitter.documents
    assert doc["id"] == seg.id
    assert_no_secret(emitter, PASSWORD, "param-secret", "lit-secret")


def test_failing_statement(traced):
    t, emitter = traced
    with request_segment(t):
        with psycopg.connect(PG_DSN) as conn:
            with pytest.raises(psycopg.errors.UndefinedTable) as info:
                conn.execute("SELECT * FROM no_such_table_xyz")
    exc = info.value
    assert type(exc) is psycopg.errors.UndefinedTable
    assert exc.sqlstate == "42P01"
    [sub] = sql_subsegments(emitter)
    assert sub["fault"] is True
    [ex] = sub["cause"]["exceptions"]
    assert ex["type"] == "UndefinedTable"
    assert ex["message"] == str(exc)[:1000]
    assert ex["remote"] is True


def test_failing_statement_is_the_same_object(traced):
    """The wrapper re-raises the very object the driver's method raised."""
    t, emitter = traced
    boom = psycopg.OperationalError("server on fire")

    def driver_execute(query, params=None, **kw):
        raise boom

    with request_segment(t):
        with psycopg.connect(PG_DSN) as conn:
            cur = conn.cursor()
            with pytest.raises(psycopg.OperationalError) as info:
                db_psycopg._traced_execute(driver_execute, cur, ("SELECT 1",), {})
    assert info.value is boom
    [sub] = sql_subsegments(emitter)
    assert sub["cause"]["exceptions"][0]["message"] == "server on fire"


def test_server_side_copy_pipeline_pool(traced):
    t, emitter = traced
    psycopg_pool = need("psycopg_pool")
    with request_segment(t):
        with psycopg.connect(PG_DSN) as conn:
            with conn.cursor(name="ss") as cur:
                cur.execute("SELECT generate_series(1, 5)")
                assert [r[0] for r in cur] == [1, 2, 3, 4, 5]
            with conn.cursor() as cur:
                with cur.copy("COPY (SELECT 1) TO STDOUT") as copy:
                    assert b"".join(bytes(b) for b in copy) == b"1\n"
            with conn.pipeline():
                conn.execute("SELECT 1")
                conn.execute("SELECT 2")
        with psycopg_pool.ConnectionPool(PG_DSN, min_size=1, max_size=2, open=True) as p:
            with p.connection() as conn:
                conn.execute("SELECT 3")
    names = [s["sql"]["sanitized_query"] for s in sql_subsegments(emitter)]
    assert names == ["SELECT generate_series(?, ?)", "SELECT ?", "SELECT ?", "SELECT ?"]


def test_async_connection(traced):
    t, emitter = traced

    async def main():
        with request_segment(t):
            async with await psycopg.AsyncConnection.connect(PG_DSN) as conn:
                cur = await conn.execute("SELECT 1")
                assert await cur.fetchone() == (1,)
                async with conn.cursor() as cur:
                    await cur.executemany("SELECT %s", [(1,), (2,)])
                async with conn.cursor(name="ass") as cur:
                    await cur.execute("SELECT 2")
                    assert await cur.fetchall() == [(2,)]
                with pytest.raises(psycopg.errors.UndefinedTable):
                    await conn.execute("SELECT * FROM nope_xyz")

    asyncio.run(main())
    subs = sql_subsegments(emitter)
    assert len(subs) == 4
    assert subs[-1]["fault"] is True


def test_nothing_recorded_outside_a_request(traced):
    _t, emitter = traced
    with psycopg.connect(PG_DSN) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert emitter.documents == []


# -- the same results with and without the agent ---------------------------------------------
class UpperTextLoader(adapt.Loader):
    def load(self, data):
        return bytes(data).decode().upper()


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


class PointDumper(adapt.Dumper):
    oid = 600  # point

    def dump(self, obj):
        return b"(%s,%s)" % (str(obj.x).encode(), str(obj.y).encode())


def workload():
    out = []
    conn = psycopg.connect(PG_DSN)
    out.append(("types", type(conn).__name__, isinstance(conn, psycopg.Connection),
                conn.info.dbname, conn.info.user))
    conn.execute("CREATE TEMP TABLE items (id serial PRIMARY KEY, name text, doc jsonb, "
                 "at timestamptz, p point)")
    cur = conn.execute("INSERT INTO items (name, doc, at) VALUES (%s, %s, %s) RETURNING id",
                       ("a", psycopg.types.json.Jsonb({"k": 1}),
                        datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc)))
    out.append(("returning", cur.fetchone(), cur.rowcount, cur.statusmessage))
    with conn.cursor() as c:
        c.executemany("INSERT INTO items (name) VALUES (%(n)s) RETURNING id",
                      [{"n": "b"}, {"n": "c"}], returning=True)
        ids = []
        while True:
            ids.append(c.fetchone())
            if not c.nextset():
                break
        out.append(("executemany returning", ids))
    for factory in (rows.dict_row, rows.namedtuple_row, rows.class_row(dict), rows.tuple_row):
        with conn.cursor(row_factory=factory) as c:
            c.execute("SELECT id, name FROM items WHERE id <= %s ORDER BY id", (2,))
            out.append(("row_factory", [tuple(r.items()) if isinstance(r, dict) else tuple(r)
                                        for r in c.fetchall()]))
    conn.row_factory = rows.dict_row
    out.append(("conn row_factory", conn.execute("SELECT 1 AS one").fetchone()))
    conn.row_factory = rows.tuple_row
    conn.adapters.register_loader("text", UpperTextLoader)
    conn.adapters.register_dumper(Point, PointDumper)
    conn.execute("UPDATE items SET p = %s WHERE id = 1", (Point(1, 2),))
    out.append(("adapters", conn.execute("SELECT name, p::text FROM items WHERE id = 1")
                .fetchone()))
    with psycopg.ClientCursor(conn) as c:
        c.execute("SELECT %s, %s", (1, "x'y"))
        out.append(("client cursor", c.fetchone(), c.mogrify("SELECT %s", ("z",))))
    with psycopg.RawCursor(conn) as c:
        c.execute("SELECT $1::int + $2::int", (1, 2))
        out.append(("raw cursor", c.fetchone()))
    with conn.cursor(name="server") as c:
        c.itersize = 2
        c.execute("SELECT id FROM items ORDER BY id")
        out.append(("server cursor", [r[0] for r in c], type(c).__name__))
    with conn.cursor(name="scroll", scrollable=True) as c:
        c.execute("SELECT generate_series(1, 10)")
        c.scroll(5)
        out.append(("scroll", c.fetchone()))
    with conn.cursor() as c:
        with c.copy("COPY items (id, name) FROM STDIN") as copy:
            copy.write_row((100, "copied"))
        with c.copy("COPY (SELECT id, name FROM items ORDER BY id) TO STDOUT") as copy:
            out.append(("copy", [tuple(r) for r in copy.rows()]))
        out.append(("stream", [r for r in c.stream("SELECT generate_series(1, 3)")]))
    q = sql.SQL("SELECT {} FROM {} WHERE id = {}").format(
        sql.Identifier("name"), sql.Identifier("items"), sql.Placeholder())
    out.append(("composed", q.as_string(conn), conn.execute(q, (2,)).fetchone()))
    for _ in range(6):  # past the prepare threshold
        conn.execute("SELECT %s::int * 2", (21,))
    out.append(("prepared", conn.execute("SELECT %s::int * 2", (21,), prepare=True).fetchone()))
    with conn.pipeline():
        a = conn.execute("SELECT 1")
        b = conn.execute("SELECT 2")
    out.append(("pipeline", a.fetchone(), b.fetchone()))
    conn.commit()
    for bad, args in (("SELECT * FROM nope", None), ("SELEC 1", None), ("SELECT %s", ())):
        try:
            conn.execute(bad, args)
        except psycopg.Error as exc:
            out.append(("error", type(exc).__name__, getattr(exc, "sqlstate", None),
                        str(exc).split("\n")[0]))
            conn.rollback()
    with conn.transaction():
        conn.execute("INSERT INTO items (name) VALUES ('tx')")
    try:
        with conn.transaction():
            conn.execute("INSERT INTO items (name) VALUES ('rolled back')")
            raise ValueError
    except ValueError:
        pass
    out.append(("count", conn.execute("SELECT count(*) FROM items").fetchone()))
    out.append(("status", conn.closed, conn.info.transaction_status.name, conn.broken))
    conn.close()
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        out.append(("closed", str(exc)))
    with psycopg.connect(PG_DSN, autocommit=True, row_factory=rows.dict_row) as c2:
        out.append(("connect kwargs", c2.execute("SELECT 5 AS five").fetchone(), c2.autocommit))
    return out


def test_same_results_with_and_without_the_agent(tracer):
    t, emitter = tracer
    bare = workload()
    db_psycopg.patch()
    try:
        with request_segment(t):
            traced = workload()
    finally:
        db_psycopg.unpatch()
    assert traced == bare
    assert len(sql_subsegments(emitter)) > 20
    assert_no_secret(emitter, PASSWORD)


def test_pool_ping_not_recorded_outside_a_request_either(tracer):
    """psycopg_pool's empty check_connection statement is no subsegment, also where calls
    outside any request are recorded (XRAY_CONTEXT_MISSING=call)."""
    from xray_testing import install_tracer

    _t, emitter = install_tracer({"XRAY_CONTEXT_MISSING": "call"})
    db_psycopg.patch()
    try:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute("")
            conn.execute("SELECT 1")
    finally:
        db_psycopg.unpatch()
    [doc] = emitter.documents
    assert [s["sql"]["sanitized_query"] for s in doc["subsegments"]] == ["SELECT ?"]
