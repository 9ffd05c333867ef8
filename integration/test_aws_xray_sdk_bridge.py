"""An application already instrumented with aws-xray-sdk (``patch_all()``, the SDK's Flask
middleware, ``capture``, ``in_subsegment``, annotations, metadata) under ``xray-run gunicorn``:
one segment per request, the SDK's subsegments nested in it, no call recorded twice, nothing
sent by the SDK itself. The SDK sends to ``AWS_XRAY_DAEMON_ADDRESS`` as the agent does, so every
datagram the daemon receives is counted and must be one of the agent's documents; the SDK's
sampling poller would connect to the daemon's TCP address, where a listener counts connections.
"""

import http.server
import json
import socket
import subprocess
import threading
import time

import pytest
from xray_testing import (
    BIN,
    ROOT,
    agent_env,
    free_port,
    http_get,
    need,
    stop,
    validate,
    wait_http,
    xray_run,
)

need("aws_xray_sdk")
need("flask")
need("requests")

APPS = ROOT / "integration" / "apps"
TRACE_ROOT = "1-5759e988-bd862e3fe1be46a994272793"


class Downstream:
    """A loopback HTTP server recording the trace header of each request."""

    def __init__(self):
        seen = self.headers = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append(self.headers.get("X-Amzn-Trace-Id"))
                body = b"downstream ok"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # an AWS JSON endpoint (DynamoDB ListTables)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append(self.headers.get("X-Amzn-Trace-Id"))
                body = b'{"TableNames": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("x-amzn-RequestId", "req-1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class SamplingProxy:
    """A TCP listener where the SDK's sampling poller would connect (the daemon's TCP port)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self):
        self.sock.close()


@pytest.fixture
def sdk_app(daemon):
    """Start sdkapp under xray-run gunicorn; yield a function starting it (extra env)."""
    proxy = SamplingProxy()
    downstream = Downstream()
    procs = []
    quiet = []  # the output of these processes must show nothing from the agent or the SDK

    def start(**extra):
        port = free_port()
        env = agent_env(
            daemon,
            XRAY_SERVICE_NAME="orders",
            AWS_XRAY_DAEMON_ADDRESS=f"udp:{daemon.address} tcp:127.0.0.1:{proxy.port}",
            OUTBOUND_PORT=downstream.port,
            **extra,
        )
        cmd = xray_run(str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "--workers", "1",
                       "sdkapp:app")
        p = subprocess.Popen(cmd, cwd=APPS, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        procs.append(p)
        if not extra:
            quiet.append(p)
        wait_http(port, "/warmup", proc=p)
        return port

    yield start, proxy, downstream
    for p in procs:
        out = stop(p)
        if p in quiet:  # nothing logged by the agent or the SDK (the app's /boom traceback aside)
            for marker in ("xray-autoinst:", "xray_autoinst", "aws_xray_sdk", "segment"):
                assert marker not in out, out
    proxy.close()
    downstream.close()


def walk(entity):
    for sub in entity.get("subsegments", ()):
        yield sub
        yield from walk(sub)


def test_sdk_application_joins_the_agent_trace(daemon, sdk_app):
    start, proxy, downstream = sdk_app
    port = start()
    daemon.wait(1)  # the warm-up request
    daemon.clear()

    n = 5
    for i in range(1, n + 1):
        status, headers, body = http_get(port, f"/order/{i}")
        assert status == 200 and body == str(sum(range(i))).encode()
        values = [v for k, v in headers.items() if k.lower() == "x-amzn-trace-id"]
        assert len(values) == 1 and values[0].startswith("Root=1-"), headers
    docs = daemon.wait(n)
    # a warm-up retried under load may arrive late: it is not one of these requests
    late = [d for d in daemon.documents if d["http"]["request"]["url"].endswith("/warmup")]
    docs = [d for d in daemon.documents if d not in late]
    assert len(docs) == n, daemon.documents  # one document, one segment each
    assert daemon.bad == [] and len(daemon.datagrams) == n + len(late)  # nothing from the SDK
    assert len({d["trace_id"] for d in docs}) == n and len({d["id"] for d in docs}) == n
    for doc in docs:
        validate(doc)
        assert doc["name"] == "orders" and "type" not in doc
        assert doc["aws"]["xray"]["sdk"] == "xray-autoinst"
        i = int(doc["http"]["request"]["url"].rsplit("/", 1)[1])
        assert doc["http"]["response"]["status"] == 200
        # the application's own annotation, beside the agent's route annotation (Flask's rule)
        assert doc["annotations"] == {"route": "order", "http_route": "/order/<int:n>"}
        [block] = doc["subsegments"]
        assert block["name"] == "block"
        assert block["annotations"] == {"order_id": i}
        assert block["metadata"] == {"app": {"request": {"n": i}}}
        names = [s["name"] for s in block["subsegments"]]
        assert sorted(names) == [":memory:", "work"], names
        work = next(s for s in block["subsegments"] if s["name"] == "work")
        assert work["annotations"] == {"work_n": i}
        sql = [s for s in walk(doc) if "sql" in s]
        assert len(sql) == 1, sql  # the sqlite3 call, recorded once (patch_all skipped it)
        assert sql[0]["sql"]["sanitized_query"] == "SELECT ?"
        assert sql[0]["namespace"] == "remote"

    # an outbound call through requests (patched by patch_all without the agent): one
    # subsegment, whose id goes downstream as Parent
    daemon.clear()
    status, _h, body = http_get(port, "/fetch")
    assert status == 200 and body == b"downstream ok"
    [doc] = daemon.wait(1)
    validate(doc)
    calls = [s for s in walk(doc) if "http" in s]
    assert len(calls) == 1, doc
    assert calls[0]["http"]["request"]["url"] == f"http://127.0.0.1:{downstream.port}/downstream"
    assert downstream.headers[-1] == f"Root={doc['trace_id']};Parent={calls[0]['id']};Sampled=1"

    # an AWS call through boto3 (botocore patched by patch_all without the agent): one
    # subsegment
    daemon.clear()
    status, _h, body = http_get(port, "/aws")
    assert status == 200 and body == b"listed"
    [doc] = daemon.wait(1)
    validate(doc)
    aws_calls = [s for s in walk(doc) if s.get("namespace") == "aws"]
    assert len(aws_calls) == 1, doc
    assert aws_calls[0]["name"] == "dynamodb"
    assert aws_calls[0]["aws"]["operation"] == "ListTables"
    assert not [s for s in walk(doc) if s.get("namespace") == "remote"], doc
    assert downstream.headers[-1].startswith(f"Root={doc['trace_id']};Parent={aws_calls[0]['id']}")

    # a failure inside an SDK subsegment: one segment, the fault on both, the cause recorded
    daemon.clear()
    assert http_get(port, "/boom")[0] == 500
    [doc] = daemon.wait(1)
    validate(doc)
    assert doc["fault"] is True and doc["http"]["response"]["status"] == 500
    assert doc["cause"]["exceptions"][0]["type"] == "ValueError"
    [step] = doc["subsegments"]
    assert step["name"] == "failing-step" and step["fault"] is True
    assert step["cause"]["exceptions"][0]["message"] == "sdk app failed"

    # an unsampled request: the SDK's code runs on dummies, nothing is sent, Sampled=0 goes on
    daemon.clear()
    status, headers, body = http_get(port, "/order/3", {"X-Amzn-Trace-Id": f"Root={TRACE_ROOT};"
                                                        "Parent=53995c3f42cd8ad8;Sampled=0"})
    assert status == 200 and body == b"3"
    status, _h, _b = http_get(port, "/fetch", {"X-Amzn-Trace-Id": f"Root={TRACE_ROOT};Sampled=0"})
    assert status == 200
    assert downstream.headers[-1].startswith(f"Root={TRACE_ROOT};Parent=")
    assert downstream.headers[-1].endswith(";Sampled=0")

    # an incoming trace is continued by the one segment (and the unsampled requests above
    # sent nothing: the worker's documents arrive in order)
    http_get(port, "/order/2", {"X-Amzn-Trace-Id": f"Root={TRACE_ROOT};Parent=53995c3f42cd8ad8;"
                                "Sampled=1"})
    [doc] = daemon.wait(1)
    assert doc["trace_id"] == TRACE_ROOT and doc["parent_id"] == "53995c3f42cd8ad8"

    # the SDK sent nothing: every datagram is one of the agent's documents, and its sampling
    # poller never connected
    assert daemon.bad == [] and len(daemon.datagrams) == len(daemon.documents) == 1
    assert all(d["aws"]["xray"]["sdk"] == "xray-autoinst" for d in daemon.documents)
    assert proxy.connections == 0


def test_without_the_bridge_the_same_application_is_traced_twice(daemon, sdk_app):
    """The control: with the bridge turned off the SDK sends a segment of its own for the same
    request (its header line differs from the agent's: the fake daemon files it under ``bad``)
    and polls for sampling rules -- what the test above shows the bridge prevents."""
    start, proxy, downstream = sdk_app
    port = start(XRAY_DISABLED_INSTRUMENTATIONS="aws_xray_sdk")
    daemon.wait(1)
    daemon.clear()
    assert http_get(port, "/order/4")[0] == 200
    [agent_doc] = daemon.wait(1)
    deadline = time.monotonic() + 10
    while not daemon.bad and time.monotonic() < deadline:
        time.sleep(0.05)
    sdk_docs = [json.loads(b.split(b"\n", 1)[1]) for b in list(daemon.bad)]
    assert [d["name"] for d in sdk_docs] == ["sdk-app"]
    assert sdk_docs[0]["http"]["request"]["url"].endswith("/order/4")
    assert agent_doc["name"] == "orders" and agent_doc["trace_id"] != sdk_docs[0]["trace_id"]
    assert not any(s["name"] == "block" for s in walk(agent_doc))
    assert proxy.connections >= 1
