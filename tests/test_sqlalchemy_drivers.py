"""SQLAlchemy 2.x over each driver, sync and asyncio engines: exactly one subsegment per
statement SQLAlchemy sends to the driver, with the driver's fields, and nothing
SQLAlchemy-specific in the agent. SQLAlchemy's own ``before_cursor_execute`` event lists the
statements sent; the subsegments must match it one for one (same order, the same text
sanitized), under the request that ran them (concurrent asyncio tasks included)."""

import asyncio

import pytest
from sqltrace import assert_no_secret, require_postgres, sql_subsegments
from xray_testing import need

sqlalchemy = need("sqlalchemy")
from sqlalchemy import event, text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from xray_autoinst.contrib import (  # noqa: E402
    _sql,
    ctx_threading,
    db_aiosqlite,
    db_asyncpg,
    db_psycopg,
    db_psycopg2,
    db_sqlite3,
)

PASSWORD = "sqla-pw-not-used"
PG = f"postgres:{PASSWORD}@127.0.0.1:5432/test"
PATCHERS = (db_sqlite3, db_psycopg, db_psycopg2, db_asyncpg, db_aiosqlite, ctx_threading)

SYNC = {
    "sqlite3": lambda tmp: f"sqlite:///{tmp}/shop.db",
    "psycopg": lambda tmp: f"postgresql+psycopg://{PG}",
    "psycopg2": lambda tmp: f"postgresql+psycopg2://{PG}",
}
ASYNC = {
    "aiosqlite": lambda tmp: f"sqlite+aiosqlite:///{tmp}/shop.db",
    "psycopg-async": lambda tmp: f"postgresql+psycopg_async://{PG}",
    "asyncpg": lambda tmp: f"postgresql+asyncpg://{PG}",
}
MODULES = {"sqlite3": "sqlite3", "psycopg": "psycopg", "psycopg2": "psycopg2",
           "aiosqlite": "aiosqlite", "psycopg-async": "psycopg", "asyncpg": "asyncpg"}
DRIVER = {"sqlite3": "sqlite3", "aiosqlite": "sqlite3", "psycopg": "psycopg 3",
          "psycopg-async": "psycopg 3", "psycopg2": "psycopg2", "asyncpg": "asyncpg"}


@pytest.fixture
def traced(tracer):
    for p in PATCHERS:
        p.patch()
    yield tracer
    for p in reversed(PATCHERS):
        p.unpatch()


def needs(driver):
    need(MODULES[driver])
    if "sqlite" not in driver:
        require_postgres()


def sent_statements(sync_engine):
    """The statements SQLAlchemy hands the driver's cursor, in order."""
    sent = []

    @event.listens_for(sync_engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    return sent


WORK = [
    "DROP TABLE IF EXISTS sqla_items",
    "CREATE TABLE sqla_items (id INTEGER PRIMARY KEY, name VARCHAR(40))",
]


def check(emitter, sent, driver, segment_names=None):
    subs = sql_subsegments(emitter)  # every document validated
    assert len(sent) >= 6
    assert [s["sql"]["sanitized_query"] for s in subs] == [_sql.sanitize(q) for q in sent]
    for s in subs:
        assert s["namespace"] == "remote"
        assert s["sql"]["driver_version"].startswith(DRIVER[driver]), s["sql"]
        assert "subsegments" not in s
        if "sqlite" in driver:
            assert s["name"] == "shop.db" and s["sql"]["database_type"] == "sqlite"
        else:
            assert s["name"] == "test@127.0.0.1"
            assert s["sql"]["url"] == "postgresql://postgres@127.0.0.1:5432/test"
    if segment_names is not None:
        assert sorted(d["name"] for d in emitter.documents) == sorted(segment_names)
    assert_no_secret(emitter, PASSWORD, "name-secret")


@pytest.mark.parametrize("driver", sorted(SYNC))
def test_sync_engine_one_subsegment_per_statement(traced, driver, tmp_path):
    needs(driver)
    t, emitter = traced
    engine = sqlalchemy.create_engine(SYNC[driver](tmp_path))
    with engine.connect() as conn:  # the dialect's first-connect queries: outside a request
        conn.execute(text("SELECT 1"))
    sent = sent_statements(engine)
    seg, token = t.begin_segment("req")
    try:
        with engine.begin() as conn:
            for q in WORK:
                conn.execute(text(q))
            conn.execute(text("INSERT INTO sqla_items (id, name) VALUES (:i, :n)"),
                         [{"i": 1, "n": "name-secret"}, {"i": 2, "n": "b"}])
            rows = conn.execute(text("SELECT name FROM sqla_items WHERE id >= :i ORDER BY id"),
                                {"i": 1}).all()
            assert [r[0] for r in rows] == ["name-secret", "b"]
            conn.execute(text("DROP TABLE sqla_items"))
        with engine.connect() as conn:
            with pytest.raises(sqlalchemy.exc.DBAPIError) as info:
                conn.execute(text("SELECT * FROM sqla_no_such_table"))
        assert info.value.orig is not None  # the driver's own exception, wrapped by SQLAlchemy
    finally:
        t.end_segment(seg, token)
    with engine.connect() as conn:  # outside a request: nothing recorded
        conn.execute(text("SELECT 2"))
    sent.pop()
    engine.dispose()
    check(emitter, sent, driver, ["req"])
    failed = sql_subsegments(emitter)[-1]
    assert failed["fault"] is True
    assert failed["cause"]["exceptions"][0]["type"] == type(info.value.orig).__name__


@pytest.mark.parametrize("driver", sorted(ASYNC))
def test_async_engine_one_subsegment_per_statement(traced, driver, tmp_path):
    needs(driver)
    t, emitter = traced

    async def main():
        engine = create_async_engine(ASYNC[driver](tmp_path))
        async with engine.connect() as conn:  # first-connect queries: outside a request
            await conn.execute(text("SELECT 1"))
        sent = sent_statements(engine.sync_engine)
        seg, token = t.begin_segment("req")
        try:
            async with engine.begin() as conn:
                for q in WORK:
                    await conn.execute(text(q))
                await conn.execute(text("INSERT INTO sqla_items (id, name) VALUES (:i, :n)"),
                                   [{"i": 1, "n": "name-secret"}, {"i": 2, "n": "b"}])
                result = await conn.execute(
                    text("SELECT name FROM sqla_items WHERE id >= :i ORDER BY id"), {"i": 1})
                assert [r[0] for r in result.all()] == ["name-secret", "b"]
                await conn.execute(text("DROP TABLE sqla_items"))
            async with engine.connect() as conn:
                with pytest.raises(sqlalchemy.exc.DBAPIError):
                    await conn.execute(text("SELECT * FROM sqla_no_such_table"))
        finally:
            t.end_segment(seg, token)
        async with engine.connect() as conn:  # outside a request: nothing recorded
            await conn.execute(text("SELECT 2"))
        sent.pop()
        await engine.dispose()
        return sent

    sent = asyncio.run(main())
    check(emitter, sent, driver, ["req"])
    assert sql_subsegments(emitter)[-1]["fault"] is True


@pytest.mark.parametrize("driver", sorted(ASYNC))
def test_async_engine_concurrent_requests(traced, driver, tmp_path):
    needs(driver)
    t, emitter = traced

    async def main():
        engine = create_async_engine(ASYNC[driver](tmp_path), pool_size=3, max_overflow=0)
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

        async def request(i):
            seg, token = t.begin_segment("req-%d" % i)
            try:
                for _ in range(2):
                    async with engine.connect() as conn:
                        value = await conn.scalar(text("SELECT %d AS task_%d" % (i, i)))
                        assert value == i
                    await asyncio.sleep(0)
            finally:
                t.end_segment(seg, token)

        await asyncio.gather(*(request(i) for i in range(8)))
        await engine.dispose()

    asyncio.run(main())
    sql_subsegments(emitter)  # validated
    assert len(emitter.documents) == 8
    for doc in emitter.documents:
        i = doc["name"].split("-")[1]
        got = [s["sql"]["sanitized_query"] for s in doc.get("subsegments", [])]
        assert got == ["SELECT ? AS task_%s" % i] * 2, (driver, doc["name"], got)


@pytest.mark.parametrize("driver", sorted(ASYNC))
def test_async_engine_streamed_results(traced, driver, tmp_path):
    """A server-side cursor (``stream``) is one subsegment too."""
    needs(driver)
    t, emitter = traced

    async def main():
        engine = create_async_engine(ASYNC[driver](tmp_path))
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        sent = sent_statements(engine.sync_engine)
        seg, token = t.begin_segment("req")
        try:
            async with engine.connect() as conn:
                result = await conn.stream(text("SELECT 1 AS streamed UNION ALL SELECT 2"))
                assert [r[0] async for r in result] == [1, 2]
        finally:
            t.end_segment(seg, token)
        await engine.dispose()
        return sent

    sent = asyncio.run(main())
    subs = sql_subsegments(emitter)
    assert [s["sql"]["sanitized_query"] for s in subs] == [_sql.sanitize(q) for q in sent]
    assert len(subs) == 1


# -- the ORM: unit of work, bulk inserts with RETURNING (insertmanyvalues), selects ---------------
def orm_models():
    from sqlalchemy import Integer, String
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "sqla_orm_items"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        name: Mapped[str] = mapped_column(String(40))

    return Base, Item


@pytest.mark.parametrize("driver", sorted(SYNC))
def test_sync_orm_one_subsegment_per_statement(traced, driver, tmp_path):
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    needs(driver)
    t, emitter = traced
    Base, Item = orm_models()
    engine = sqlalchemy.create_engine(SYNC[driver](tmp_path))
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    sent = sent_statements(engine)
    seg, token = t.begin_segment("req")
    try:
        with Session(engine) as session:
            session.add_all([Item(name="name-secret"), Item(name="b"), Item(name="c")])
            session.flush()
            assert sorted(i.id for i in session.scalars(select(Item))) == [1, 2, 3]
            session.get(Item, 2).name = "renamed-secret"
            session.commit()
    finally:
        t.end_segment(seg, token)
    sent = sent[:]  # drop_all's statements below are outside the request
    Base.metadata.drop_all(engine)
    engine.dispose()
    subs = sql_subsegments(emitter)
    assert len(sent) >= 3
    assert [s["sql"]["sanitized_query"] for s in subs] == [_sql.sanitize(q) for q in sent]
    assert_no_secret(emitter, PASSWORD, "name-secret", "renamed-secret")


@pytest.mark.parametrize("driver", sorted(ASYNC))
def test_async_orm_one_subsegment_per_statement(traced, driver, tmp_path):
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession

    needs(driver)
    t, emitter = traced
    Base, Item = orm_models()

    async def main():
        engine = create_async_engine(ASYNC[driver](tmp_path))
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
            await conn.run_sync(Base.metadata.create_all)
        sent = sent_statements(engine.sync_engine)
        seg, token = t.begin_segment("req")
        try:
            async with AsyncSession(engine) as session:
                session.add_all([Item(name="name-secret"), Item(name="b"), Item(name="c")])
                await session.flush()
                ids = sorted(i.id for i in (await session.scalars(select(Item))).all())
                assert ids == [1, 2, 3]
                (await session.get(Item, 2)).name = "renamed-secret"
                await session.commit()
        finally:
            t.end_segment(seg, token)
        sent = sent[:]  # drop_all's statements below are outside the request
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
        await engine.dispose()
        return sent

    sent = asyncio.run(main())
    subs = sql_subsegments(emitter)
    assert len(sent) >= 3
    assert [s["sql"]["sanitized_query"] for s in subs] == [_sql.sanitize(q) for q in sent]
    assert_no_secret(emitter, PASSWORD, "name-secret", "renamed-secret")
