"""End to end for httpx and aiohttp: an unchanged WSGI application under ``xray-run gunicorn``
calling a local server through httpx's sync ``Client``; an unchanged ASGI application under
``xray-run uvicorn`` calling it through httpx's ``AsyncClient`` and aiohttp's ``ClientSession``
from many concurrent requests on one event loop; an unchanged asyncio program under ``xray-run
python`` doing the same from many tasks, with ``XRAY_CONTEXT_MISSING=process`` and with the
default. The documents reaching a loopback daemon and the headers the downstream server
received are checked."""

import concurrent.futures
import json
import re
import subprocess
import textwrap
import time

import pytest
from test_http_httpx import AsyncServer
from test_http_servers import parse_trace_header
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

WSGI_APP = textwrap.dedent('''
    """A plain WSGI application calling another service through httpx (no tracing code)."""
    import json
    import os

    import httpx

    PORT = int(os.environ["T_HTTP_PORT"])
    CLOSED = int(os.environ["T_CLOSED_PORT"])
    BASE = f"http://127.0.0.1:{PORT}"
    client = httpx.Client(follow_redirects=True)


    def app(environ, start_response):
        out = {}
        if environ["PATH_INFO"] == "/calls":
            out["a"] = client.get(f"http://bob:pw123@127.0.0.1:{PORT}/a?token=tokval&page=1").text
            out["redirect"] = client.get(BASE + "/redirect/1").text
            out["fault"] = client.get(BASE + "/status/503").status_code
            with client.stream("GET", BASE + "/big") as r:
                out["streamed"] = len(next(r.iter_bytes(chunk_size=100)))
            try:
                httpx.get(f"http://127.0.0.1:{CLOSED}/nothing", timeout=5)
            except httpx.ConnectError as exc:
                out["error"] = type(exc).__name__
        body = json.dumps(out).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
''')

ASYNC_PROGRAM = textwrap.dedent('''
    """A plain asyncio program calling another service from many tasks (no tracing code)."""
    import asyncio
    import json
    import os

    import aiohttp
    import httpx

    BASE = "http://127.0.0.1:%s" % os.environ["T_HTTP_PORT"]
    CLOSED = int(os.environ["T_CLOSED_PORT"])


    async def with_httpx(client, i):
        r = await client.get(f"{BASE}/slow/httpx/{i}?api_key=k{i}")
        return r.status_code


    async def with_aiohttp(session, i):
        async with session.get(f"{BASE}/slow/aiohttp/{i}") as r:
            await r.read()
            return r.status


    async def main():
        async with httpx.AsyncClient() as client, aiohttp.ClientSession() as session:
            statuses = await asyncio.gather(
                *(with_httpx(client, i) for i in range(5)),
                *(with_aiohttp(session, i) for i in range(5)))
            async with session.get(f"{BASE}/redirect/1") as r:
                landed = await r.text()
            try:
                await session.get(f"http://127.0.0.1:{CLOSED}/")
            except aiohttp.ClientConnectorError as exc:
                error = type(exc).__name__
        print(json.dumps({"statuses": statuses, "landed": landed, "error": error}))


    asyncio.run(main())
''')


@pytest.fixture(scope="module")
def downstream():
    s = AsyncServer()
    yield s
    s.close()


@pytest.fixture(scope="module")
def wsgi_stack(tmp_path_factory, downstream):
    tmp = tmp_path_factory.mktemp("httpx_wsgi")
    (tmp / "httpx_app.py").write_text(WSGI_APP)
    daemon = FakeDaemon()
    port = free_port()
    closed = free_port()
    env = agent_env(daemon, T_HTTP_PORT=downstream.port, T_CLOSED_PORT=closed,
                    XRAY_SERVICE_NAME="orders")
    proc = subprocess.Popen(
        xray_run(str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "1", "httpx_app:app"),
        cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(port, "/warmup", proc=proc)
        yield {"port": port, "daemon": daemon, "closed": closed}
    finally:
        out = stop(proc)
        daemon.close()
        assert "Traceback" not in out, out


def subs(doc):
    return doc.get("subsegments", [])


def test_httpx_inside_a_served_wsgi_request(wsgi_stack, downstream):
    downstream.requests.clear()
    status, _headers, body = http_get(wsgi_stack["port"], "/calls")
    assert status == 200
    assert json.loads(body) == {"a": "hello", "redirect": "landed", "fault": 503,
                                "streamed": 100, "error": "ConnectError"}
    [doc] = wsgi_stack["daemon"].wait(
        1, predicate=lambda d: d.get("http", {}).get("request", {}).get("url", "").endswith(
            "/calls"))
    validate(doc)
    assert doc["name"] == "orders"
    base = f"http://127.0.0.1:{downstream.port}"
    calls = subs(doc)
    assert [(c["name"], c["namespace"], c["http"]["request"]["url"]) for c in calls] == [
        ("127.0.0.1", "remote", base + "/a?token=REDACTED&page=1"),
        ("127.0.0.1", "remote", base + "/redirect/1"),
        ("127.0.0.1", "remote", base + "/redirect/0"),
        ("127.0.0.1", "remote", base + "/status/503"),
        ("127.0.0.1", "remote", base + "/big"),
        ("127.0.0.1", "remote", f"http://127.0.0.1:{wsgi_stack['closed']}/nothing"),
    ]
    assert [c["http"].get("response", {}).get("status") for c in calls] == [
        200, 302, 200, 503, 200, None]
    assert calls[3]["fault"] is True and "cause" not in calls[3]
    assert calls[5]["fault"] is True
    assert calls[5]["cause"]["exceptions"][0]["type"] == "ConnectError"
    assert calls[4]["http"]["response"]["content_length"] == 200_000
    # the downstream server saw this trace and each exchange's own id
    headers = [parse_trace_header(h) for h in downstream.trace_headers()]
    assert headers == [{"Root": doc["trace_id"], "Parent": c["id"], "Sampled": "1"}
                       for c in calls[:5]]
    text = json.dumps(doc)
    for secret in ("tokval", "bob", "pw123"):
        assert secret not in text


ASGI_APP = textwrap.dedent('''
    """A plain ASGI application calling another service through httpx and aiohttp."""
    import os

    import aiohttp
    import httpx

    BASE = "http://127.0.0.1:%s" % os.environ["T_HTTP_PORT"]
    clients = {}


    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b"ok"
        if scope["path"].startswith("/fan/"):
            i = scope["path"].rsplit("/", 1)[1]
            if not clients:  # made on the server's loop, shared by all requests
                clients["httpx"] = httpx.AsyncClient()
                clients["aiohttp"] = aiohttp.ClientSession()
            r = await clients["httpx"].get(f"{BASE}/slow/httpx/{i}")
            async with clients["aiohttp"].get(f"{BASE}/slow/aiohttp/{i}") as r2:
                await r2.read()
            body = f"{r.status_code} {r2.status}".encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
''')


def test_async_clients_inside_concurrent_asgi_requests(daemon, tmp_path, downstream):
    """Many requests at once on uvicorn's one loop, each calling out through the shared
    clients: every exchange lands under its own request's segment, with its own header."""
    (tmp_path / "asgi_calls.py").write_text(ASGI_APP)
    port = free_port()
    proc = subprocess.Popen(
        xray_run(str(BIN / "uvicorn"), "asgi_calls:app", "--port", str(port), "--lifespan",
                 "off"),
        cwd=tmp_path, env=agent_env(daemon, T_HTTP_PORT=downstream.port),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(port, "/warmup", proc=proc, timeout=40)
        daemon.wait(1, timeout=15)
        daemon.clear()
        downstream.requests.clear()
        n = 12
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(lambda i: http_get(port, f"/fan/{i}"), range(n)))
        assert [(a[0], a[2]) for a in answers] == [(200, b"200 200")] * n
        docs = daemon.wait(n, timeout=20, predicate=lambda d: "/fan/" in d.get(
            "http", {}).get("request", {}).get("url", ""))
    finally:
        out = stop(proc)
    assert "Traceback" not in out, out
    base = f"http://127.0.0.1:{downstream.port}"
    sent = {}
    for r in downstream.requests:
        hdr = parse_trace_header(r["headers"]["X-Amzn-Trace-Id"])
        sent[r["path"]] = (hdr["Root"], hdr["Parent"])
    assert len({d["trace_id"] for d in docs}) == n
    for doc in docs:
        validate(doc)
        i = doc["http"]["request"]["url"].rsplit("/", 1)[1]
        calls = subs(doc)
        assert [c["http"]["request"]["url"] for c in calls] == [
            f"{base}/slow/httpx/{i}", f"{base}/slow/aiohttp/{i}"]
        for c, kind in zip(calls, ("httpx", "aiohttp"), strict=True):
            assert c["namespace"] == "remote" and c["http"]["response"]["status"] == 200
            assert doc["start_time"] <= c["start_time"] <= c["end_time"] <= doc["end_time"]
            assert sent[f"/slow/{kind}/{i}"] == (doc["trace_id"], c["id"])


def run_program(tmp_path, daemon, downstream, **env):
    script = tmp_path / "async_calls.py"
    script.write_text(ASYNC_PROGRAM)
    proc = subprocess.run(
        xray_run("python", str(script)), cwd=tmp_path,
        env=agent_env(daemon, T_HTTP_PORT=downstream.port, T_CLOSED_PORT=free_port(),
                      **env),
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert json.loads(proc.stdout) == {"statuses": [200] * 10, "landed": "landed",
                                       "error": "ClientConnectorError"}
    return proc


def test_async_clients_under_context_missing_process(daemon, tmp_path, downstream):
    downstream.requests.clear()
    run_program(tmp_path, daemon, downstream, XRAY_CONTEXT_MISSING="process",
                XRAY_SERVICE_NAME="batch")
    exchanges = 5 + 5 + 2 + 1  # httpx, aiohttp, two redirect hops, the refused connect
    daemon.wait(exchanges + 2, timeout=15)
    time.sleep(0.3)
    docs = list(daemon.documents)
    for d in docs:
        validate(d)
    segments = [d for d in docs if d.get("type") != "subsegment"]
    assert [bool(s.get("in_progress")) for s in segments] == [True, False]
    final = segments[1]
    assert final["name"] == "batch"
    streamed = [d for d in docs if d.get("type") == "subsegment"]
    assert len(streamed) == exchanges
    assert all(s["parent_id"] == final["id"] and s["trace_id"] == final["trace_id"]
               for s in streamed)
    base = f"http://127.0.0.1:{downstream.port}"
    urls = sorted(s["http"]["request"]["url"] for s in streamed)
    assert urls == sorted(
        [f"{base}/slow/httpx/{i}?api_key=REDACTED" for i in range(5)]
        + [f"{base}/slow/aiohttp/{i}" for i in range(5)]
        + [f"{base}/redirect/1", f"{base}/redirect/0"]
        + [u for u in urls if not u.startswith(base)])
    [refused] = [s for s in streamed if not s["http"]["request"]["url"].startswith(base)]
    assert refused["fault"] is True
    assert refused["cause"]["exceptions"][0]["type"] == "ClientConnectorError"
    # every request the server received carried the id of its own exchange
    by_url = {s["http"]["request"]["url"]: s["id"] for s in streamed}
    for r in downstream.requests:
        hdr = parse_trace_header(r["headers"]["X-Amzn-Trace-Id"])
        assert hdr["Root"] == final["trace_id"]
        assert hdr["Parent"] == by_url[base + re.sub(r"api_key=k\d+", "api_key=REDACTED",
                                                     r["path"])]
    assert "api_key=k" not in json.dumps(docs)


def test_async_clients_outside_any_request_record_nothing_by_default(daemon, tmp_path,
                                                                    downstream):
    downstream.requests.clear()
    run_program(tmp_path, daemon, downstream)
    time.sleep(0.5)
    assert daemon.documents == []
    assert len(downstream.requests) == 12
    assert downstream.trace_headers() == [None] * 12
