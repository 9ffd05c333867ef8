"""Every WSGI server traced with no code change: real servers under `xray-run`, real sockets,
a loopback UDP listener for the daemon."""

import subprocess
import sys

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

APPS = ROOT / "integration" / "apps"
PY = sys.executable


def start(cmd, daemon, cwd=APPS, **env):
    port = free_port()
    full = [c.replace("{port}", str(port)) for c in cmd]
    p = subprocess.Popen(xray_run(*full), cwd=cwd, env=agent_env(daemon, **env),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(port, "/warmup", proc=p)
    except BaseException:
        stop(p)
        raise
    return p, port


def exercise(port, daemon, expect_name, n_ok=6):
    """Serve a mix of requests; assert one valid segment per request with the right flags."""
    daemon.wait(1)  # the warm-up request
    daemon.clear()
    expected = {}
    for i in range(n_ok):
        status, headers, body = http_get(port, f"/ok{i}")
        assert status == 200
        expected[f"/ok{i}"] = (200, set())
    assert http_get(port, "/missing")[0] == 404
    expected["/missing"] = (404, {"error"})
    assert http_get(port, "/boom")[0] == 500
    expected["/boom"] = (500, {"fault"})
    docs = daemon.wait(len(expected), timeout=15)
    assert len(docs) == len(expected), docs
    for doc in docs:
        validate(doc)
        assert doc["name"] == expect_name
        path = "/" + doc["http"]["request"]["url"].split("/", 3)[3]
        status, flags = expected.pop(path)
        assert doc["http"]["response"]["status"] == status
        assert {f for f in ("error", "fault", "throttle") if doc.get(f)} == flags
        assert doc["http"]["request"]["method"] == "GET"
        assert doc["http"]["request"]["client_ip"] == "127.0.0.1"
        if path == "/boom":
            assert doc["cause"]["exceptions"][0]["type"] in ("RuntimeError", "ValueError")
    assert not expected
    assert len({d["id"] for d in docs}) == len(docs)
    assert len({d["trace_id"] for d in docs}) == len(docs)
    return docs


GUNICORN = [str(BIN / "gunicorn"), "-b", "127.0.0.1:{port}", "--workers", "2"]


@pytest.mark.parametrize(
    "extra",
    [[], ["--preload"], ["--worker-class", "gthread", "--threads", "4"],
     ["--preload", "--worker-class", "gthread", "--threads", "2"]],
    ids=["sync", "sync-preload", "gthread", "gthread-preload"],
)
def test_gunicorn(daemon, extra):
    p, port = start(GUNICORN + extra + ["plainapp:app"], daemon)
    try:
        exercise(port, daemon, "plainapp")
    finally:
        stop(p)


def test_gunicorn_gevent(daemon):
    need("gevent")
    p, port = start(GUNICORN + ["--worker-class", "gevent", "plainapp:app"], daemon)
    try:
        exercise(port, daemon, "plainapp")
    finally:
        stop(p)


def test_gunicorn_flask_exception_cause(daemon):
    p, port = start(GUNICORN + ["flaskapp:app"], daemon, XRAY_SERVICE_NAME="orders")
    try:
        docs = exercise(port, daemon, "orders")
        boom = [d for d in docs if d["http"]["request"]["url"].endswith("/boom")][0]
        exc = boom["cause"]["exceptions"][0]
        assert exc["type"] == "ValueError" and exc["message"] == "flask view failed"
    finally:
        stop(p)


def test_waitress(daemon):
    p, port = start([str(BIN / "waitress-serve"), "--listen=127.0.0.1:{port}",
                     "plainapp:app"], daemon)
    try:
        exercise(port, daemon, "plainapp")
    finally:
        stop(p)


def test_flask_run(daemon):
    p, port = start([str(BIN / "flask"), "--app", "flaskapp", "run", "--port", "{port}"],
                    daemon)
    try:
        exercise(port, daemon, "flaskapp")
    finally:
        stop(p)


def test_werkzeug_app_run(daemon):
    p, port = start([PY, "flaskapp.py", "{port}"], daemon)
    try:
        exercise(port, daemon, "flaskapp")
    finally:
        stop(p)


def test_wsgiref(daemon):
    p, port = start([PY, "plainapp.py", "{port}"], daemon)
    try:
        exercise(port, daemon, "plainapp")
    finally:
        stop(p)


def test_streamed_response_and_trace_header_continued(daemon):
    p, port = start(GUNICORN + ["plainapp:app"], daemon)
    try:
        daemon.wait(1)
        daemon.clear()
        root = "1-5759e988-bd862e3fe1be46a994272793"
        hdr = {"X-Amzn-Trace-Id": f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1"}
        status, headers, body = http_get(port, "/stream", headers=hdr)
        assert body == b"abc"
        assert headers["X-Amzn-Trace-Id"] == f"Root={root}"
        [doc] = daemon.wait(1)
        validate(doc)
        assert doc["trace_id"] == root and doc["parent_id"] == "53995c3f42cd8ad8"
        # a Sampled=0 request is not sent, but is answered
        status, headers, _ = http_get(port, "/", headers={
            "X-Amzn-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272794;Sampled=0"})
        assert status == 200
        http_get(port, "/after")
        docs = daemon.wait(2)
        assert [d["http"]["request"]["url"].rsplit("/", 1)[1] for d in docs] == ["stream",
                                                                                 "after"]
    finally:
        stop(p)
