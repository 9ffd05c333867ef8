"""aiosqlite in-process: its statements run in aiosqlite's own thread but land under the
awaiting coroutine's request, once (recorded by the sqlite3 integration, with its fields);
one connection shared by concurrent requests keeps them apart; nothing is recorded outside a
request even on a connection opened inside one (whose thread was started with that request's
context); errors pass through; unpatch restores."""

import asyncio
import inspect
import sqlite3

import pytest
from sqltrace import assert_no_secret, sql_subsegments
from xray_testing import need

aiosqlite = need("aiosqlite")
from aiosqlite import core  # noqa: E402

from xray_autoinst.contrib import ctx_threading, db_aiosqlite, db_sqlite3  # noqa: E402


@pytest.fixture
def traced(tracer):
    db_sqlite3.patch()
    ctx_threading.patch()  # as under xray-run: threads start in their starter's context
    db_aiosqlite.patch()
    yield tracer
    db_aiosqlite.unpatch()
    ctx_threading.unpatch()
    db_sqlite3.unpatch()


def queries(doc):
    return [s["sql"]["sanitized_query"] for s in doc.get("subsegments", [])]


def test_patch_keeps_a_coroutine_function_and_unpatch_restores():
    original = core.Connection.__dict__["_execute"]
    db_aiosqlite.patch()
    db_aiosqlite.patch()
    try:
        assert core.Connection._execute is not original
        assert inspect.iscoroutinefunction(core.Connection._execute)
    finally:
        db_aiosqlite.unpatch()
    assert core.Connection.__dict__["_execute"] is original


def test_statements_land_under_the_request_once(traced, tmp_path):
    t, emitter = traced
    path = str(tmp_path / "shop.db")

    async def main():
        seg, token = t.begin_segment("req")
        async with aiosqlite.connect(path) as db:
            await db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
            await db.execute("INSERT INTO items (name) VALUES ('lit-secret')")
            await db.executemany("INSERT INTO items (name) VALUES (?)",
                                 [("param-secret",), ("b",)])
            await db.commit()
            async with db.execute("SELECT name FROM items WHERE id > ?", (1,)) as cur:
                assert [r[0] for r in await cur.fetchall()] == ["param-secret", "b"]
            cur = await db.cursor()
            await cur.execute("SELECT count(*) FROM items")
            assert (await cur.fetchone())[0] == 3
            await cur.executescript("CREATE TABLE t2 (a); CREATE TABLE t3 (b);")
            assert await db.execute_fetchall("SELECT 1") == [(1,)]
            with pytest.raises(sqlite3.OperationalError) as info:
                await db.execute("SELECT * FROM no_such_table")
        t.end_segment(seg, token)
        return info.value

    exc = asyncio.run(main())
    assert type(exc) is sqlite3.OperationalError
    [doc] = emitter.documents
    assert queries(doc) == [
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)",
        "INSERT INTO items (name) VALUES (?)",
        "INSERT INTO items (name) VALUES (?)",
        "SELECT name FROM items WHERE id > ?",
        "SELECT count(*) FROM items",
        "CREATE TABLE t2 (a); CREATE TABLE t3 (b);",
        "SELECT ?",
        "SELECT * FROM no_such_table",
    ]
    subs = sql_subsegments(emitter)  # validated; exactly one per statement
    assert len(subs) == 8
    for s in subs:
        assert s["name"] == "shop.db" and s["namespace"] == "remote"
        assert s["sql"]["database_type"] == "sqlite"
        assert s["sql"]["url"].endswith("/shop.db")
        assert doc["start_time"] <= s["start_time"] <= s["end_time"] <= doc["end_time"]
    failed = subs[-1]
    assert failed["fault"] is True
    assert failed["cause"]["exceptions"][0]["type"] == "OperationalError"
    assert_no_secret(emitter, "lit-secret", "param-secret")


def test_one_connection_shared_by_concurrent_requests(traced, tmp_path):
    t, emitter = traced
    path = str(tmp_path / "shared.db")

    async def main():
        opened = asyncio.get_running_loop().create_future()

        async def opener():  # the connection (and its thread) is born inside request 0
            seg, token = t.begin_segment("req-opener")
            db = await aiosqlite.connect(path)
            await db.execute("CREATE TABLE kv (k TEXT)")
            t.end_segment(seg, token)
            opened.set_result(db)

        async def request(i):
            db = await opened
            seg, token = t.begin_segment("req-%d" % i)
            for _ in range(3):
                await db.execute("SELECT %d AS task_%d" % (i, i))
                await asyncio.sleep(0)
            t.end_segment(seg, token)

        await asyncio.gather(opener(), *(request(i) for i in range(6)))
        db = opened.result()
        await db.execute("SELECT 'outside' AS outside_any_request")
        await db.close()

    asyncio.run(main())
    by_name = {d["name"]: d for d in emitter.documents}
    assert sorted(by_name) == ["req-%d" % i for i in range(6)] + ["req-opener"]
    assert queries(by_name["req-opener"]) == ["CREATE TABLE kv (k TEXT)"]
    for i in range(6):
        assert queries(by_name["req-%d" % i]) == ["SELECT ? AS task_%d" % i] * 3
    # the statement made outside any request was not recorded (not under req-opener either)
    assert len(sql_subsegments(emitter)) == 19


def test_nothing_recorded_outside_a_request(traced):
    _t, emitter = traced

    async def main():
        async with aiosqlite.connect(":memory:") as db:
            await db.execute("SELECT 1")

    asyncio.run(main())
    assert emitter.documents == []


def test_without_the_sqlite3_integration_nothing_is_recorded(tracer):
    t, emitter = tracer
    db_aiosqlite.patch()
    try:
        async def main():
            seg, token = t.begin_segment("req")
            async with aiosqlite.connect(":memory:") as db:
                assert await db.execute_fetchall("SELECT 2") == [(2,)]
            t.end_segment(seg, token)

        asyncio.run(main())
    finally:
        db_aiosqlite.unpatch()
    [doc] = emitter.documents
    assert "subsegments" not in doc
