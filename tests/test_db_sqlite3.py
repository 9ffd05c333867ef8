"""sqlite3 in-process: one subsegment per statement with the X-Ray sql fields, the driver's
own exceptions unchanged, and the same results with and without the agent."""

import os
import sqlite3

import pytest
from sqltrace import request_segment, sql_subsegments

from xray_autoinst.contrib import db_sqlite3


@pytest.fixture
def traced(tracer):
    db_sqlite3.patch()
    yield tracer
    db_sqlite3.unpatch()


def test_patch_replaces_connect_and_unpatch_restores_it():
    original = sqlite3.connect
    db_sqlite3.patch()
    try:
        assert sqlite3.connect is not original
        conn = sqlite3.connect(":memory:")
        assert isinstance(conn, sqlite3.Connection)
        assert isinstance(conn, db_sqlite3.TracedConnectionMixin)
    finally:
        db_sqlite3.unpatch()
    assert sqlite3.connect is original
    assert not isinstance(sqlite3.connect(":memory:"), db_sqlite3.TracedConnectionMixin)


def test_one_subsegment_per_statement(traced, tmp_path):
    t, emitter = traced
    path = tmp_path / "shop.db"
    with request_segment(t) as seg:
        conn = sqlite3.connect(str(path))
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
        cur = conn.cursor()
        cur.execute("INSERT INTO items (name, price) VALUES ('secret-widget', 9.99)")
        cur.executemany("INSERT INTO items (name, price) VALUES (?, ?)", [("a", 1), ("b", 2)])
        conn.executemany("INSERT INTO items (name, price) VALUES (?, ?)", [("c", 3)])
        conn.executescript("UPDATE items SET price = 0 WHERE name = 'x'; SELECT 1;")
        cur.executescript("SELECT 2;")
        rows = cur.execute("SELECT name FROM items WHERE id IN (1, 2, 3) ORDER BY id").fetchall()
        conn.close()
    assert rows == [("secret-widget",), ("a",), ("b",)]
    [doc] = emitter.documents
    assert doc["id"] == seg.id
    subs = sql_subsegments(emitter)
    assert [s["sql"]["sanitized_query"] for s in subs] == [
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL)",
        "INSERT INTO items (name, price) VALUES (?, ?)",
        "INSERT INTO items (name, price) VALUES (?, ?)",
        "INSERT INTO items (name, price) VALUES (?, ?)",
        "UPDATE items SET price = ? WHERE name = ?; SELECT ?;",
        "SELECT ?;",
        "SELECT name FROM items WHERE id IN (?) ORDER BY id",
    ]
    for s in subs:
        assert s["name"] == "shop.db"
        assert s["namespace"] == "remote"
        assert s["sql"]["database_type"] == "sqlite"
        assert s["sql"]["database_version"] == sqlite3.sqlite_version
        assert s["sql"]["driver_version"].startswith("sqlite3")
        assert s["sql"]["preparation"] == "statement"
        assert s["sql"]["url"] == "sqlite:///" + os.path.abspath(path).lstrip("/")
        assert s["start_time"] <= s["end_time"]
        assert "fault" not in s
    assert "secret-widget" not in str(doc)
    # each statement is a direct child of the request segment
    assert {s["id"] for s in doc["subsegments"]} == {s["id"] for s in subs}


def test_memory_database_and_uri_names(traced):
    t, emitter = traced
    with request_segment(t):
        sqlite3.connect(":memory:").execute("SELECT 1")
        sqlite3.connect("file:named.db?mode=memory&cache=shared", uri=True).execute("SELECT 1")
    subs = sql_subsegments(emitter)
    assert [s["name"] for s in subs] == [":memory:", "named.db"]
    assert "mode=memory" not in subs[1]["sql"]["url"]


def test_with_blocks_stay_traced(traced):
    t, emitter = traced
    with request_segment(t):
        with sqlite3.connect(":memory:") as conn:
            conn.execute("CREATE TABLE t (a)")
            with conn:
                conn.execute("INSERT INTO t VALUES (1)")
        cur = conn.cursor()
        for _row in cur.execute("SELECT * FROM t"):
            pass
    assert len(sql_subsegments(emitter)) == 3


def test_nothing_recorded_outside_a_request(traced):
    t, emitter = traced
    conn = sqlite3.connect(":memory:")
    assert conn.execute("SELECT 1").fetchone() == (1,)
    assert emitter.documents == []


def test_unsampled_request_records_nothing(tracer):
    from xray_testing import install_tracer

    t, emitter = install_tracer(
        {"XRAY_SAMPLING_RULES": '{"version": 2, "default": {"fixed_target": 0, "rate": 0}}'})
    db_sqlite3.patch()
    try:
        seg, token = t.begin_segment("x")
        assert not seg.sampled
        sqlite3.connect(":memory:").execute("SELECT 1")
        t.end_segment(seg, token)
    finally:
        db_sqlite3.unpatch()
    assert emitter.documents == []


def test_sql_queries_off(tracer):
    from xray_testing import install_tracer

    t, emitter = install_tracer({"XRAY_SQL_QUERIES": "off"})
    db_sqlite3.patch()
    try:
        with request_segment(t):
            sqlite3.connect(":memory:").execute("SELECT 'x'")
    finally:
        db_sqlite3.unpatch()
    [sub] = sql_subsegments(emitter)
    assert "sanitized_query" not in sub["sql"]
    assert sub["sql"]["preparation"] == "statement"


def test_failing_statement_records_fault_and_raises_the_drivers_exception(traced):
    t, emitter = traced
    boom = sqlite3.OperationalError("disk on fire")

    class Failing(sqlite3.Cursor):
        def execute(self, *args):
            raise boom

    with request_segment(t):
        conn = sqlite3.connect(":memory:")
        with pytest.raises(sqlite3.OperationalError) as info:
            conn.execute("SELECT * FROM missing_table")
        real = info.value
        with pytest.raises(sqlite3.OperationalError) as info2:
            conn.cursor(Failing).execute("SELECT 1")
    assert str(real) == "no such table: missing_table"
    assert info2.value is boom  # the very object the driver raised
    subs = sql_subsegments(emitter)
    assert len(subs) == 2
    for sub, exc in zip(subs, (real, boom), strict=True):
        assert sub["fault"] is True
        [ex] = sub["cause"]["exceptions"]
        assert ex["type"] == "OperationalError"
        assert ex["message"] == str(exc)
        assert ex["remote"] is True


def test_user_factories_are_kept(traced):
    t, emitter = traced

    class MyConnection(sqlite3.Connection):
        def hello(self):
            return "hello"

    class MyCursor(sqlite3.Cursor):
        def first(self):
            return self.fetchone()[0]

    with request_segment(t):
        conn = sqlite3.connect(":memory:", factory=MyConnection)
        assert isinstance(conn, MyConnection) and conn.hello() == "hello"
        cur = conn.cursor(factory=MyCursor)
        assert isinstance(cur, MyCursor)
        assert cur.execute("SELECT 7").first() == 7
        cur2 = conn.cursor(MyCursor)
        assert cur2.execute("SELECT 8").first() == 8
    assert len(sql_subsegments(emitter)) == 2


def test_nested_statement_is_not_a_second_subsegment(traced):
    t, emitter = traced
    with request_segment(t):
        conn = sqlite3.connect(":memory:")
        conn.create_function("nested_call", 0, lambda: conn.execute("SELECT 1").fetchone()[0])
        assert conn.execute("SELECT nested_call()").fetchone() == (1,)
    assert len(sql_subsegments(emitter)) == 1


# -- the same results with and without the agent ---------------------------------------------
def workload(tmp_path):
    """Exercise much of the sqlite3 API; return what an application observes."""
    out = []
    path = str(tmp_path / "compat.db")
    if os.path.exists(path):
        os.remove(path)
    conn = sqlite3.connect(path, detect_types=sqlite3.PARSE_DECLTYPES)
    out.append(("types", type(conn).__name__, isinstance(conn, sqlite3.Connection)))
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, ts timestamp, b BLOB)")
    cur = conn.cursor()
    out.append(("cursor", type(cur).__name__, isinstance(cur, sqlite3.Cursor),
                cur.connection is conn))
    cur.execute("INSERT INTO t (name, b) VALUES (?, ?)", ("x", b"\x00\x01"))
    out.append(("lastrowid", cur.lastrowid, cur.rowcount))
    cur.executemany("INSERT INTO t (name) VALUES (:n)", [{"n": "y"}, {"n": "z"}])
    out.append(("rowcount", cur.rowcount, conn.total_changes, conn.in_transaction))
    conn.commit()
    out.append(("fetch", cur.execute("SELECT id, name, b FROM t ORDER BY id").fetchall()))
    out.append(("description", [d[0] for d in cur.description]))
    out.append(("iter", [r for r in conn.execute("SELECT name FROM t ORDER BY id")]))
    out.append(("fetchmany", conn.execute("SELECT id FROM t").fetchmany(2)))
    conn.row_factory = sqlite3.Row
    row = conn.execute("SELECT id, name FROM t WHERE id = 1").fetchone()
    out.append(("row", type(row).__name__, row["name"], row.keys()))
    conn.row_factory = lambda c, r: {d[0]: v for d, v in zip(c.description, r, strict=True)}
    out.append(("dictrow", conn.execute("SELECT id, name FROM t WHERE id = 2").fetchone()))
    conn.row_factory = None
    conn.text_factory = bytes
    out.append(("text_factory", conn.execute("SELECT name FROM t WHERE id = 3").fetchone()))
    conn.text_factory = str
    conn.create_function("twice", 1, lambda v: v * 2)
    out.append(("function", conn.execute("SELECT twice(21)").fetchone()))

    class Agg:
        def __init__(self):
            self.n = 0

        def step(self, v):
            self.n += v

        def finalize(self):
            return self.n

    conn.create_aggregate("total", 1, Agg)
    out.append(("aggregate", conn.execute("SELECT total(id) FROM t").fetchone()))
    conn.create_collation("rev", lambda a, b: (a < b) - (a > b))
    out.append(("collation",
                conn.execute("SELECT name FROM t ORDER BY name COLLATE rev").fetchall()))
    conn.executescript("CREATE TABLE u (a); INSERT INTO u VALUES (1); INSERT INTO u VALUES (2);")
    out.append(("script", conn.execute("SELECT count(*) FROM u").fetchone()))
    try:
        with conn:
            conn.execute("INSERT INTO u VALUES (3)")
            raise ValueError("rollback")
    except ValueError:
        pass
    out.append(("rollback", conn.execute("SELECT count(*) FROM u").fetchone()))
    with conn:
        conn.execute("INSERT INTO u VALUES (4)")
    out.append(("commit", conn.execute("SELECT count(*) FROM u").fetchone()))
    for bad in ("SELECT * FROM nope", "SELEC 1", "INSERT INTO t (id) VALUES (1)"):
        try:
            conn.execute(bad)
        except sqlite3.Error as exc:
            out.append(("error", type(exc).__name__, str(exc)))
    try:
        conn.execute("SELECT ?", (1, 2))
    except sqlite3.Error as exc:
        out.append(("error", type(exc).__name__, str(exc)))
    try:
        cur.execute()
    except TypeError as exc:
        out.append(("typeerror", str(exc)))
    out.append(("in_transaction", conn.in_transaction))
    conn.commit()  # (backup() waits while the source has a write transaction open)
    target = sqlite3.connect(":memory:")
    conn.backup(target)
    out.append(("backup", target.execute("SELECT count(*) FROM t").fetchone()))
    mem = sqlite3.connect(":memory:")
    target.backup(mem, pages=1)
    out.append(("backup2", mem.execute("SELECT count(*) FROM u").fetchone()))
    out.append(("iterdump", list(conn.iterdump())))
    conn.set_authorizer(lambda *a: sqlite3.SQLITE_OK)
    conn.set_progress_handler(None, 0)
    blob_ok = hasattr(conn, "blobopen")
    if blob_ok:
        with conn.blobopen("t", "b", 1) as blob:
            out.append(("blob", blob.read()))
    out.append(("ctx", sqlite3.connect(":memory:").__enter__().__class__.__name__))
    with sqlite3.connect(":memory:") as c2:
        out.append(("with", isinstance(c2, sqlite3.Connection), c2.execute("SELECT 1").fetchone()))
    cur.close()
    try:
        cur.execute("SELECT 1")
    except sqlite3.ProgrammingError as exc:
        out.append(("closed", str(exc)))
    conn.close()
    return out


def test_same_results_with_and_without_the_agent(tracer, tmp_path):
    t, emitter = tracer
    bare = workload(tmp_path)
    db_sqlite3.patch()
    try:
        with request_segment(t):
            traced = workload(tmp_path)
    finally:
        db_sqlite3.unpatch()
    assert traced == bare
    assert len(sql_subsegments(emitter)) > 30  # and it was traced


def test_a_repeated_statement_shares_its_sql_fields_encoded_once(traced, monkeypatch):
    """The subsegments of one statement on one connection share their ``sql`` fields, whose
    JSON text the encoder makes once (the sender's work per statement)."""
    from xray_autoinst.core import encoder

    t, emitter = traced
    dumped = []
    real = encoder._dump
    monkeypatch.setattr(encoder, "_dump", lambda value: dumped.append(value) or real(value))
    with request_segment(t) as seg:
        conn = sqlite3.connect(":memory:")
        for _ in range(3):
            conn.execute("SELECT 1")
        first = seg.subsegments[0].sql
        assert len(seg.subsegments) == 3 and all(s.sql is first for s in seg.subsegments)
        conn.close()
    subs = sql_subsegments(emitter)
    assert [s["sql"] for s in subs] == [subs[0]["sql"]] * 3
    assert subs[0]["sql"]["sanitized_query"] == "SELECT ?"
    assert subs[0]["sql"]["url"] == "sqlite://:memory:"
    assert len([v for v in dumped if isinstance(v, dict) and "sanitized_query" in v]) == 1


def test_statement_methods_call_the_drivers_own(traced):
    t, emitter = traced
    with request_segment(t):
        conn = sqlite3.connect(":memory:")
        conn.executescript("CREATE TABLE t (x INTEGER);")
        conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
        cur = conn.cursor()
        cur.executemany("INSERT INTO t VALUES (?)", [(3,)])
        cur.executescript("INSERT INTO t VALUES (4);")
        assert cur.execute("SELECT sum(x) FROM t").fetchone() == (10,)
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (4,)
    assert len(sql_subsegments(emitter)) == 6
