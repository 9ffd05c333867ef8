"""End to end: an unchanged WSGI application under ``xray-run gunicorn`` sends SQS messages to a
moto server (which does not copy the HTTP trace header into ``AWSTraceHeader``: the chain works
only through the attribute the agent sets); an unchanged polling worker under ``xray-run python``
handles them, in a plain loop or in a thread pool, with ``XRAY_CONTEXT_MISSING=process``.
Checked on the documents reaching a loopback daemon: each message is one segment continuing the
web request's trace with its SendMessage subsegment as parent, the calls made while handling it
are its subsegments, empty polls record nothing, the worker loop is no never-ending segment, a
failing handler's segment is a fault, no message body is ever recorded."""

import json
import subprocess
import textwrap
import time
import uuid

import pytest
from test_http_servers import start_moto
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

WEB = textwrap.dedent('''
    """A plain WSGI application enqueueing work (no tracing code)."""
    import os
    from urllib.parse import parse_qs

    import boto3

    sqs = boto3.client("sqs", endpoint_url=os.environ["T_MOTO"])
    URL = sqs.create_queue(QueueName=os.environ["T_QUEUE"])["QueueUrl"]


    def app(environ, start_response):
        q = parse_qs(environ.get("QUERY_STRING", ""))
        if environ["PATH_INFO"] == "/enqueue":
            for i in range(int(q.get("n", ["1"])[0])):
                body = "FAIL-SECRET" if q.get("fail") else "BODY-SECRET"
                sqs.send_message(QueueUrl=URL, MessageBody=f"{body}-{i}")
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
''')

WORKER = textwrap.dedent('''
    """A plain SQS worker (no tracing code): poll, handle, delete."""
    import os
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    sqs = boto3.client("sqs", endpoint_url=os.environ["T_MOTO"])
    URL = sqs.create_queue(QueueName=os.environ["T_QUEUE"])["QueueUrl"]
    POOL = ThreadPoolExecutor(4) if os.environ["T_MODE"] == "pool" else None


    def handle(msg):
        with sqlite3.connect(":memory:") as db:
            db.execute("SELECT length(?)", (msg["Body"],)).fetchall()
        if "FAIL" in msg["Body"]:
            raise ValueError("cannot handle this message")
        sqs.delete_message(QueueUrl=URL, ReceiptHandle=msg["ReceiptHandle"])


    while True:
        resp = sqs.receive_message(QueueUrl=URL, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                   VisibilityTimeout=600)
        if POOL is None:
            for msg in resp.get("Messages", []):
                try:
                    handle(msg)
                except ValueError:
                    pass  # left on the queue for another try
        else:
            futures = [POOL.submit(handle, m) for m in resp.get("Messages", [])]
            for f in futures:
                f.exception()
''')


@pytest.fixture(scope="module")
def moto():
    proc, port = start_moto()
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(params=["loop", "pool"])
def stack(request, moto, tmp_path):
    (tmp_path / "web.py").write_text(WEB)
    (tmp_path / "worker.py").write_text(WORKER)
    daemon = FakeDaemon()
    base = {"T_MOTO": moto, "T_QUEUE": "jobs-" + uuid.uuid4().hex[:8], "T_MODE": request.param,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    port = free_port()
    web = subprocess.Popen(
        xray_run(str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "1", "web:app"),
        cwd=tmp_path, env=agent_env(daemon, XRAY_SERVICE_NAME="web", **base),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    worker = subprocess.Popen(
        xray_run("python", "worker.py"), cwd=tmp_path,
        env=agent_env(daemon, XRAY_CONTEXT_MISSING="process", **base),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(port, "/warmup", proc=web)
        yield {"port": port, "daemon": daemon, "mode": request.param}
    finally:
        out = stop(worker) + stop(web)
        daemon.close()
        assert "Traceback" not in out, out
        for d in daemon.documents:
            validate(d)
            assert "SECRET" not in json.dumps(d), d
        assert not daemon.bad


def enqueue(stack, n, fail=False):
    path = f"/enqueue?n={n}" + ("&fail=1" if fail else "")
    assert http_get(stack["port"], path)[0] == 200
    [doc] = stack["daemon"].wait(1, timeout=20, predicate=lambda d: d.get("name") == "web" and d[
        "http"]["request"]["url"].endswith(path))
    sends = [s for s in doc["subsegments"] if s["aws"]["operation"] == "SendMessage"]
    assert len(sends) == n
    return doc, sends


def consumed(stack, doc, n):
    docs = stack["daemon"].wait(n, timeout=30, predicate=lambda d: d.get("name") == "worker"
                                and d.get("trace_id") == doc["trace_id"])
    for d in docs:
        validate(d)
    return docs


def test_each_message_continues_its_producer(stack):
    doc, sends = enqueue(stack, 10)
    segs = consumed(stack, doc, 10)
    time.sleep(1.5)  # a few more polls, now empty
    assert len(consumed(stack, doc, 10)) == 10  # exactly one per message
    assert sorted(s["parent_id"] for s in segs) == sorted(s["id"] for s in sends)
    for s in segs:
        assert "subsegments" in s, s
        ops = [c.get("aws", {}).get("operation") or c.get("sql", {}).get("database_type")
               for c in s["subsegments"]]
        assert ops == ["sqlite", "DeleteMessage"], ops
        assert s["annotations"]["sqs_queue"].startswith("jobs-")
        assert s["metadata"]["sqs"]["message_id"]
        assert not s.get("fault")
    everything = json.dumps(stack["daemon"].documents)
    assert "ReceiveMessage" not in everything  # polls, empty or not, are never recorded
    # XRAY_CONTEXT_MISSING=process: the process segment ended with the start-up
    worker_docs = [d for d in stack["daemon"].documents if d.get("name") == "worker"]
    process = [d for d in worker_docs if d["trace_id"] != doc["trace_id"]]
    assert process and all(d.get("in_progress") or d.get("end_time") for d in process)
    ended = {d["id"] for d in process if d.get("end_time")}
    assert {d["id"] for d in process if d.get("in_progress")} <= ended


# a thread-pool worker: an exception a plain loop catches itself is not seen (docs/queues.md)
@pytest.mark.parametrize("stack", ["pool"], indirect=True)
def test_a_failing_handler_is_a_fault(stack):
    doc, sends = enqueue(stack, 2, fail=True)
    segs = consumed(stack, doc, 2)
    for s in segs:
        assert s["fault"] is True
        [exc] = s["cause"]["exceptions"]
        assert exc["type"] == "ValueError"
        assert [c.get("sql", {}).get("database_type") for c in s["subsegments"]] == ["sqlite"]
