"""psycopg2 in-process against the real PostgreSQL on 127.0.0.1:5432: one subsegment per
statement, the fields, no password, the driver's exceptions unchanged, and the same results
with and without the agent across extras, adapters, factories, server-side cursors and COPY."""

import io
import uuid

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

psycopg2 = need("psycopg2")
from psycopg2 import extensions, extras, pool, sql  # noqa: E402

from xray_autoinst.contrib import db_psycopg2  # noqa: E402


@pytest.fixture(autouse=True)
def _postgres():
    require_postgres()


@pytest.fixture
def traced(tracer):
    db_psycopg2.patch()
    yield tracer
    db_psycopg2.unpatch()


def test_fields_of_each_statement(traced):
    t, emitter = traced
    with request_segment(t) as seg:
        conn = psycopg2.connect(PG_DSN)
        with conn.cursor() as cur:
            cur.execute("SELECT %s::text AS a, 'literal-secret' AS b, 42", ("param-secret",))
            assert cur.fetchone() == ("param-secret", "literal-secret", 42)
            cur.executemany("SELECT %s", [(1,), (2,)])
            cur.execute("CREATE OR REPLACE FUNCTION pg_temp.add1(i int) RETURNS int "
                        "AS $$ SELECT i + 1 $$ LANGUAGE sql")
            cur.callproc("pg_temp.add1", (41,))
            assert cur.fetchone() == (42,)
        conn.close()
    subs = sql_subsegments(emitter)
    assert [s["sql"]["sanitized_query"] for s in subs] == [
        "SELECT %s::text AS a, ? AS b, ?",
        "SELECT %s",
        "CREATE OR REPLACE FUNCTION pg_temp.add1(i int) RETURNS int AS ? LANGUAGE sql",
        "pg_temp.add1",
    ]
    assert [s["sql"]["preparation"] for s in subs] == ["statement"] * 3 + ["call"]
    for s in subs:
        assert s["name"] == "test@127.0.0.1"
        assert s["namespace"] == "remote"
        assert s["sql"]["url"] == "postgresql://postgres@127.0.0.1:5432/test"
        assert s["sql"]["user"] == "postgres"
        assert s["sql"]["database_type"] == "PostgreSQL"
        assert s["sql"]["database_version"][:2].isdigit()
        assert s["sql"]["driver_version"] == "psycopg2 " + psycopg2.__version__.split()[0]
    [doc] = emitter.documents
    assert doc["id"] == seg.id
    assert_no_secret(emitter, PASSWORD, "param-secret", "literal-secret")


def test_types_and_with_blocks(traced):
    t, emitter = traced
    with request_segment(t):
        with psycopg2.connect(PG_DSN) as conn:
            assert isinstance(conn, extensions.connection)
            assert type(conn).__name__ == "connection"
            with conn.cursor() as cur:
                assert isinstance(cur, extensions.cursor)
                assert cur.connection is conn
                cur.execute("SELECT 1")
        conn.close()
    assert len(sql_subsegments(emitter)) == 1


def test_failing_statement(traced):
    t, emitter = traced
    boom = psycopg2.OperationalError("server on fire")

    class Failing(extensions.cursor):
        def execute(self, query, vars=None):
            raise boom

    with request_segment(t):
        conn = psycopg2.connect(PG_DSN)
        cur = conn.cursor()
        with pytest.raises(psycopg2.errors.UndefinedTable) as info:
            cur.execute("SELECT * FROM no_such_table_xyz")
        real = info.value
        conn.rollback()
        with pytest.raises(psycopg2.OperationalError) as info2:
            conn.cursor(cursor_factory=Failing).execute("SELECT 1")
        conn.close()
    assert real.pgcode == "42P01"
    assert info2.value is boom
    subs = sql_subsegments(emitter)
    assert [s["cause"]["exceptions"][0]["type"] for s in subs] == [
        "UndefinedTable", "OperationalError"]
    assert all(s["fault"] for s in subs)
    assert subs[0]["cause"]["exceptions"][0]["message"] == str(real)[:1000]


def test_logging_connection_and_cursor_factories(traced, caplog):
    import logging

    t, emitter = traced
    log = logging.getLogger("pg-test")
    with request_segment(t):
        conn = psycopg2.connect(PG_DSN, connection_factory=extras.LoggingConnection)
        conn.initialize(log)
        with caplog.at_level(logging.DEBUG, logger="pg-test"):
            cur = conn.cursor()
            assert isinstance(cur, extras.LoggingCursor)
            cur.execute("SELECT 1")
        assert any("SELECT 1" in r.getMessage() for r in caplog.records)
        conn.close()
        conn = psycopg2.connect(PG_DSN, cursor_factory=extras.RealDictCursor)
        cur = conn.cursor()
        assert isinstance(cur, extras.RealDictCursor)
        cur.execute("SELECT 1 AS one")
        assert cur.fetchone() == {"one": 1}
        conn.close()
    assert len(sql_subsegments(emitter)) == 2


def test_pool_connections_are_traced(traced):
    t, emitter = traced
    p = pool.SimpleConnectionPool(1, 2, PG_DSN)
    try:
        with request_segment(t):
            conn = p.getconn()
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
            p.putconn(conn)
    finally:
        p.closeall()
    assert len(sql_subsegments(emitter)) == 1


# -- the same results with and without the agent ---------------------------------------------
def workload():
    out = []
    conn = psycopg2.connect(PG_DSN)
    out.append(("types", type(conn).__name__, isinstance(conn, extensions.connection),
                conn.dsn.replace(PASSWORD, "x")))
    cur = conn.cursor()
    out.append(("cursor", type(cur).__name__, isinstance(cur, extensions.cursor)))
    cur.execute("CREATE TEMP TABLE items (id serial PRIMARY KEY, name text, doc jsonb, "
                "u uuid, tags text[])")
    cur.execute("INSERT INTO items (name, doc, u, tags) VALUES (%s, %s, %s, %s) RETURNING id",
                ("a", extras.Json({"k": [1, 2]}), str(uuid.UUID(int=1)), ["x", "y"]))
    out.append(("returning", cur.fetchone(), cur.rowcount, cur.statusmessage))
    cur.executemany("INSERT INTO items (name) VALUES (%(n)s)", [{"n": "b"}, {"n": "c"}])
    out.append(("executemany", cur.rowcount))
    extras.execute_values(cur, "INSERT INTO items (name) VALUES %s", [("d",), ("e",)])
    extras.execute_batch(cur, "INSERT INTO items (name) VALUES (%s)", [("f",), ("g",)])
    cur.execute("SELECT id, name, doc, tags FROM items ORDER BY id")
    out.append(("fetch", cur.fetchmany(2), cur.fetchall(), [d.name for d in cur.description]))
    out.append(("mogrify", cur.mogrify("SELECT %s, %s", (1, "x"))))
    extras.register_default_jsonb(conn)
    extras.register_uuid(conn_or_curs=conn)
    cur.execute("SELECT doc, u FROM items WHERE id = 1")
    out.append(("adapters", cur.fetchone()))
    extras.register_default_jsonb(conn_or_curs=cur, loads=lambda s: ("custom", s))
    cur.execute("SELECT doc FROM items WHERE id = 1")
    out.append(("jsonb loads", cur.fetchone()))
    caster = extensions.new_type((25,), "UPPER", lambda v, c: v.upper() if v else v)
    extensions.register_type(caster, conn)
    extensions.register_type(extensions.new_type((23,), "PLUS", lambda v, c: int(v) + 1000),
                             cur)
    cur.execute("SELECT name, id FROM items WHERE id = 2")
    out.append(("register_type", cur.fetchone()))
    q = sql.SQL("SELECT {} FROM {} WHERE {} = %s").format(
        sql.Identifier("name"), sql.Identifier("items"), sql.Identifier("id"))
    out.append(("as_string", q.as_string(conn), extensions.quote_ident("we\"ird", conn)))
    cur.execute(q, (3,))
    out.append(("composed", cur.fetchone()))
    for factory in (extras.DictCursor, extras.RealDictCursor, extras.NamedTupleCursor):
        with conn.cursor(cursor_factory=factory) as c:
            c.execute("SELECT id, name FROM items WHERE id <= 2 ORDER BY id")
            rows = c.fetchall()
            out.append((factory.__name__, type(c).__name__, isinstance(c, factory),
                        [tuple(r) if factory is not extras.RealDictCursor else dict(r)
                         for r in rows]))
    with conn.cursor("server_side", cursor_factory=extras.DictCursor) as named:
        named.itersize = 2
        named.execute("SELECT id FROM items ORDER BY id")
        out.append(("named", named.name, [r[0] for r in named]))
    with conn.cursor("scroll", scrollable=True) as named:
        named.execute("SELECT generate_series(1, 10)")
        named.scroll(5)
        out.append(("scroll", named.fetchone()))
    buf = io.StringIO()
    cur.copy_expert("COPY (SELECT id, name FROM items ORDER BY id) TO STDOUT", buf)
    out.append(("copy_to", buf.getvalue()))
    cur.copy_from(io.StringIO("100\tcopied\n"), "items", columns=("id", "name"))
    cur.execute("SELECT name FROM items WHERE id = 100")
    out.append(("copy_from", cur.fetchone()))
    cur.execute("CREATE OR REPLACE FUNCTION pg_temp.f(a int, b int) RETURNS int "
                "AS $$ SELECT a * b $$ LANGUAGE sql")
    cur.callproc("pg_temp.f", (6, 7))
    out.append(("callproc", cur.fetchone()))
    conn.commit()
    for bad, args in (("SELECT * FROM nope", None), ("SELEC 1", None), ("SELECT %s", ())):
        try:
            cur.execute(bad, args)
        except (psycopg2.Error, IndexError, TypeError) as exc:
            out.append(("error", type(exc).__name__, getattr(exc, "pgcode", None),
                        str(exc).split("\n")[0]))
            conn.rollback()
    with conn:
        with conn.cursor() as c:
            c.execute("INSERT INTO items (name) VALUES ('tx')")
    cur.execute("SELECT count(*) FROM items")
    out.append(("count", cur.fetchone(), conn.closed, conn.status, cur.closed))
    conn.notices.clear()
    cur.execute("DO $$ BEGIN RAISE NOTICE 'hello'; END $$")
    out.append(("notices", [n.strip() for n in conn.notices]))
    out.append(("info", conn.info.dbname, conn.get_dsn_parameters().get("user"),
                conn.server_version > 0, conn.encoding))
    conn.close()
    try:
        cur.execute("SELECT 1")
    except psycopg2.InterfaceError as exc:
        out.append(("closed", str(exc)))
    return out


def test_same_results_with_and_without_the_agent(tracer):
    t, emitter = tracer
    bare = workload()
    db_psycopg2.patch()
    try:
        with request_segment(t):
            traced = workload()
    finally:
        db_psycopg2.unpatch()
    assert traced == bare
    subs = sql_subsegments(emitter)
    assert len(subs) > 20
    assert_no_secret(emitter, PASSWORD)
