"""``xray-run --local`` on a fresh machine: it starts the detached daemon, the app's traces land
in the store, the views show them, the daemon stays for the next run, ``daemon --stop`` ends it."""

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from daemon_testing import XRAY_AUTOINST, base_env, free_udp_tcp_port, wait_until
from xray_testing import free_port, http_get, stop, wait_http, xray_run

APPS = Path(__file__).resolve().parent / "apps"
RULES = '{"version": 2, "default": {"fixed_target": 0, "rate": 1.0}}'


def cli(env, *args):
    proc = subprocess.run([XRAY_AUTOINST, *args], capture_output=True, text=True, env=env,
                          timeout=60)
    return proc


def daemon_pid(env) -> int | None:
    store = Path(env["HOME"]) / ".local/share/xray-autoinst/traces.db"
    try:
        return json.loads(Path(f"{store}.pid").read_text())["pid"]
    except (OSError, ValueError):
        return None


@pytest.fixture
def home(tmp_path):
    """A fresh user: empty HOME, no XDG_DATA_HOME, the daemon address on a free port."""
    env = base_env(HOME=tmp_path, AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{free_udp_tcp_port()}",
                   XRAY_SERVICE_NAME="shop", XRAY_SAMPLING="local", XRAY_SAMPLING_RULES=RULES)
    env.pop("XDG_DATA_HOME", None)
    yield env
    cli(env, "daemon", "--stop")  # never leave a daemon behind


def test_run_local_then_view_traces_then_stop(home):
    store = Path(home["HOME"]) / ".local/share/xray-autoinst/traces.db"
    port = free_port()
    app = subprocess.Popen(xray_run("--local", sys.executable, str(APPS / "plainapp.py"),
                                    str(port)),
                           env=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_line = app.stderr.readline()
        wait_http(port, "/pid", proc=app)
        assert http_get(port, "/orders?id=1")[0] == 200
        assert http_get(port, "/boom")[0] == 500  # the app raises
        wait_until(lambda: len(json.loads(cli(home, "traces", "--json").stdout)) >= 3,
                   what="the app's traces in the store")
    finally:
        stop(app)
    pid = daemon_pid(home)
    assert first_line.startswith(f"xray-autoinst: started a local daemon (pid {pid}) on udp ")
    assert f"stores traces in {store}" in first_line
    assert "`xray-autoinst daemon --stop`" in first_line

    traces = json.loads(cli(home, "traces", "--json").stdout)
    by_path = {t["url"].split("/", 3)[-1]: t for t in traces}
    orders = by_path["orders?id=1"]
    assert orders["service"] == "shop" and orders["method"] == "GET"
    assert orders["status"] == 200 and orders["fault"] is False
    assert by_path["boom"]["fault"] is True
    table = cli(home, "traces").stdout
    assert orders["trace_id"] in table and "GET /orders?id=1" in table

    timeline = cli(home, "trace", by_path["boom"]["trace_id"], "--width", "120").stdout
    assert re.search(r"^shop  GET http://127\.0\.0\.1:\d+/boom\s+█+\s+[\d.]+ ms\s+500 fault",
                     timeline, re.M), timeline
    assert "! RuntimeError: boom from the app" in timeline
    merged = json.loads(cli(home, "trace", orders["trace_id"], "--json").stdout)
    assert merged["segments"][0]["name"] == "shop"

    graph = json.loads(cli(home, "map", "--json").stdout)
    (edge,) = [e for e in graph["edges"] if e["source"] == "client"]
    assert edge["target"] == "service:shop" and edge["requests"] >= 3
    assert edge["fault_rate"] > 0

    # the daemon is its own process, never traced, and stays for the next run
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"XRAY_ENABLED=false" in environ
    assert not any(e.startswith(b"PYTHONPATH=") and b"_startup" in e for e in environ)
    again = subprocess.run(xray_run("--local", sys.executable, "-c", "pass"), env=home,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0
    assert again.stderr.startswith(f"xray-autoinst: local daemon (pid {pid}) on udp ")
    assert daemon_pid(home) == pid

    stopped = cli(home, "daemon", "--stop")
    assert stopped.returncode == 0 and f"stopped the daemon (pid {pid})" in stopped.stderr
    assert not os.path.exists(f"{store}.pid")
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), what="the daemon gone")
    assert "stopped; totals: received" in Path(f"{store}.log").read_text()
    # the store outlives the daemon
    assert len(json.loads(cli(home, "traces", "--json").stdout)) == len(traces)


class _NotUs(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_foreign_listener_is_used_as_is(home):
    host, port = "127.0.0.1", int(home["AWS_XRAY_DAEMON_ADDRESS"].rsplit(":", 1)[1])
    other = HTTPServer((host, port), _NotUs)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        proc = subprocess.run(xray_run("--local", sys.executable, "-c", "print('ran')"),
                              env=home, capture_output=True, text=True, timeout=60)
    finally:
        other.shutdown()
        other.server_close()
    assert proc.returncode == 0 and proc.stdout == "ran\n"
    assert "is answered by something that is not the xray-autoinst daemon" in proc.stderr
    assert daemon_pid(home) is None


def test_daemon_detach_status_and_stop(tmp_path):
    env = base_env(HOME=tmp_path)
    port = free_udp_tcp_port()
    store = tmp_path / "s" / "t.db"
    started = cli(env, "daemon", "--detach", "--listen", f"127.0.0.1:{port}", "--store",
                  str(store))
    assert started.returncode == 0, started.stderr
    assert re.match(rf"xray-autoinst: daemon started \(pid \d+\) on udp 127.0.0.1:{port}, "
                    rf"stores traces in {store}; log {store}.log", started.stderr)
    status = json.loads(cli(env, "daemon", "--status", "--store", str(store)).stdout)
    assert status["store"] == str(store) and status["udp"] == f"127.0.0.1:{port}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        now = time.time()
        doc = {"name": "d", "id": "1" * 16, "trace_id": f"1-{int(now):08x}-{'2' * 24}",
               "start_time": now, "end_time": now + 1}
        s.sendto(b'{"format": "json", "version": 1}\n' + json.dumps(doc).encode(),
                 ("127.0.0.1", port))
    wait_until(lambda: json.loads(cli(env, "traces", "--json", "--store", str(store)).stdout),
               what="the document stored")
    assert cli(env, "daemon", "--stop", "--store", str(store)).returncode == 0
    assert cli(env, "daemon", "--status", "--store", str(store)).returncode == 1
