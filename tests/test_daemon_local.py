"""``xray-run --local`` helpers: who answers on the daemon port, and the daemon's environment."""

import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from xray_autoinst.daemon import local


def test_probe_nothing_listening():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        assert local.probe(("127.0.0.1", port), timeout=1) == ("absent", {})


class _Server:
    def __init__(self, handler):
        self.httpd = HTTPServer(("127.0.0.1", 0), handler)
        self.addr = self.httpd.server_address
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(status, body):
    class H(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return H


@pytest.mark.parametrize(
    "status, body, state",
    [
        (200, json.dumps({"service": "xray-autoinst-daemon", "pid": 7, "store": "/s"}), "ours"),
        (200, json.dumps({"service": "something-else"}), "other"),
        (200, "not json", "other"),
        (404, json.dumps({"service": "xray-autoinst-daemon"}), "other"),
        (200, "[1, 2]", "other"),
    ],
)
def test_probe_http_answers(status, body, state):
    server = _Server(_handler(status, body))
    try:
        got, info = local.probe(server.addr, timeout=2)
        assert got == state
        if state == "ours":
            assert info["pid"] == 7
    finally:
        server.close()


def test_probe_silent_tcp_listener():
    # accepts and says nothing (or closes): not our daemon
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert local.probe(s.getsockname(), timeout=0.5)[0] == "other"


def test_ensure_reports_a_foreign_listener():
    server = _Server(_handler(404, "no"))
    try:
        line = local.ensure_local_daemon(server.addr, server.addr, None, {"HOME": "/tmp"})
    finally:
        server.close()
    assert "not the xray-autoinst daemon" in line and "as is" in line
    assert line.count("\n") == 0


def test_ensure_reports_a_running_daemon():
    body = json.dumps({"service": "xray-autoinst-daemon", "pid": 42, "udp": "127.0.0.1:2000",
                       "store": "/data/t.db"})
    server = _Server(_handler(200, body))
    try:
        line = local.ensure_local_daemon(server.addr, server.addr, None, {"HOME": "/h"})
    finally:
        server.close()
    assert "pid 42" in line and "/data/t.db" in line
    # a store other than the default: the stop command names it
    assert "xray-autoinst daemon --stop --store /data/t.db" in line


def test_daemon_environment_strips_our_bootstrap(tmp_path):
    ours = tmp_path / "boot"
    ours.mkdir()
    (ours / "sitecustomize.py").write_text("from xray_autoinst import bootstrap\n")
    theirs = tmp_path / "user"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("print('user hook')\n")
    environ = {"PYTHONPATH": os.pathsep.join([str(ours), str(theirs), "/lib"]),
               "XRAY_ENABLED": "true", "KEEP": "1"}
    env = local.daemon_environment(environ)
    assert env["PYTHONPATH"] == os.pathsep.join([str(theirs), "/lib"])
    assert env["XRAY_ENABLED"] == "false" and env["KEEP"] == "1"
    assert environ["XRAY_ENABLED"] == "true"  # the caller's mapping is not changed
    assert "PYTHONPATH" not in local.daemon_environment({"PYTHONPATH": str(ours)})


def test_daemon_command():
    cmd = local.daemon_command(("127.0.0.1", 2000), ("::1", 2001), "/s/t.db")
    assert cmd[1:] == ["-m", "xray_autoinst.daemon", "daemon", "--detach", "--listen",
                       "udp:127.0.0.1:2000 tcp:[::1]:2001", "--store", "/s/t.db"]
