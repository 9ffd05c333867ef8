"""End to end: an unchanged WSGI application under ``xray-run gunicorn`` calls local HTTP and
HTTPS servers (self-signed certificate made here) through urllib.request, requests and
http.client; the documents reaching a loopback daemon, and the headers the downstream servers
received, are checked."""

import json
import subprocess
import textwrap

import pytest
from test_http_servers import LocalServer, make_cert, parse_trace_header
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

APP = textwrap.dedent('''
    """A plain WSGI application making outbound HTTP calls (no tracing code)."""
    import http.client
    import json
    import os
    import urllib.error
    import urllib.request

    import requests

    HTTP = int(os.environ["T_HTTP_PORT"])
    HTTPS = int(os.environ["T_HTTPS_PORT"])
    CLOSED = int(os.environ["T_CLOSED_PORT"])


    def app(environ, start_response):
        path = environ["PATH_INFO"]
        out = {}
        if path == "/http":
            out["urllib"] = urllib.request.urlopen(
                f"http://127.0.0.1:{HTTP}/u?token=tokqv&page=1", timeout=10).read().decode()
            with requests.Session() as s:  # the second call reuses the connection
                out["r1"] = s.get(f"http://localhost:{HTTP}/r1?api_key=zzz", timeout=10).text
                out["r2"] = s.get(f"http://localhost:{HTTP}/status/404", timeout=10).text
            conn = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=10)
            conn.request("GET", f"http://alice:s3cret@127.0.0.1:{HTTP}/proxied?password=pw")
            out["proxied"] = conn.getresponse().read().decode()
            conn.close()
        elif path == "/https":
            out["urllib"] = urllib.request.urlopen(
                f"https://localhost:{HTTPS}/hu", timeout=10).read().decode()
            out["requests"] = requests.get(f"https://localhost:{HTTPS}/hr", timeout=10).text
        elif path == "/refused":
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{CLOSED}/nothing", timeout=5)
            except urllib.error.URLError as exc:
                out["error"] = type(exc.reason).__name__
        body = json.dumps(out).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
''')


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The downstream servers, a loopback daemon, and the app under xray-run gunicorn."""
    tmp = tmp_path_factory.mktemp("outbound")
    (tmp / "outbound_app.py").write_text(APP)
    certfile, keyfile = make_cert(tmp)
    plain, tls, daemon = LocalServer(), LocalServer(certfile, keyfile), FakeDaemon()
    port = free_port()
    env = agent_env(daemon, T_HTTP_PORT=plain.port, T_HTTPS_PORT=tls.port,
                    T_CLOSED_PORT=free_port(), SSL_CERT_FILE=certfile,
                    REQUESTS_CA_BUNDLE=certfile, XRAY_SERVICE_NAME="orders")
    proc = subprocess.Popen(
        xray_run(str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "1",
                 "outbound_app:app"),
        cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(port, "/warmup", proc=proc)
        yield {"port": port, "plain": plain, "tls": tls, "daemon": daemon, "proc": proc}
    finally:
        out = stop(proc)
        plain.close()
        tls.close()
        daemon.close()
        assert "Traceback" not in out, out


def call(stack, path):
    """GET ``path`` on the app; return (its JSON answer, the segment document for it)."""
    stack["plain"].requests.clear()
    stack["tls"].requests.clear()
    status, _headers, body = http_get(stack["port"], path)
    assert status == 200
    [doc] = stack["daemon"].wait(
        1, predicate=lambda d: d.get("http", {}).get("request", {}).get("url", "").endswith(
            path))
    for d in stack["daemon"].documents:
        validate(d)
    validate(doc)
    assert doc["name"] == "orders" and "type" not in doc
    return json.loads(body), doc


def subs(doc):
    return doc.get("subsegments", [])


def phase_names(sub):
    [connect] = subs(sub)
    assert connect["name"] == "connect"
    assert sub["start_time"] <= connect["start_time"] <= connect["end_time"] <= sub["end_time"]
    return [p["name"] for p in subs(connect)]


def test_http_via_urllib_requests_and_http_client(stack):
    answer, doc = call(stack, "/http")
    assert answer == {"urllib": "hello", "r1": "hello", "r2": "status 404", "proxied": "hello"}
    plain = stack["plain"].port
    calls = subs(doc)
    # exactly one subsegment per exchange, in order
    assert len(calls) == len(stack["plain"].requests) == 4
    assert [(c["name"], c["namespace"], c["http"]["request"]["url"]) for c in calls] == [
        ("127.0.0.1", "remote", f"http://127.0.0.1:{plain}/u?token=REDACTED&page=1"),
        ("localhost", "remote", f"http://localhost:{plain}/r1?api_key=REDACTED"),
        ("localhost", "remote", f"http://localhost:{plain}/status/404"),
        ("127.0.0.1", "remote", f"http://127.0.0.1:{plain}/proxied?password=REDACTED"),
    ]
    assert [c["http"]["response"] for c in calls] == [
        {"status": 200, "content_length": 5}, {"status": 200, "content_length": 5},
        {"status": 404, "content_length": 10}, {"status": 200, "content_length": 5}]
    assert calls[2]["error"] is True and "error" not in calls[1]
    # new connections have their phases; the keep-alive reuse has none
    assert phase_names(calls[0]) == ["dns", "dial"]
    assert phase_names(calls[1]) == ["dns", "dial"]
    assert "subsegments" not in calls[2]
    assert phase_names(calls[3]) == ["dns", "dial"]
    # what the downstream server received: this trace, and each call's own subsegment
    headers = [parse_trace_header(h) for h in stack["plain"].trace_headers()]
    assert headers == [{"Root": doc["trace_id"], "Parent": c["id"], "Sampled": "1"}
                       for c in calls]
    text = json.dumps(doc)
    for secret in ("tokqv", "zzz", "alice", "s3cret", '=pw'):
        assert secret not in text


def test_https_has_dns_dial_tls(stack):
    answer, doc = call(stack, "/https")
    assert answer == {"urllib": "hello", "requests": "hello"}
    tls = stack["tls"].port
    calls = subs(doc)
    assert [(c["name"], c["http"]["request"]["url"], c["http"]["response"]["status"])
            for c in calls] == [("localhost", f"https://localhost:{tls}/hu", 200),
                                ("localhost", f"https://localhost:{tls}/hr", 200)]
    for c in calls:
        assert phase_names(c) == ["dns", "dial", "tls"]
        dns, dial, tls_phase = subs(subs(c)[0])
        assert dns["end_time"] <= dial["start_time"] + 1e-6
        assert dial["end_time"] <= tls_phase["start_time"] + 1e-6
        assert tls_phase["end_time"] > tls_phase["start_time"]
    headers = [parse_trace_header(h) for h in stack["tls"].trace_headers()]
    assert [(h["Root"], h["Parent"]) for h in headers] == [(doc["trace_id"], c["id"])
                                                            for c in calls]


def test_refused_connection_is_a_fault_the_app_sees_its_own_error(stack):
    answer, doc = call(stack, "/refused")
    assert answer == {"error": "ConnectionRefusedError"}
    [sub] = subs(doc)
    assert sub["fault"] is True and sub["namespace"] == "remote"
    [exc] = sub["cause"]["exceptions"]
    assert exc["type"] == "ConnectionRefusedError" and exc["remote"] is True
    [connect] = subs(sub)
    assert connect["fault"] is True
    assert [(p["name"], p.get("fault", False)) for p in subs(connect)] == [
        ("dns", False), ("dial", True)]
    assert "fault" not in doc  # the application answered 200
