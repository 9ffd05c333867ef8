"""asyncpg in-process against the real PostgreSQL on 127.0.0.1:5432: one subsegment per
statement (execute, fetch*, executemany, prepared statements, copy_*, pools), the psycopg
fields, no password or literal, the driver's own exceptions, asyncpg's own bookkeeping
(pool reset, transaction control) not recorded, concurrent tasks each under their own segment,
and the same results with and without the agent."""

import asyncio
import inspect
import io

import pytest
from sqltrace import assert_no_secret, require_postgres, sql_subsegments
from xray_testing import install_tracer, need, skip_or_fail

asyncpg = need("asyncpg")

from xray_autoinst.contrib import db_asyncpg  # noqa: E402

PASSWORD = "asyncpg-pw-not-used"
DSN = f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/test"


@pytest.fixture(autouse=True)
def _postgres():
    require_postgres()


@pytest.fixture
def traced(tracer):
    db_asyncpg.patch()
    yield tracer
    db_asyncpg.unpatch()


def in_segment(t, name="req"):
    """Decorate a coroutine function: it runs inside its own sampled segment."""

    def deco(fn):
        async def run(*args, **kwargs):
            seg, token = t.begin_segment(name)
            try:
                return await fn(*args, **kwargs)
            finally:
                t.end_segment(seg, token)

        return run

    return deco


def queries(emitter):
    return [s["sql"]["sanitized_query"] for s in sql_subsegments(emitter)]


def test_patch_keeps_coroutine_functions_and_unpatch_restores():
    from asyncpg import connection, prepared_stmt, transaction

    conn, stmt = connection.Connection, prepared_stmt.PreparedStatement
    before = {(c, n): c.__dict__[n] for c, n, _w in db_asyncpg._targets()}
    assert len(before) >= 14
    db_asyncpg.patch()
    db_asyncpg.patch()
    try:
        for (c, n), original in before.items():
            assert c.__dict__[n] is not original, n
            # what was a coroutine function still is; what returned a coroutine still does
            assert inspect.iscoroutinefunction(c.__dict__[n]) == \
                inspect.iscoroutinefunction(original), n
        assert inspect.iscoroutinefunction(conn.fetch)
        assert not inspect.iscoroutinefunction(stmt.fetch)
        assert not inspect.iscoroutinefunction(transaction.Transaction.start)
    finally:
        db_asyncpg.unpatch()
    for (c, n), original in before.items():
        assert c.__dict__[n] is original, n


def test_fields_of_each_kind_of_call(traced):
    t, emitter = traced

    @in_segment(t)
    async def main():
        conn = await asyncpg.connect(DSN)
        try:
            assert await conn.execute("CREATE TEMP TABLE items (id int, name text)") == \
                "CREATE TABLE"
            await conn.execute("INSERT INTO items VALUES (1, 'lit-secret')")
            await conn.executemany("INSERT INTO items VALUES ($1, $2)",
                                   [(2, "param-secret"), (3, "param-secret")])
            assert len(await conn.fetch("SELECT * FROM items WHERE name <> 'lit-secret'")) == 2
            assert await conn.fetchval("SELECT $1::text", "param-secret") == "param-secret"
            assert (await conn.fetchrow("SELECT 42 AS n"))["n"] == 42
            assert len(await conn.fetchmany("SELECT $1::int", [(1,), (2,)])) == 2
            stmt = await conn.prepare("SELECT id FROM items WHERE id > $1 ORDER BY id")
            assert [r[0] for r in await stmt.fetch(1)] == [2, 3]
            assert await stmt.fetchval(2) == 3
            assert (await stmt.fetchrow(0))["id"] == 1
            buf = io.BytesIO()
            await conn.copy_from_query("SELECT * FROM items WHERE id = $1", 1, output=buf)
            await conn.copy_from_table("items", output=io.BytesIO(), schema_name="pg_temp")
            await conn.copy_to_table("items", source=io.BytesIO(b"4\tcopied\n"))
            await conn.copy_records_to_table("items", records=[(5, "rec-secret")])
            assert await conn.fetchval("SELECT count(*) FROM items") == 5
        finally:
            await conn.close()

    asyncio.run(main())
    assert queries(emitter) == [
        "CREATE TEMP TABLE items (id int, name text)",
        "INSERT INTO items VALUES (?, ?)",
        "INSERT INTO items VALUES ($1, $2)",
        "SELECT * FROM items WHERE name <> ?",
        "SELECT $1::text",
        "SELECT ? AS n",
        "SELECT $1::int",
        "SELECT id FROM items WHERE id > $1 ORDER BY id",  # the prepared statement, 3 times
        "SELECT id FROM items WHERE id > $1 ORDER BY id",
        "SELECT id FROM items WHERE id > $1 ORDER BY id",
        "SELECT * FROM items WHERE id = $1",
        "COPY pg_temp.items TO STDOUT",
        "COPY items FROM STDIN",
        "COPY items FROM STDIN",
        "SELECT count(*) FROM items",
    ]
    [doc] = emitter.documents
    for s in sql_subsegments(emitter):
        assert s["name"] == "test@127.0.0.1"
        assert s["namespace"] == "remote"
        sql = s["sql"]
        assert sql["url"] == "postgresql://postgres@127.0.0.1:5432/test"
        assert sql["user"] == "postgres"
        assert sql["database_type"] == "PostgreSQL"
        assert sql["preparation"] == "statement"
        assert sql["driver_version"] == "asyncpg " + asyncpg.__version__
        assert sql["database_version"][:2].isdigit()
        assert doc["start_time"] <= s["start_time"] <= s["end_time"] <= doc["end_time"]
        assert "subsegments" not in s
    assert_no_secret(emitter, PASSWORD, "lit-secret", "param-secret", "rec-secret", "copied")


def test_unix_socket_connection(traced):
    import os

    sock_dir = "/var/run/postgresql"
    if not os.path.exists(sock_dir + "/.s.PGSQL.5432"):
        skip_or_fail("no PostgreSQL Unix socket in " + sock_dir)
    t, emitter = traced

    @in_segment(t)
    async def main():
        conn = await asyncpg.connect(host=sock_dir, user="postgres", database="test",
                                     password=PASSWORD)
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()

    asyncio.run(main())
    [sub] = sql_subsegments(emitter)
    assert sub["name"] == "test@" + sock_dir
    assert sub["sql"]["url"] == "postgresql://postgres@/test?host=" + sock_dir
    assert_no_secret(emitter, PASSWORD)


def test_errors_pass_through_unchanged(traced):
    t, emitter = traced

    @in_segment(t)
    async def main():
        conn = await asyncpg.connect(DSN)
        try:
            with pytest.raises(asyncpg.UndefinedTableError) as a:
                await conn.fetch("SELECT * FROM no_such_table_xyz")
            with pytest.raises(asyncpg.PostgresSyntaxError):
                await conn.execute("SELEC 1")
            with pytest.raises(asyncpg.UndefinedTableError):  # rejected by the server
                await conn.prepare("SELECT * FROM no_such_prepared_xyz")
            stmt = await conn.prepare("SELECT 1 / $1::int")  # prepared: not a subsegment
            with pytest.raises(asyncpg.DivisionByZeroError):
                await stmt.fetchval(0)
            await conn.close()
            with pytest.raises(asyncpg.InterfaceError):
                stmt.fetchval(1)  # checked on the call, not on the await: as without us
            with pytest.raises(asyncpg.InterfaceError):
                await conn.fetch("SELECT 1")
            return a.value
        finally:
            await conn.close()

    exc = asyncio.run(main())
    assert type(exc) is asyncpg.UndefinedTableError and exc.sqlstate == "42P01"
    subs = sql_subsegments(emitter)
    assert [s["sql"]["sanitized_query"] for s in subs] == [
        "SELECT * FROM no_such_table_xyz", "SELEC ?", "SELECT * FROM no_such_prepared_xyz",
        "SELECT ? / $1::int", "SELECT ?"]
    for s, kind in zip(subs, ["UndefinedTableError", "PostgresSyntaxError",
                              "UndefinedTableError", "DivisionByZeroError", "InterfaceError"],
                       strict=True):
        assert s["fault"] is True
        [ex] = s["cause"]["exceptions"]
        assert ex["type"] == kind and ex["remote"] is True


def test_cursors_are_one_subsegment_each(traced):
    t, emitter = traced

    @in_segment(t)
    async def main():
        conn = await asyncpg.connect(DSN)
        try:
            async with conn.transaction():
                got = [r[0] async for r in conn.cursor(
                    "SELECT generate_series(1, $1) AS iterated", 120, prefetch=50)]
                assert got == list(range(1, 121))  # three round trips, one subsegment
                cur = await conn.cursor("SELECT generate_series(1, 10) AS awaited")
                assert len(await cur.fetch(4)) == 4
                assert await cur.forward(2) == 2
                assert (await cur.fetchrow())[0] == 7
                stmt = await conn.prepare("SELECT generate_series(1, 3) AS prepared")
                cur = await stmt.cursor()
                assert [r[0] for r in await cur.fetch(5)] == [1, 2, 3]
        finally:
            await conn.close()

    asyncio.run(main())
    assert queries(emitter) == ["SELECT generate_series(?, $1) AS iterated",
                                "SELECT generate_series(?, ?) AS awaited",
                                "SELECT generate_series(?, ?) AS prepared"]


def test_pool_transactions_and_asyncpg_bookkeeping(traced):
    t, emitter = traced

    async def main():
        pool = await asyncpg.create_pool(DSN, min_size=1, max_size=2)
        try:
            @in_segment(t)
            async def request():
                assert await pool.fetchval("SELECT 1") == 1
                async with pool.acquire() as conn:
                    async with conn.transaction():
                        await conn.execute("CREATE TEMP TABLE tx (a int)")
                        async with conn.transaction():  # a savepoint
                            await conn.execute("INSERT INTO tx VALUES (1)")
                    tx = conn.transaction()
                    await tx.start()
                    await tx.rollback()
                    await conn.execute("BEGIN")  # the application's own: recorded
                    await conn.execute("ROLLBACK")

            await request()
        finally:
            await pool.close()

    asyncio.run(main())
    # no reset query on release, no BEGIN/SAVEPOINT/COMMIT of Transaction objects
    assert queries(emitter) == ["SELECT ?", "CREATE TEMP TABLE tx (a int)",
                                "INSERT INTO tx VALUES (?)", "BEGIN", "ROLLBACK"]


def test_concurrent_tasks_each_under_their_own_segment(traced):
    t, emitter = traced

    async def main():
        pool = await asyncpg.create_pool(DSN, min_size=2, max_size=4)
        shared = await asyncpg.connect(DSN)
        lock = asyncio.Lock()

        async def request(i):
            seg, token = t.begin_segment("req-%d" % i)
            try:
                for _ in range(3):
                    assert await pool.fetchval("SELECT $1::int AS task_%d" % i, i) == i
                    await asyncio.sleep(0)
                async with lock:  # one connection shared by every task, in turns
                    await shared.fetchval("SELECT 1 AS shared_%d" % i)
            finally:
                t.end_segment(seg, token)

        try:
            await asyncio.gather(*(request(i) for i in range(10)))
        finally:
            await shared.close()
            await pool.close()

    asyncio.run(main())
    assert len(emitter.documents) == 10
    for doc in emitter.documents:
        i = doc["name"].split("-")[1]
        got = [s["sql"]["sanitized_query"] for s in doc.get("subsegments", [])]
        assert got == ["SELECT $1::int AS task_%s" % i] * 3 + ["SELECT ? AS shared_%s" % i]
    assert len(sql_subsegments(emitter)) == 40  # validated


def test_nothing_recorded_outside_a_request(traced):
    _t, emitter = traced

    async def main():
        conn = await asyncpg.connect(DSN)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()

    asyncio.run(main())
    assert emitter.documents == []


async def workload():
    out = []
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute("CREATE TEMP TABLE w (id serial PRIMARY KEY, doc jsonb, t text)")
        out.append(await conn.execute("INSERT INTO w (doc, t) VALUES ($1, $2)", '{"a": 1}', "x"))
        out.append(await conn.executemany("INSERT INTO w (t) VALUES ($1)", [("y",), ("z",)]))
        out.append([tuple(r) for r in await conn.fetch("SELECT id, t FROM w ORDER BY id")])
        out.append(await conn.fetchval("SELECT doc FROM w WHERE id = 1"))
        out.append(dict(await conn.fetchrow("SELECT id, t FROM w WHERE id = $1", 2)))
        stmt = await conn.prepare("SELECT t FROM w WHERE id >= $1 ORDER BY id")
        out.append(([a.name for a in stmt.get_attributes()], stmt.get_query(),
                     await stmt.fetchval(2), [tuple(r) for r in await stmt.fetch(1)]))
        async with conn.transaction():
            out.append([r["t"] async for r in conn.cursor("SELECT t FROM w ORDER BY id")])
        buf = io.BytesIO()
        out.append(await conn.copy_from_table("w", columns=["t"], output=buf))
        out.append(buf.getvalue())
        out.append(await conn.copy_records_to_table("w", records=[("r",)], columns=["t"]))
        for bad in ("SELECT * FROM nope", "SELEC 1"):
            try:
                await conn.execute(bad)
            except asyncpg.PostgresError as exc:
                out.append((type(exc).__name__, exc.sqlstate, str(exc)))
        out.append(await conn.fetchval("SELECT count(*) FROM w"))
    finally:
        await conn.close()
    out.append(conn.is_closed())
    return out


def test_same_results_with_and_without_the_agent(tracer):
    t, emitter = tracer
    bare = asyncio.run(workload())
    db_asyncpg.patch()
    try:
        traced = asyncio.run(in_segment(t)(workload)())
    finally:
        db_asyncpg.unpatch()
    assert traced == bare
    assert len(sql_subsegments(emitter)) == 14  # prepare() is not a subsegment; the cursor is
    assert_no_secret(emitter, PASSWORD)


@pytest.mark.parametrize("helper", ["_describe", "_begin", "_copy_query"])
def test_broken_instrumentation_leaves_calls_unchanged(monkeypatch, helper):
    t, emitter = install_tracer({"XRAY_AUTOINST_RAISE": "0"})

    def broken(*args, **kwargs):
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(db_asyncpg, helper, broken)
    db_asyncpg._infos.clear()

    @in_segment(t)
    async def main():
        conn = await asyncpg.connect(DSN)
        try:
            assert await conn.fetchval("SELECT $1::int", 7) == 7
            stmt = await conn.prepare("SELECT $1::int + 1")
            assert await stmt.fetchval(1) == 2
            out = io.BytesIO()
            await conn.copy_from_query("SELECT 1", output=out)
            await conn.copy_from_table("pg_am", output=out, columns=["amname"])
            assert b"btree" in out.getvalue()
            with pytest.raises(asyncpg.UndefinedTableError):
                await conn.fetch("SELECT * FROM no_such_table_xyz")
        finally:
            await conn.close()

    db_asyncpg.patch()
    try:
        asyncio.run(main())
    finally:
        db_asyncpg.unpatch()
    db_asyncpg._infos.clear()
    sql_subsegments(emitter)  # whatever was recorded is valid
