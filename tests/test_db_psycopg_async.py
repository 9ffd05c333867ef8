"""psycopg 3 async under many requests sharing one event loop: AsyncConnection,
AsyncCursor, AsyncServerCursor and psycopg_pool's AsyncConnectionPool, each statement under
the segment of the task that awaited it (no cross-talk), the pool's own checks not recorded,
nothing outside a request."""

import asyncio

import pytest
from sqltrace import PASSWORD, PG_DSN, assert_no_secret, require_postgres, sql_subsegments
from xray_testing import need

psycopg = need("psycopg")
psycopg_pool = need("psycopg_pool")

from xray_autoinst.contrib import db_psycopg  # noqa: E402


@pytest.fixture(autouse=True)
def _postgres():
    require_postgres()


@pytest.fixture
def traced(tracer):
    db_psycopg.patch()
    yield tracer
    db_psycopg.unpatch()


def queries(doc):
    return [s["sql"]["sanitized_query"] for s in doc.get("subsegments", [])]


def test_concurrent_requests_on_one_loop(traced):
    t, emitter = traced

    async def main():
        pool = psycopg_pool.AsyncConnectionPool(
            PG_DSN, min_size=2, max_size=4, open=False,
            check=psycopg_pool.AsyncConnectionPool.check_connection)
        await pool.open(wait=True)
        shared = await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True)
        lock = asyncio.Lock()

        async def request(i):
            seg, token = t.begin_segment("req-%d" % i)
            try:
                async with pool.connection() as conn:
                    cur = await conn.execute(f"SELECT %s::int AS task_{i}", (i,))
                    assert await cur.fetchone() == (i,)
                    await asyncio.sleep(0)
                    async with conn.cursor(name="ss_%d" % i) as ss:
                        await ss.execute(f"SELECT generate_series(1, %s) AS task_{i}",
                                         (3,))
                        assert [r[0] async for r in ss] == [1, 2, 3]
                async with lock:
                    async with shared.cursor() as cur:
                        await cur.executemany(f"SELECT %s AS shared_{i}", [(1,), (2,)])
            finally:
                t.end_segment(seg, token)

        try:
            await asyncio.gather(*(request(i) for i in range(12)))
        finally:
            await shared.close()
            await pool.close()

    asyncio.run(main())
    sql_subsegments(emitter)  # every document validated
    assert len(emitter.documents) == 12
    for doc in emitter.documents:
        i = doc["name"].split("-")[1]
        assert queries(doc) == ["SELECT %s::int AS task_" + i,
                                "SELECT generate_series(?, %s) AS task_" + i,
                                "SELECT %s AS shared_" + i], doc["name"]
        for s in doc["subsegments"]:
            assert s["name"] == "test@127.0.0.1"
            assert doc["start_time"] <= s["start_time"] <= s["end_time"] <= doc["end_time"]
    assert_no_secret(emitter, PASSWORD)


def test_pool_opened_inside_a_request_records_nothing_after_it(traced):
    """The pool's worker tasks start in the opening request's context: what they do later
    (connections made, checks) must not land in that request, nor anywhere."""
    t, emitter = traced

    async def main():
        seg, token = t.begin_segment("opener")
        pool = psycopg_pool.AsyncConnectionPool(
            PG_DSN, min_size=1, max_size=3, open=False,
            check=psycopg_pool.AsyncConnectionPool.check_connection)
        await pool.open(wait=True)
        t.end_segment(seg, token)
        for _ in range(3):
            async with pool.connection() as conn:
                await (await conn.execute("SELECT 1")).fetchone()
        await pool.check()
        await pool.close()

    asyncio.run(main())
    [doc] = emitter.documents
    assert doc["name"] == "opener" and "subsegments" not in doc
