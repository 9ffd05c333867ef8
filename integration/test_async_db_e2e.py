"""End to end: an unchanged asyncio program under ``xray-run python`` with
``XRAY_CONTEXT_MISSING=process`` runs concurrent tasks through asyncpg (a pool), psycopg 3
async, aiosqlite, SQLAlchemy's asyncio engine over asyncpg, and aiobotocore against a moto
server. The loopback daemon receives one streamed subsegment per statement and per AWS call
under the process segment, with the drivers' fields, the failing statement's fault, and no
password, literal or payload anywhere; with the default (ignore) nothing is recorded."""

import subprocess
import time

import pytest
from test_http_servers import start_moto
from xray_testing import agent_env, validate, xray_run

from conftest import require_service

PASSWORD = "e2e-async-pw"

APP = r'''
import asyncio
import os

import aiosqlite
import asyncpg
import psycopg
from aiobotocore.session import get_session
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

PG = os.environ["T_PG"]


async def asyncpg_task():
    pool = await asyncpg.create_pool(PG, min_size=1, max_size=2)
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT $1::int + 1 AS asyncpg_q, 'lit-secret-1'", 41)
    await pool.close()


async def psycopg_task():
    dsn = os.environ["T_PG_DSN"]
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await conn.execute("SELECT %s::int AS psycopg_q, 'lit-secret-2'", (1,))


async def aiosqlite_task():
    async with aiosqlite.connect(os.environ["T_DB"]) as db:
        await db.execute("CREATE TABLE IF NOT EXISTS t (a TEXT)")
        await db.execute("INSERT INTO t VALUES ('lit-secret-3')")
        await db.commit()


async def sqlalchemy_task():
    engine = create_async_engine(PG.replace("postgresql://", "postgresql+asyncpg://"))
    async with engine.connect() as conn:
        await conn.execute(text("SELECT :v AS sqla_q"), {"v": "param-secret"})
    await engine.dispose()


async def aws_task():
    session = get_session()
    async with session.create_client("s3", endpoint_url=os.environ["T_MOTO"],
                                     region_name="us-east-1") as s3:
        await s3.create_bucket(Bucket="aio-bucket")
        await s3.put_object(Bucket="aio-bucket", Key="k.txt", Body=b"BODY-SECRET")


async def failing_task():
    conn = await asyncpg.connect(PG)
    try:
        await conn.fetch("SELECT * FROM no_such_e2e_table")
    except asyncpg.UndefinedTableError as exc:
        print("caught", type(exc).__name__)
    finally:
        await conn.close()


async def main():
    await asyncio.gather(asyncpg_task(), psycopg_task(), aiosqlite_task(), sqlalchemy_task(),
                         aws_task(), failing_task())
    print("done")


asyncio.run(main())
'''


@pytest.fixture(scope="module")
def moto():
    proc, port = start_moto()
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def run_app(daemon, tmp_path, moto, **env):
    require_service("PostgreSQL", "127.0.0.1", 5432,
                    "start it with scripts/services.sh (apt-get install postgresql)")
    script = tmp_path / "jobs.py"
    script.write_text(APP)
    proc = subprocess.run(
        xray_run("python", str(script)), cwd=tmp_path, capture_output=True, text=True,
        timeout=90,
        env=agent_env(daemon, T_PG=f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/test",
                      T_PG_DSN=f"host=127.0.0.1 user=postgres dbname=test password={PASSWORD}",
                      T_DB=str(tmp_path / "jobs.db"), T_MOTO=moto,
                      AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_EC2_METADATA_DISABLED="true", **env))
    # the program's own behaviour is unchanged
    assert proc.stdout.split() == ["caught", "UndefinedTableError", "done"], proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "xray-autoinst" not in proc.stderr, proc.stderr
    return proc


def test_process_mode_records_each_call_once(daemon, tmp_path, moto):
    run_app(daemon, tmp_path, moto, XRAY_CONTEXT_MISSING="process")
    daemon.wait(1, timeout=15, predicate=lambda d: d.get("type") != "subsegment"
                and not d.get("in_progress"))
    time.sleep(0.3)
    docs = list(daemon.documents)
    for doc in docs:
        validate(doc)
    [final] = [d for d in docs if d.get("type") != "subsegment" and not d.get("in_progress")]
    assert final["name"] == "jobs"
    subs = [d for d in docs if d.get("type") == "subsegment"]
    for sub in subs:
        assert sub["parent_id"] == final["id"] and sub["trace_id"] == final["trace_id"]
        assert final["start_time"] <= sub["start_time"] <= sub["end_time"] <= final["end_time"]
    by_query = {}
    for sub in subs:
        if "sql" in sub:
            by_query.setdefault(sub["sql"].get("sanitized_query"), []).append(sub)
    # each statement of the program exactly once, with its driver's fields
    expected = {
        "SELECT $1::int + ? AS asyncpg_q, ?": "asyncpg",
        "SELECT %s::int AS psycopg_q, ?": "psycopg 3",
        "CREATE TABLE IF NOT EXISTS t (a TEXT)": "sqlite3",
        "INSERT INTO t VALUES (?)": "sqlite3",
        "SELECT $1 AS sqla_q": "asyncpg",
        "SELECT * FROM no_such_e2e_table": "asyncpg",
    }
    for query, driver in expected.items():
        assert len(by_query.get(query, [])) == 1, (query, sorted(by_query))
        sql = by_query[query][0]["sql"]
        assert sql["driver_version"].startswith(driver), sql
        if driver == "sqlite3":
            assert by_query[query][0]["name"] == "jobs.db"
        else:
            assert by_query[query][0]["name"] == "test@127.0.0.1"
            assert sql["url"] == "postgresql://postgres@127.0.0.1:5432/test"
    failed = by_query["SELECT * FROM no_such_e2e_table"][0]
    assert failed["fault"] is True
    assert failed["cause"]["exceptions"][0]["type"] == "UndefinedTableError"
    # asyncpg's pool reset and SQLAlchemy's transaction control are not statements
    assert not any("pg_advisory_unlock_all" in (q or "") or q in ("BEGIN", "ROLLBACK;")
                   for q in by_query)
    aws = [(s["name"], s["aws"]["operation"]) for s in subs if s.get("namespace") == "aws"]
    assert sorted(aws) == [("s3", "CreateBucket"), ("s3", "PutObject")]
    # the AWS call is the node: its HTTP exchange (aiohttp) is never a second subsegment
    assert not [s for s in subs if "http" in s and s.get("namespace") != "aws"]
    for s in subs:
        for inner in s.get("subsegments", []):
            assert "namespace" not in inner, inner  # connection phases at most
    for s in subs:
        if s.get("namespace") == "aws":
            assert s["aws"]["bucket_name"] == "aio-bucket" and s["aws"]["request_id"]
            assert s["http"]["response"]["status"] == 200
    raw = b"".join(daemon.datagrams)
    for secret in (PASSWORD, "lit-secret", "param-secret", "BODY-SECRET"):
        assert secret.encode() not in raw, secret


def test_nothing_recorded_outside_a_request_by_default(daemon, tmp_path, moto):
    proc = run_app(daemon, tmp_path, moto)
    time.sleep(0.5)
    assert daemon.documents == []
    assert proc.stderr == ""
