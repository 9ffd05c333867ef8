"""``xray-autoinst daemon`` as a user runs it: real UDP and TCP on loopback, the SQLite store,
the views reading it while the daemon runs, eviction, junk datagrams, SIGTERM."""

import json
import re
import socket
import subprocess
import time

import pytest
from daemon_testing import (
    XRAY_AUTOINST,
    Daemon,
    base_env,
    datagram,
    free_udp_tcp_port,
    segment,
    trace_id,
    wait_until,
)
from xray_testing import validate


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path, "--summary-interval", "1")
    yield d
    d.stop()


def test_documents_merge_junk_is_counted_and_views_show_the_trace(daemon):
    now = time.time()
    t1, t2 = trace_id(1, now), trace_id(2, now)
    web_id, call_id = "a" * 16, "c" * 16
    in_progress = segment(t1, web_id, now, name="web", http={
        "request": {"method": "GET", "url": "http://localhost:8000/orders?id=7"}})
    streamed = segment(t1, "b" * 16, now + 0.01, now + 0.05, name="DynamoDB", type="subsegment",
                       parent_id=web_id, namespace="aws",
                       aws={"operation": "GetItem", "table_name": "orders"})
    complete = segment(t1, web_id, now, now + 0.2, name="web", fault=True, http={
        "request": {"method": "GET", "url": "http://localhost:8000/orders?id=7"},
        "response": {"status": 500}}, subsegments=[
            segment(t1, call_id, now + 0.06, now + 0.19, name="pay.internal", namespace="remote",
                    http={"request": {"method": "POST", "url": "http://pay.internal/x"},
                          "response": {"status": 503}}, fault=True)])
    del complete["subsegments"][0]["trace_id"]
    downstream = segment(t1, "d" * 16, now + 0.07, now + 0.18, name="payments",
                         parent_id=call_id, http={"response": {"status": 503}}, fault=True)
    big = segment(t2, "e" * 16, now + 1, now + 1.5, name="worker",
                  metadata={"default": {"blob": "x" * 60_000}})
    for doc in (in_progress, streamed, complete, downstream, big):
        validate(doc)
    daemon.send(in_progress, streamed)
    daemon.wait_counter("stored", 2)  # the in_progress copy is stored first...
    junk = [
        json.dumps(complete).encode(),  # no header line
        b'{"format": "json", "version": 2}\n' + json.dumps(complete).encode(),
        b'{"format": "json", "version": 1}\n{"name": "broken",',
        datagram({"name": "no ids", "start_time": now}),
        b"",
        b'{"format": "json", "version": 1}\n',
    ]
    daemon.send(complete, downstream, big, *junk)
    # a document over the 64 KB limit cannot even leave the sender (EMSGSIZE)
    with pytest.raises(OSError):
        daemon.sock.sendto(datagram(segment(t2, "f" * 16, now, now + 1, pad="x" * 70_000)),
                           ("127.0.0.1", daemon.port))
    c = daemon.settled(received=11)
    assert (c["received"], c["stored"], c["dropped"]) == (11, 5, 6)
    assert (c["no_header"], c["bad_header"], c["bad_json"], c["invalid"], c["empty"]) == (
        1, 1, 1, 1, 2)
    assert daemon.proc.poll() is None  # junk never stops it

    traces = daemon.view_json("traces")
    assert [t["trace_id"] for t in traces] == [t2, t1]
    web = traces[1]
    assert (web["service"], web["method"], web["url"], web["status"]) == (
        "web", "GET", "http://localhost:8000/orders?id=7", 500)
    assert (web["segments"], web["fault"], web["error"], web["throttle"]) == (2, True, False,
                                                                            False)
    assert web["duration"] == pytest.approx(0.2, abs=1e-3)
    assert daemon.view_json("traces", "--status", "5xx", "--min-duration", "0.1") == [web]
    assert [t["service"] for t in daemon.view_json("traces", "--service", "work*")] == ["worker"]

    merged = daemon.view_json("trace", t1)
    (root, down) = merged["segments"]
    assert root["id"] == web_id and "in_progress" not in root  # the complete copy replaced it
    assert [s["name"] for s in root["subsegments"]] == ["DynamoDB", "pay.internal"]
    assert down["name"] == "payments" and down["parent_id"] == call_id
    timeline = daemon.view("trace", t1, "--width", "140").stdout
    assert re.search(r"└─ payments .*503 fault", timeline)
    assert "DynamoDB  GetItem orders" in timeline

    graph = daemon.view_json("map")
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    assert edges == {("client", "service:web"), ("client", "service:worker"),
                     ("service:web", "aws:DynamoDB"), ("service:web", "service:payments")}
    assert daemon.view("map", "--dot").stdout.startswith("digraph")

    # the once-a-minute summary line (every second here)
    wait_until(lambda: re.search(r"last 1s: received \d+, dropped \d+", daemon.log()),
               what="a summary line")
    assert daemon.stop() == 0
    log = daemon.log()
    assert "stopped; totals: received 11, dropped 6 (empty 2, no header 1, bad header 1, " \
           "bad json 1, invalid 1), stored 5" in log


def test_sigterm_stores_everything_received(tmp_path):
    d = Daemon(tmp_path)
    now = time.time()
    docs = [datagram(segment(trace_id(n, now), f"{n:016x}", now, now + 0.01))
            for n in range(3000)]
    for data in docs:
        d.sock.sendto(data, ("127.0.0.1", d.port))
    assert d.stop() == 0  # SIGTERM right after the burst
    totals = re.search(r"totals: received (\d+), dropped (\d+).*stored (\d+)", d.log())
    received, dropped, stored = map(int, totals.groups())
    assert dropped == 0 and stored == received
    assert received == 3000  # loopback with a large receive buffer: nothing lost
    proc = subprocess.run([XRAY_AUTOINST, "traces", "--json", "--limit", "5000", "--store",
                           d.store], capture_output=True, text=True, env=base_env(), timeout=60)
    assert len(json.loads(proc.stdout)) == 3000


def test_oldest_traces_are_evicted(tmp_path):
    d = Daemon(tmp_path, "--max-traces", "5")
    now = time.time()
    ids = [trace_id(n, now) for n in range(20)]
    for n, t in enumerate(ids):
        d.send(segment(t, f"{n:016x}", now + n, now + n + 0.5))
        time.sleep(0.01)
    d.settled(received=20)
    wait_until(lambda: d.counters()["traces"] == 5, what="eviction")
    assert [t["trace_id"] for t in d.view_json("traces")] == ids[:-6:-1]
    assert d.counters()["evicted"] == 15
    assert d.stop() == 0


def test_start_up_errors_are_reported(tmp_path):
    port = free_udp_tcp_port()
    env = base_env()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", port))
        proc = subprocess.run([XRAY_AUTOINST, "daemon", "--listen", f"127.0.0.1:{port}",
                               "--store", str(tmp_path / "a.db")],
                              capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 1
    assert f"cannot listen on udp 127.0.0.1:{port}" in proc.stderr

    first = Daemon(tmp_path)
    try:
        proc = subprocess.run([XRAY_AUTOINST, "daemon", "--listen",
                               f"127.0.0.1:{free_udp_tcp_port()}", "--store", first.store],
                              capture_output=True, text=True, env=env, timeout=30)
        assert proc.returncode == 1 and "already uses store" in proc.stderr
    finally:
        first.stop()

    no_region = base_env(AWS_CONFIG_FILE=str(tmp_path / "none"))
    no_region.pop("AWS_DEFAULT_REGION")
    proc = subprocess.run([XRAY_AUTOINST, "daemon", "--listen",
                           f"127.0.0.1:{free_udp_tcp_port()}", "--store",
                           str(tmp_path / "b.db"), "--forward"],
                          capture_output=True, text=True, env=no_region, timeout=30)
    assert proc.returncode == 1 and "needs an AWS region" in proc.stderr
