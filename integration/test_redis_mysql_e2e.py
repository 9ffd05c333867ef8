"""End to end: an unchanged WSGI application under ``xray-run gunicorn`` using Redis (commands,
a pipeline, a transaction), PyMySQL, mysqlclient and SQLAlchemy over PyMySQL against the
machine's Redis and MariaDB; and an asyncio program using redis.asyncio under
``XRAY_CONTEXT_MISSING=process``. The documents that reach the loopback daemon hold one
subsegment per command, pipeline or statement inside the request's segment, with the right
names and fields, and no value, key, literal or password in any datagram."""

import subprocess

import pytest
from xray_testing import agent_env, free_port, http_get, need, stop, validate, wait_http, xray_run

from conftest import require_service

need("redis")
need("pymysql")

VALUE = "e2e-redis-value-secret"
KEY = "e2e-redis-key-secret"

APP = r'''
import json

import MySQLdb
import pymysql
import redis
import sqlalchemy
from sqlalchemy import text

R = redis.Redis(host="127.0.0.1", port=6379, db=5)
ENGINE = sqlalchemy.create_engine("mysql+pymysql://root@127.0.0.1:3306/test")
R.set("startup-key", "start-up-secret")  # start-up code: outside any request
with ENGINE.connect() as c:
    c.execute(text("SELECT 'start-up-secret'"))
KEY, VALUE = "%s", "%s"


def app(environ, start_response):
    path = environ["PATH_INFO"]
    body = {}
    if path == "/cache":
        R.set(KEY, VALUE)
        body["get"] = R.get(KEY).decode()
        with R.pipeline(transaction=False) as pipe:
            pipe.get(KEY).strlen(KEY)
            body["pipe"] = pipe.execute()[1]
        with R.pipeline() as pipe:
            pipe.set(KEY, VALUE).delete(KEY)
            body["multi"] = pipe.execute()
        conn = pymysql.connect(host="127.0.0.1", user="root", database="test")
        with conn.cursor() as cur:
            cur.execute("SELECT %%s, 'literal-secret-1'", ("param-secret",))
            body["pymysql"] = cur.fetchone()[0]
        conn.close()
        conn = MySQLdb.connect(host="127.0.0.1", user="root", database="test")
        cur = conn.cursor()
        cur.execute("SELECT 41 + 1, \"literal-secret-2\"")
        body["mysqlclient"] = cur.fetchone()[0]
        conn.close()
        with ENGINE.connect() as c:
            body["sqlalchemy"] = c.execute(
                text("SELECT :p, 'literal-secret-3'"), {"p": "param-secret"}).scalar()
    elif path == "/fail":
        R.set(KEY, VALUE)
        try:
            R.lpush(KEY, VALUE)
        finally:
            R.delete(KEY)
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]
''' % (KEY, VALUE)

ASYNC_PROGRAM = r'''
import asyncio

import redis.asyncio as redis


async def main():
    client = redis.Redis(host="127.0.0.1", port=6379)
    await client.set("%s", "%s")
    async with client.pipeline() as pipe:
        pipe.get("%s").delete("%s")
        await pipe.execute()
    await (getattr(client, "aclose", None) or client.close)()  # aclose: redis-py 5.0.1+


asyncio.run(main())
''' % (KEY, VALUE, KEY, KEY)


def _services():
    require_service("Redis", "127.0.0.1", 6379,
                    "start it with scripts/services.sh (apt-get install redis-server)")
    require_service("MariaDB", "127.0.0.1", 3306,
                    "start it with scripts/services.sh (apt-get install mariadb-server)")


@pytest.fixture
def server(daemon, tmp_path):
    _services()
    need("MySQLdb")
    need("sqlalchemy")
    (tmp_path / "cacheapp.py").write_text(APP)
    port = free_port()
    proc = subprocess.Popen(
        xray_run("gunicorn", "-b", f"127.0.0.1:{port}", "-w", "1", "cacheapp:app"),
        cwd=tmp_path, env=agent_env(daemon, XRAY_SERVICE_NAME="cacheapp"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(port, "/warmup", proc=proc)
        daemon.wait(1, predicate=lambda d: d.get("http", {}).get("request", {})
                    .get("url", "").endswith("/warmup"))
        yield port, proc
    finally:
        out = stop(proc)
        assert "xray-autoinst" not in out, out  # the agent had nothing to complain about


def request_doc(daemon, path):
    [doc] = daemon.wait(1, timeout=15, predicate=lambda d: d.get("http", {}).get(
        "request", {}).get("url", "").endswith(path))
    validate(doc)
    return doc


def test_request_with_redis_and_mysql(daemon, server):
    port, _proc = server
    status, _headers, body = http_get(port, "/cache")
    assert status == 200, body
    assert b'"pymysql": "param-secret"' in body and b'"mysqlclient": 42' in body
    doc = request_doc(daemon, "/cache")
    assert doc["name"] == "cacheapp"
    subs = doc["subsegments"]
    for sub in subs:
        validate(dict(sub, trace_id=doc["trace_id"], parent_id=doc["id"], type="subsegment"))
        assert doc["start_time"] <= sub["start_time"] <= sub["end_time"] <= doc["end_time"]
        assert sub["namespace"] == "remote"
        assert "subsegments" not in sub
    redis_subs = [s for s in subs if "redis" in s.get("metadata", {})]
    assert [(s["name"], s["metadata"]["redis"]["command"],
             s["metadata"]["redis"].get("commands")) for s in redis_subs] == [
        ("redis@127.0.0.1:6379", "SET", None),
        ("redis@127.0.0.1:6379", "GET", None),
        ("redis@127.0.0.1:6379", "PIPELINE", ["GET", "STRLEN"]),
        ("redis@127.0.0.1:6379", "MULTI", ["SET", "DEL"]),
    ]
    assert all(s["metadata"]["redis"]["url"] == "redis://127.0.0.1:6379/5" for s in redis_subs)
    sql = [s for s in subs if "sql" in s]
    assert [(s["name"], s["sql"]["sanitized_query"], s["sql"]["driver_version"].split()[0])
            for s in sql] == [
        ("test@127.0.0.1", "SELECT %s, ?", "PyMySQL"),
        ("test@127.0.0.1", "SELECT ? + ?, ?", "mysqlclient"),
        ("test@127.0.0.1", "SELECT %(p)s, ?", "PyMySQL"),  # SQLAlchemy: the driver's, once
    ]
    for s in sql:
        assert s["sql"]["url"] == "mysql://root@127.0.0.1:3306/test"
        assert s["sql"]["database_type"] == "MariaDB"
        assert s["sql"]["user"] == "root"
    assert len(subs) == len(redis_subs) + len(sql)
    raw = b"".join(daemon.datagrams)
    for secret in (VALUE, KEY, "literal-secret", "param-secret", "start-up-secret",
                   "startup-key"):
        assert secret.encode() not in raw, secret
    # start-up calls outside a request were not recorded (XRAY_CONTEXT_MISSING=ignore)
    assert all(d.get("http") for d in daemon.documents)


def test_redis_error_in_a_request(daemon, server):
    port, _proc = server
    status, _headers, _body = http_get(port, "/fail")
    assert status == 500  # gunicorn logs redis-py's ResponseError
    doc = request_doc(daemon, "/fail")
    assert doc["fault"] is True
    names = [s["metadata"]["redis"]["command"] for s in doc["subsegments"]]
    assert names == ["SET", "LPUSH", "DEL"]
    failed = doc["subsegments"][1]
    assert failed["fault"] is True
    [ex] = failed["cause"]["exceptions"]
    assert ex["type"] == "ResponseError" and ex["remote"] is True
    assert ex["message"].startswith("WRONGTYPE")
    # the request failed of the same ResponseError: recorded once, the segment refers to it
    assert doc["cause"] == ex["id"]
    raw = b"".join(daemon.datagrams)
    assert VALUE.encode() not in raw and KEY.encode() not in raw


def test_asyncio_program_under_context_missing_process(daemon, tmp_path):
    require_service("Redis", "127.0.0.1", 6379,
                    "start it with scripts/services.sh (apt-get install redis-server)")
    (tmp_path / "worker.py").write_text(ASYNC_PROGRAM)
    proc = subprocess.run(
        xray_run("python", "worker.py"), cwd=tmp_path, capture_output=True, text=True,
        env=agent_env(daemon, XRAY_CONTEXT_MISSING="process"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    docs = daemon.wait(2, timeout=15, predicate=lambda d: d.get("type") == "subsegment")
    daemon.wait(1, timeout=15, predicate=lambda d: d.get("type") != "subsegment"
                and "end_time" in d)  # the process segment, ended at exit
    subs = []
    for d in daemon.documents:
        validate(d)
        if d.get("type") == "subsegment":
            subs.append(d)
        subs += d.get("subsegments", [])
    got = [(s["name"], s["metadata"]["redis"]["command"], s["metadata"]["redis"].get("commands"))
           for s in sorted(subs, key=lambda s: s["start_time"])]
    assert got == [("redis@127.0.0.1:6379", "SET", None),
                   ("redis@127.0.0.1:6379", "MULTI", ["GET", "DEL"])], (got, docs)
    seg_ids = {d["id"] for d in daemon.documents if d.get("type") != "subsegment"}
    assert all(s["parent_id"] in seg_ids for s in subs if s.get("type") == "subsegment")
    raw = b"".join(daemon.datagrams)
    assert VALUE.encode() not in raw and KEY.encode() not in raw
