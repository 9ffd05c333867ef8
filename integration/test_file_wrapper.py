"""``wsgi.file_wrapper`` passes through the agent untouched (issue 12, 2): for every server,
with a missing, a right and a too-long Content-Length, the response's framing (Content-Length
or chunked, body length, keep-alive) is the same as the same server's without the agent, and
the traced run still sends one valid segment per request."""

import os
import shutil
import socket
import subprocess
import sys

import pytest
from xray_testing import (
    BIN,
    ROOT,
    agent_env,
    free_port,
    skip_or_fail,
    stop,
    validate,
    wait_http,
    xray_run,
)

APPS = ROOT / "integration" / "apps"
PY = sys.executable
sys.path.insert(0, str(APPS))
from fileapp import PATH, SIZE  # noqa: E402

UWSGI = str(BIN / "uwsgi") if (BIN / "uwsgi").exists() else shutil.which("uwsgi")

SERVERS = {
    "waitress": [str(BIN / "waitress-serve"), "--listen=127.0.0.1:{port}", "fileapp:app"],
    "gunicorn-sync": [str(BIN / "gunicorn"), "-b", "127.0.0.1:{port}", "fileapp:app"],
    "gunicorn-gthread": [str(BIN / "gunicorn"), "-b", "127.0.0.1:{port}", "--worker-class",
                         "gthread", "--threads", "2", "fileapp:app"],
    "uwsgi": [UWSGI or "uwsgi", "--http-socket", "127.0.0.1:{port}", "--module", "fileapp:app",
              "--die-on-term", "--disable-logging", "--http-keepalive"],
    "wsgiref": [PY, "fileapp.py", "{port}", "wsgiref"],
    "werkzeug": [PY, "fileapp.py", "{port}", "werkzeug"],
}
# a too-long Content-Length leaves a keep-alive client waiting for bytes that never come:
# the read ends on this socket timeout (an end marker, not a timing assertion)
READ_TIMEOUT = 3.0
# the file wrapper with no, a right and a too-long Content-Length; then ordinary iterables
MODES = ("none", "right", "long", "sized", "generator")


def _bare_env():
    env = agent_env(None)
    return {k: v for k, v in env.items() if not k.startswith(("XRAY_", "AWS_XRAY"))}


def _start(server, traced, daemon):
    port = free_port()
    cmd = [c.replace("{port}", str(port)) for c in SERVERS[server]]
    if traced:
        cmd, env = xray_run(*cmd), agent_env(daemon)
    else:
        env = _bare_env()
    p = subprocess.Popen(cmd, cwd=APPS, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(port, "/warmup", proc=p)
    except BaseException:
        print(stop(p))
        raise
    return p, port


def _read_response(sock):
    """Status, headers and body length as an HTTP/1.1 client reads them, and whether the
    server closed the connection."""
    f = sock.makefile("rb")
    status = f.readline().decode("latin-1").split(" ", 2)[1]
    headers = {}
    while True:
        line = f.readline().decode("latin-1").rstrip("\r\n")
        if not line:
            break
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    closed = False
    try:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                n = int(f.readline().split(b";")[0], 16)
                if n == 0:
                    f.readline()
                    break
                body += f.read(n)
                f.readline()
        elif "content-length" in headers:
            want = int(headers["content-length"])
            while len(body) < want:
                chunk = f.read1(want - len(body))
                if not chunk:
                    closed = True
                    break
                body += chunk
        else:
            body = f.read()
            closed = True
    except TimeoutError:
        closed = None  # still open, body short: the client gives up
    return status, headers, body, closed, f


def _exchange(port, path):
    sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
    try:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path.encode())
        status, headers, body, closed, f = _read_response(sock)
        with open(PATH, "rb") as fh:
            data = fh.read()
        second = None
        if closed is False and headers.get("connection", "").lower() != "close":
            try:  # keep-alive: a second request on the same connection
                sock.sendall(b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                second = _read_response(sock)[0] or "none"
            except (OSError, IndexError):
                second = "failed"
        framing = ("chunked" if headers.get("transfer-encoding", "").lower() == "chunked"
                   else "length" if "content-length" in headers else "close")
        return {
            "status": status,
            "framing": framing,
            "content_length": headers.get("content-length"),
            "body_length": len(body),
            "body_ok": body == data[: len(body)],
            "closed": closed,
            "second": second,
            "connection": headers.get("connection", "").lower(),
        }
    finally:
        sock.close()


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_file_wrapper_framing_as_bare(server, daemon):
    missing = ((server == "uwsgi" and UWSGI is None)
               or (server != "uwsgi" and not os.path.exists(SERVERS[server][0])))
    if missing:
        skip_or_fail(f"{server} is not installed (requirements-test.txt)")
    paths = tuple("/" + m for m in MODES)

    def is_file(d):
        return d.get("http", {}).get("request", {}).get("url", "").endswith(paths)

    results = {}
    for traced in (False, True):
        p, port = _start(server, traced, daemon)
        try:
            results[traced] = {m: _exchange(port, "/" + m) for m in MODES}
            if traced:  # every response complete (closed by the server) before it stops
                docs = daemon.wait(len(MODES), timeout=15, predicate=is_file)
        finally:
            out = stop(p)
        assert "Traceback" not in out, out
    bare, traced = results[False], results[True]
    assert bare["right"]["body_length"] == SIZE and bare["right"]["body_ok"], bare
    assert traced == bare
    assert sorted(d["http"]["request"]["url"].rsplit("/", 1)[1] for d in docs) == sorted(
        MODES), docs
    for doc in docs:
        validate(doc)
        assert doc["http"]["response"]["status"] == 200
