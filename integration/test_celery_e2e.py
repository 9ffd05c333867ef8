"""End to end: an unchanged WSGI application under ``xray-run gunicorn`` enqueues Celery tasks;
``xray-run celery -A proj worker`` (prefork, threads, solo) runs them, against the machine's
Redis and RabbitMQ. Checked on the documents reaching a loopback daemon: the worker's segment
continues the web request's trace with the publish subsegment as its parent, one segment per
task execution, a failing task is a fault with its cause, a retry is visible, the calls made in
the task are its subsegments, no argument or result is ever recorded."""

import json
import subprocess
import textwrap
import time
import uuid

import pytest
from xray_testing import (
    BIN,
    FakeDaemon,
    agent_env,
    free_port,
    http_get,
    stop,
    validate,
    wait_http,
    xray_run,
)

from conftest import require_service

PROJ = textwrap.dedent('''
    """A plain Celery application (no tracing code)."""
    import os
    import sqlite3

    from celery import Celery

    app = Celery("proj", broker=os.environ["T_BROKER"])
    app.conf.update(task_default_queue=os.environ["T_QUEUE"],
                    broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
                    task_ignore_result=True)


    @app.task
    def add(x, y):
        with sqlite3.connect(":memory:") as db:
            db.execute("SELECT ? + ?", (x, y)).fetchall()
        return f"RESULT-SECRET-{x + y}"


    @app.task
    def boom(secret):
        raise ValueError("the task failed")


    @app.task(bind=True, max_retries=2, default_retry_delay=0)
    def flaky(self):
        if self.request.retries == 0:
            raise self.retry(countdown=0)
        return "ok"
''')

WEB = textwrap.dedent('''
    """A plain WSGI application enqueueing tasks (no tracing code)."""
    import proj


    def app(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/add":
            proj.add.delay(2, 3)
        elif path == "/many":
            for i in range(10):
                proj.add.delay(i, i)
        elif path == "/boom":
            proj.boom.apply_async(args=("ARG-SECRET",))
        elif path == "/flaky":
            proj.flaky.delay()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
''')

BROKERS = {
    "redis": ("redis://127.0.0.1:6379/5", "Redis", 6379),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", "RabbitMQ", 5672),
}


@pytest.fixture(params=[("redis", "prefork"), ("redis", "threads"), ("redis", "solo"),
                        ("rabbitmq", "prefork"), ("rabbitmq", "threads")],
                ids=lambda p: "-".join(p))
def stack(request, tmp_path):
    broker_name, pool = request.param
    url, label, port = BROKERS[broker_name]
    require_service(label, "127.0.0.1", port, f"start {label} on 127.0.0.1:{port}")
    (tmp_path / "proj.py").write_text(PROJ)
    (tmp_path / "web.py").write_text(WEB)
    daemon = FakeDaemon()
    queue = "xray-" + uuid.uuid4().hex[:10]
    base = {"T_BROKER": url, "T_QUEUE": queue}
    web_port = free_port()
    web = subprocess.Popen(
        xray_run(str(BIN / "gunicorn"), "-b", f"127.0.0.1:{web_port}", "-w", "1", "web:app"),
        cwd=tmp_path, env=agent_env(daemon, XRAY_SERVICE_NAME="web", **base),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # as a user types it; no XRAY_SERVICE_NAME: the segments take the application's name
    worker = subprocess.Popen(
        xray_run("celery", "-A", "proj", "worker", f"--pool={pool}", "--concurrency=2",
                 "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "--loglevel=WARNING"),
        cwd=tmp_path, env=agent_env(daemon, XRAY_CONTEXT_MISSING="process", **base),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(web_port, "/warmup", proc=web)
        daemon.wait(1, predicate=lambda d: d.get("name") == "web")
        yield {"port": web_port, "daemon": daemon, "pool": pool}
    finally:
        out = stop(worker, timeout=20) + stop(web)
        daemon.close()
        # Celery logs the failing task's traceback itself; none may come from the agent
        assert "xray_autoinst" not in out and "xray-autoinst:" not in out, out
        for d in daemon.documents:
            validate(d)
            text = json.dumps(d)
            assert "SECRET" not in text, d


def request(stack, path, count=1):
    assert http_get(stack["port"], path)[0] == 200
    [doc] = stack["daemon"].wait(1, timeout=20, predicate=lambda d: d.get("name") == "web" and d[
        "http"]["request"]["url"].endswith(path))
    validate(doc)
    pubs = doc["subsegments"]
    assert len(pubs) == count and all(p["namespace"] == "remote" for p in pubs)
    return (doc, pubs[0]) if count == 1 else (doc, pubs)


def executions(stack, doc, count):
    docs = stack["daemon"].wait(count, timeout=30, predicate=lambda d: d.get("name") == "proj"
                                and d["trace_id"] == doc["trace_id"])
    for d in docs:
        validate(d)
    return sorted(docs, key=lambda d: d["start_time"])


def test_task_continues_the_web_request_trace(stack):
    doc, pub = request(stack, "/add")
    assert pub["name"] == "proj.add"
    [seg] = executions(stack, doc, 1)
    assert seg["parent_id"] == pub["id"]
    assert seg["annotations"]["celery_task"] == "proj.add"
    assert seg["annotations"]["celery_task_id"] == pub["metadata"]["celery"]["id"]
    assert seg["annotations"]["celery_state"] == "SUCCESS"
    assert seg["annotations"]["celery_retries"] == 0
    assert not seg.get("fault")
    # the call made in the task is its subsegment
    assert [s.get("sql", {}).get("database_type") for s in seg["subsegments"]] == ["sqlite"]
    # the worker loop itself (XRAY_CONTEXT_MISSING=process) is no never-ending segment
    assert not [d for d in stack["daemon"].documents if d.get("in_progress")]


def test_one_segment_per_task_execution(stack):
    doc, pubs = request(stack, "/many", count=10)
    segs = executions(stack, doc, 10)
    time.sleep(0.5)
    assert len(executions(stack, doc, 10)) == 10  # exactly one each
    assert sorted(s["parent_id"] for s in segs) == sorted(p["id"] for p in pubs)
    assert len({s["annotations"]["celery_task_id"] for s in segs}) == 10


def test_failing_task_is_a_fault_with_its_cause(stack):
    doc, pub = request(stack, "/boom")
    [seg] = executions(stack, doc, 1)
    assert seg["parent_id"] == pub["id"]
    assert seg["fault"] is True
    assert seg["annotations"]["celery_state"] == "FAILURE"
    [exc] = seg["cause"]["exceptions"]
    assert exc["type"] == "ValueError" and exc["message"] == "the task failed"


def test_retry_is_visible_and_continues_the_trace(stack):
    doc, pub = request(stack, "/flaky")
    first, second = executions(stack, doc, 2)
    assert first["parent_id"] == pub["id"]
    assert first["annotations"]["celery_state"] == "RETRY"
    assert first["annotations"]["celery_retries"] == 0
    [retry_pub] = [s for s in first["subsegments"] if s["name"] == "proj.flaky"]
    assert second["parent_id"] == retry_pub["id"]
    assert second["annotations"]["celery_retries"] == 1
    assert second["annotations"]["celery_state"] == "SUCCESS"
