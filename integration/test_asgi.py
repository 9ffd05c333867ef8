"""Every ASGI server traced with no code change (uvicorn, gunicorn's uvicorn workers, hypercorn,
daphne) serving FastAPI, Starlette and Django: real servers under `xray-run`, real sockets, a
loopback UDP listener for the daemon; every document validated against the schema."""

import concurrent.futures
import http.server
import os
import socket
import sys
import threading
import time
import urllib.request

import pytest
from xray_testing import (
    BIN,
    ROOT,
    agent_env,
    free_port,
    http_get,
    need,
    start_traced,
    stop,
    validate,
    wait_http,
    xray_run,
)

need("fastapi")
need("uvicorn")

APPS = ROOT / "integration" / "apps"
DJANGO = APPS / "djproj"
PY = sys.executable
ROOT_ID = "1-5759e988-bd862e3fe1be46a994272793"


def start(cmd, daemon, cwd=APPS, warmup="/warmup", **env):
    return start_traced(cmd, daemon, cwd, warmup, **env)


def get(port, path, headers=None):
    status, hdrs, body = http_get(port, path, headers=headers)
    return status, {k.lower(): v for k, v in hdrs.items()}, body


def url_path(doc):
    return "/" + doc["http"]["request"]["url"].split("/", 3)[3]


def by_path(docs):
    out = {}
    for d in docs:
        validate(d)
        if d.get("type") != "subsegment":
            out[url_path(d)] = d
    return out


def flags(doc):
    return {f for f in ("error", "fault", "throttle") if doc.get(f)}


def exercise(port, daemon, name, route="/items/{item_id}", item="/items/7", cause="RuntimeError",
             framework_5xx="/fail", wsgi=False):
    """200 with its route, 404, 500 from an exception (with its cause), a 5xx the application
    answered itself; one valid segment each, with the response header echoed."""
    status, headers, _ = get(port, item)
    assert status == 200
    assert headers["x-amzn-trace-id"].startswith("Root=1-")
    assert get(port, "/missing")[0] == 404
    assert get(port, "/boom")[0] == 500
    expected = [item, "/missing", "/boom"]
    if framework_5xx:
        assert get(port, framework_5xx)[0] >= 500
        expected.append(framework_5xx)
    docs = by_path(daemon.wait(len(expected), timeout=15))
    assert sorted(docs) == sorted(expected), docs
    for d in docs.values():
        assert d["name"] == name
        assert d["http"]["request"]["method"] == "GET"
        assert d["http"]["request"]["client_ip"] == "127.0.0.1"
    ok = docs[item]
    assert ok["http"]["response"]["status"] == 200 and not flags(ok)
    if wsgi:
        assert "content_length" not in ok["http"]["response"] or \
            ok["http"]["response"]["content_length"] > 0
    else:
        assert ok["http"]["response"]["content_length"] > 0
    assert ok["trace_id"] == headers["x-amzn-trace-id"][5:]
    if route:
        assert ok["annotations"]["http_route"] == route
    assert flags(docs["/missing"]) == {"error"}
    boom = docs["/boom"]
    assert boom["http"]["response"]["status"] == 500 and flags(boom) == {"fault"}
    [exc] = boom["cause"]["exceptions"]
    assert exc["type"] == cause
    if framework_5xx:
        assert "fault" in flags(docs[framework_5xx]) and "cause" not in docs[framework_5xx]
    return docs


UVICORN = [str(BIN / "uvicorn"), "--host", "127.0.0.1", "--port", "{port}"]
GUNICORN = [str(BIN / "gunicorn"), "-b", "127.0.0.1:{port}", "--workers", "2"]


def test_uvicorn_fastapi(daemon, tmp_path):
    p, port = start(UVICORN + ["fastapiapp:app"], daemon, APP_MARKERS=tmp_path)
    try:
        assert (tmp_path / "startup").exists()  # lifespan start-up ran under the agent
        exercise(port, daemon, "fastapiapp")
        # the incoming trace header is continued and echoed; Sampled=0 is answered, not sent
        hdr = {"X-Amzn-Trace-Id": f"Root={ROOT_ID};Parent=53995c3f42cd8ad8;Sampled=1"}
        status, headers, _ = get(port, "/", headers=hdr)
        assert headers["x-amzn-trace-id"] == f"Root={ROOT_ID}"
        [doc] = daemon.wait(5)[-1:]
        validate(doc)
        assert doc["trace_id"] == ROOT_ID and doc["parent_id"] == "53995c3f42cd8ad8"
        unsampled = "1-5759e988-bd862e3fe1be46a994272794"
        status, headers, _ = get(port, "/", headers={
            "X-Amzn-Trace-Id": f"Root={unsampled};Sampled=0"})
        assert status == 200 and headers["x-amzn-trace-id"] == f"Root={unsampled}"
        # a malformed header starts a fresh trace; the request is served
        status, headers, _ = get(port, "/items/8", headers={"X-Amzn-Trace-Id": "Root=junk"})
        assert status == 200 and headers["x-amzn-trace-id"] != "Root=junk"
        docs = daemon.wait(6)
        assert [d["trace_id"] for d in docs].count(unsampled) == 0
        assert url_path(docs[-1]) == "/items/8"
    finally:
        out = stop(p)
    assert (tmp_path / "shutdown").exists(), out  # lifespan shutdown ran too


def test_uvicorn_streaming_sync_endpoint_websocket(daemon):
    p, port = start(UVICORN + ["fastapiapp:app"], daemon)
    try:
        t0 = time.time()
        status, _, body = get(port, "/stream")
        t1 = time.time()
        assert body == b"chunk0\nchunk1\nchunk2\n"
        [doc] = daemon.wait(1)
        validate(doc)
        # the segment ends after the last chunk (3 chunks, 0.2 s apart)
        assert doc["end_time"] - doc["start_time"] >= 0.55
        assert t0 - 0.05 <= doc["start_time"] and doc["end_time"] <= t1 + 0.05
        assert doc["http"]["response"]["content_length"] == len(body)
        daemon.clear()
        # a sync endpoint runs in the thread pool: its SQL lands in the request's segment
        assert get(port, "/sync-sql")[0] == 200
        [doc] = daemon.wait(1)
        validate(doc)
        sqls = [s["sql"]["sanitized_query"] for s in doc["subsegments"]]
        assert "select x from t where x = ?" in sqls and "42" not in str(sqls)
        daemon.clear()
        # a WebSocket connection: one segment, status 101
        _websocket_roundtrip(port, "/ws")
        [doc] = daemon.wait(1)
        validate(doc)
        assert doc["http"]["request"]["url"].startswith("ws://")
        assert doc["http"]["response"]["status"] == 101 and not flags(doc)
    finally:
        stop(p)


def _websocket_roundtrip(port, path):
    import base64

    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    assert data.startswith(b"HTTP/1.1 101"), data
    payload = b"hi"
    mask = os.urandom(4)
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask +
              bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    data = data.split(b"\r\n\r\n", 1)[1]
    while len(data) < 9:
        data += s.recv(4096)
    assert data[2:9] == b"echo hi"
    s.close()


class _Downstream(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_uvicorn_concurrent_requests_no_cross_talk(daemon):
    downstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Downstream)
    threading.Thread(target=downstream.serve_forever, daemon=True).start()
    p, port = start(UVICORN + ["fastapiapp:app"], daemon,
                    APP_DOWNSTREAM=f"http://127.0.0.1:{downstream.server_port}")
    try:
        n = 100
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda i: get(port, f"/fanout/{i}"), range(n)))
        assert all(r[0] == 200 for r in results)
        docs = by_path(daemon.wait(n, timeout=30))
        assert len(docs) == n
        for i in range(n):
            doc = docs[f"/fanout/{i}"]
            urls = sorted(s["http"]["request"]["url"] for s in doc.get("subsegments", []))
            # asyncio.to_thread and loop.run_in_executor: both calls under this request only
            assert [u.split("/", 3)[3] for u in urls] == [f"echo/{i}", f"echo/{i}/again"], doc
            assert doc["annotations"]["http_route"] == "/fanout/{n}"
    finally:
        stop(p)
        downstream.shutdown()


def test_uvicorn_psycopg_in_sync_endpoints(daemon):
    need("psycopg")
    from conftest import require_service

    require_service("PostgreSQL", "127.0.0.1", 5432, "apt-get install postgresql")
    p, port = start(UVICORN + ["fastapiapp:app"], daemon,
                    APP_PG_DSN="host=127.0.0.1 port=5432 user=postgres dbname=test")
    try:
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            results = list(pool.map(lambda i: get(port, f"/pg/{i}"), range(10)))
        assert [r[2] for r in results] == [b'{"value":%d}' % (i + 1) for i in range(10)]
        docs = by_path(daemon.wait(10, timeout=20))
        for i in range(10):
            [sql] = [s for s in docs[f"/pg/{i}"]["subsegments"] if "sql" in s]
            assert sql["name"] == "test@127.0.0.1"
            assert sql["sql"]["sanitized_query"] == "select %s::int + ?"
            assert sql["sql"]["database_type"] == "PostgreSQL"
    finally:
        stop(p)


def test_uvicorn_reload(daemon, tmp_path):
    app_file = tmp_path / "reloadapp.py"
    app_file.write_text(
        "import os\n"
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': str(os.getpid()).encode()})\n")
    p, port = start(UVICORN + ["--reload", "--reload-dir", str(tmp_path), "reloadapp:app"],
                    daemon, cwd=tmp_path)
    try:
        first = get(port, "/one")[2]
        [doc] = daemon.wait(1)
        validate(doc)
        assert doc["name"] == "reloadapp"
        app_file.write_text(app_file.read_text() + "# changed\n")
        deadline = time.time() + 40
        later = time.time()
        while time.time() < deadline:  # the reloader starts a new worker process
            # a modification time later than whatever the reloader's first look recorded
            later += 1
            os.utime(app_file, (later, later))
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/two", timeout=2) as r:
                    if r.read() != first:
                        break
            except OSError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError("uvicorn did not reload: " + stop(p))
        docs = daemon.wait(2, predicate=lambda d: d["http"]["request"]["url"].endswith("/two"))
        validate(docs[-1])
        assert docs[-1]["name"] == "reloadapp"
    finally:
        stop(p)


def test_uvicorn_workers_factory(daemon):
    p, port = start(UVICORN + ["--workers", "2", "--factory", "fastapiapp:create_app"], daemon)
    try:
        # the second spawned worker may still be starting: load until both have answered
        pids, sent, deadline = set(), 0, time.monotonic() + 60
        while len(pids) < 2 and time.monotonic() < deadline:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                results = list(pool.map(lambda i: get(port, "/pid"), range(16)))
            sent += len(results)
            pids |= {r[2] for r in results}
        assert len(pids) == 2, pids  # both spawned workers served
        docs = daemon.wait(sent, timeout=20)
        assert len(docs) == sent
        for d in docs:
            validate(d)
            assert d["name"] == "fastapiapp"
        # each worker with ids of its own: every request its own segment and trace
        assert len({d["id"] for d in docs}) == sent
        assert len({d["trace_id"] for d in docs}) == sent
    finally:
        stop(p)


def test_uvicorn_run_from_script(daemon, tmp_path):
    script = tmp_path / "serve.py"
    script.write_text(
        "import sys, uvicorn\n"
        f"sys.path.insert(0, {str(APPS)!r})\n"
        "from starletteapp import app\n"
        "uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[1]), log_level='warning')\n")
    p, port = start([PY, str(script), "{port}"], daemon)
    try:
        exercise(port, daemon, "starletteapp", route="/users/{uid}", item="/users/ann",
                 cause="ValueError", framework_5xx=None)
        get(port, "/api/users/bob")
        [doc] = daemon.wait(1, predicate=lambda d: d["http"]["request"]["url"].endswith("bob"))
        assert doc["annotations"]["http_route"] == "/api/users/{uid}"
    finally:
        stop(p)


@pytest.mark.parametrize("worker", ["uvicorn.workers.UvicornWorker",
                                    "uvicorn_worker.UvicornWorker"])
@pytest.mark.parametrize("preload", [False, True], ids=["", "preload"])
def test_gunicorn_uvicorn_worker(daemon, worker, preload):
    if worker.startswith("uvicorn_worker"):
        need("uvicorn_worker")
    extra = ["--preload"] if preload else []
    p, port = start(GUNICORN + extra + ["-k", worker, "fastapiapp:app"], daemon)
    try:
        exercise(port, daemon, "fastapiapp")
    finally:
        stop(p)


def test_hypercorn(daemon):
    need("hypercorn")
    p, port = start([str(BIN / "hypercorn"), "-b", "127.0.0.1:{port}", "fastapiapp:app"], daemon)
    try:
        exercise(port, daemon, "fastapiapp")
    finally:
        stop(p)


def test_daphne(daemon):
    need("daphne")
    p, port = start([str(BIN / "daphne"), "-b", "127.0.0.1", "-p", "{port}",
                     "fastapiapp:app"], daemon)
    try:
        exercise(port, daemon, "fastapiapp")
    finally:
        stop(p)


DJANGO_ENV = {"DJANGO_SETTINGS_MODULE": "djproj.settings"}


def test_django_asgi_uvicorn(daemon):
    need("django")
    p, port = start(UVICORN + ["djproj.asgi:application"], daemon, cwd=DJANGO, **DJANGO_ENV)
    try:
        exercise(port, daemon, "djproj", route="/items/<int:item_id>/", item="/items/7/",
                 framework_5xx=None)
    finally:
        stop(p)


def test_django_wsgi_gunicorn(daemon):
    need("django")
    p, port = start(GUNICORN + ["djproj.wsgi"], daemon, cwd=DJANGO, **DJANGO_ENV)
    try:
        exercise(port, daemon, "djproj", route="/items/<int:item_id>/", item="/items/7/",
                 framework_5xx=None, wsgi=True)
    finally:
        stop(p)


def test_django_runserver_name(daemon):
    need("django")
    p, port = start([PY, "manage.py", "runserver", "--noreload", "127.0.0.1:{port}"], daemon,
                    cwd=DJANGO)
    try:
        get(port, "/items/3/")
        [doc] = daemon.wait(1)
        validate(doc)
        assert doc["name"] == "djproj"  # not django.core.handlers.wsgi
        assert doc["annotations"]["http_route"] == "/items/<int:item_id>/"
    finally:
        stop(p)


@pytest.mark.parametrize("worker", ["aiohttp.GunicornWebWorker", "tornado"])
def test_gunicorn_other_worker_classes_untouched(daemon, tmp_path, worker):
    """Worker classes that load something other than a WSGI callable serve as without the
    agent (the WSGI middleware is never wrapped around what they load)."""
    if worker.startswith("aiohttp"):
        need("aiohttp")
        (tmp_path / "aioapp.py").write_text(
            "from aiohttp import web\n"
            "async def hello(request):\n    return web.Response(text='aiohttp here')\n"
            "app = web.Application()\napp.router.add_get('/warmup', hello)\n")
        target, text = "aioapp:app", b"aiohttp here"
    else:
        need("tornado")
        (tmp_path / "tornadoapp.py").write_text(
            "import tornado.web\n"
            "class Hello(tornado.web.RequestHandler):\n"
            "    def get(self):\n        self.write('tornado here')\n"
            "app = tornado.web.Application([(r'/warmup', Hello)])\n")
        target, text = "tornadoapp:app", b"tornado here"
    import subprocess

    port = free_port()
    cmd = [str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "-k", worker, target]
    p = subprocess.Popen(xray_run(*cmd), cwd=tmp_path, env=agent_env(daemon),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(port, "/warmup", proc=p, timeout=40)
        status, _, body = get(port, "/warmup")
        assert (status, body) == (200, text)
    finally:
        out = stop(p)
    assert "Traceback" not in out, out
