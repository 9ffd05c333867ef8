"""End to end: an unchanged WSGI application under ``xray-run gunicorn`` querying PostgreSQL
through psycopg 3, psycopg_pool and psycopg2, and sqlite3; the documents that reach the
loopback daemon hold one subsegment per statement inside the request's segment, with the sql
fields, no password and no literal anywhere."""

import subprocess

import pytest
from xray_testing import agent_env, free_port, http_get, stop, validate, wait_http, xray_run

from conftest import require_service

PASSWORD = "e2e-secret-pw"
DSN = f"host=127.0.0.1 port=5432 user=postgres dbname=test password={PASSWORD}"

APP = r'''
import json
import os
import sqlite3

import psycopg
import psycopg2
import psycopg2.extras
import psycopg_pool

DSN = os.environ["SQLAPP_DSN"]
DB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shop.db")
POOL = psycopg_pool.ConnectionPool(DSN, min_size=1, max_size=2, open=True)

with sqlite3.connect(DB) as conn:  # start-up code: outside any request
    conn.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO items (name) VALUES ('start-up-secret')")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    body = {}
    status = "200 OK"
    if path == "/orders":
        with psycopg.connect(DSN) as conn:
            body["pg3"] = conn.execute(
                "SELECT %s::int + 1, 'literal-secret-1'", (41,)).fetchone()[0]
        with POOL.connection() as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_class WHERE relname IN ('a', 'b', 'c')")
                body["pool"] = cur.fetchone()[0]
        conn2 = psycopg2.connect(DSN)
        with conn2:
            with conn2.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute("SELECT 'literal-secret-2' AS s, %s AS p", ("param-secret",))
                body["pg2"] = cur.fetchone()["p"]
        conn2.close()
        with sqlite3.connect(DB) as db:
            body["sqlite"] = db.execute(
                "SELECT count(*) FROM items WHERE name <> 'literal-secret-3'").fetchone()[0]
    elif path == "/fail":
        with psycopg.connect(DSN) as conn:
            conn.execute("SELECT * FROM table_that_does_not_exist")
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))])
    return [data]
'''


@pytest.fixture
def server(daemon, tmp_path):
    require_service("PostgreSQL", "127.0.0.1", 5432,
                    "start it with scripts/services.sh (apt-get install postgresql)")
    (tmp_path / "sqlapp.py").write_text(APP)
    port = free_port()
    proc = subprocess.Popen(
        xray_run("gunicorn", "-b", f"127.0.0.1:{port}", "-w", "1", "sqlapp:app"),
        cwd=tmp_path, env=agent_env(daemon, SQLAPP_DSN=DSN, XRAY_SERVICE_NAME="shop"),
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


def test_request_with_postgres_and_sqlite(daemon, server):
    port, _proc = server
    status, _headers, body = http_get(port, "/orders")
    assert status == 200, body
    assert b'"pg3": 42' in body and b'"pg2": "param-secret"' in body
    doc = request_doc(daemon, "/orders")
    assert doc["name"] == "shop"
    subs = doc["subsegments"]
    for sub in subs:
        validate(dict(sub, trace_id=doc["trace_id"], parent_id=doc["id"], type="subsegment"))
        assert doc["start_time"] <= sub["start_time"] <= sub["end_time"] <= doc["end_time"]
        assert sub["namespace"] == "remote"
        assert "subsegments" not in sub  # a statement is a leaf
    assert [(s["name"], s["sql"]["sanitized_query"]) for s in subs] == [
        ("test@127.0.0.1", "SELECT %s::int + ?, ?"),
        ("test@127.0.0.1", "SELECT count(*) FROM pg_class WHERE relname IN (?)"),
        ("test@127.0.0.1", "SELECT ? AS s, %s AS p"),
        ("shop.db", "SELECT count(*) FROM items WHERE name <> ?"),
    ]
    pg = [s["sql"] for s in subs[:3]]
    for sql in pg:
        assert sql["url"] == "postgresql://postgres@127.0.0.1:5432/test"
        assert sql["database_type"] == "PostgreSQL"
        assert sql["user"] == "postgres"
        assert sql["preparation"] == "statement"
        assert sql["database_version"][:2].isdigit()
    assert pg[0]["driver_version"].startswith("psycopg 3")
    assert pg[2]["driver_version"].startswith("psycopg2 2")
    lite = subs[3]["sql"]
    assert lite["database_type"] == "sqlite" and lite["url"].endswith("/shop.db")
    # nothing secret in any datagram the agent sent
    raw = b"".join(daemon.datagrams)
    for secret in (PASSWORD, "literal-secret", "param-secret", "start-up-secret"):
        assert secret.encode() not in raw, secret
    # start-up statements outside a request were not recorded (XRAY_CONTEXT_MISSING=ignore)
    assert all(d.get("http") for d in daemon.documents)


def test_failing_statement_in_a_request(daemon, server):
    port, _proc = server
    status, _headers, _body = http_get(port, "/fail")
    assert status == 500  # gunicorn logs the driver's UndefinedTable with its traceback
    doc = request_doc(daemon, "/fail")
    assert doc["fault"] is True
    [sub] = doc["subsegments"]
    assert sub["name"] == "test@127.0.0.1"
    assert sub["fault"] is True
    [ex] = sub["cause"]["exceptions"]
    assert ex["type"] == "UndefinedTable"
    assert ex["remote"] is True
    assert "table_that_does_not_exist" in ex["message"]
    assert sub["sql"]["sanitized_query"] == "SELECT * FROM table_that_does_not_exist"
    # the application saw the driver's own exception: the segment's cause names it too
    assert doc["cause"]["exceptions"][0]["type"] == "UndefinedTable"
