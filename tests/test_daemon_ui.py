"""The browser console's JSON API (``daemon.console``) and HTTP server (``daemon.ui``), without a
browser: filters, histogram, bounds, caches following the store, the map, the headers."""

import http.client
import json
import threading

import pytest

from xray_autoinst.daemon import console as console_mod
from xray_autoinst.daemon import ui
from xray_autoinst.daemon.protocol import decode, encode
from xray_autoinst.daemon.store import Store

T0 = 1_700_000_000.0


def tid(n: int) -> str:
    return f"1-6553f100-{n:024x}"


def seg(n, name="api", status=200, duration=0.1, start=None, **extra):
    start = T0 + n if start is None else start
    d = {"name": name, "id": f"{n:016x}", "trace_id": tid(n), "start_time": start,
         "end_time": start + duration,
         "http": {"request": {"method": "GET", "url": f"http://h/orders/{n}"},
                  "response": {"status": status}}}
    if status >= 500:
        d["fault"] = True
    elif status == 429:
        d["error"] = d["throttle"] = True
    elif status >= 400:
        d["error"] = True
    d.update(extra)
    return d


def write(store, *docs):
    store.write([decode(encode(d), T0)[1] for d in docs])


@pytest.fixture
def store(tmp_path):
    s = Store.open_writer(str(tmp_path / "traces.db"))
    write(s, seg(0), seg(1, status=500, duration=0.5), seg(2, name="worker", status=404),
          seg(3, status=429, duration=0.3))
    yield s
    s.close()


@pytest.fixture
def console(store):
    c = console_mod.Console(store.path)
    yield c
    c.close()


def ids(answer):
    return [t["trace_id"] for t in answer["traces"]]


@pytest.mark.parametrize(
    "params, expected",
    [
        ({}, [3, 2, 1, 0]),
        ({"service": ["work*"]}, [2]),
        ({"status": ["5xx"]}, [1]),
        ({"status": ["404"]}, [2]),
        ({"mark": ["fault"]}, [1]),
        ({"mark": ["error"]}, [3, 2]),
        ({"mark": ["throttle"]}, [3]),
        ({"mark": ["ok"]}, [0]),
        ({"q": ["ORDERS/1"]}, [1]),
        ({"min": ["0.25"]}, [3, 1]),
        ({"min": ["0.25"], "max": ["0.4"]}, [3]),
        ({"since": [str(T0 + 1)], "until": [str(T0 + 2)]}, [2, 1]),
        ({"trace": [tid(2)[-6:]]}, [2]),
        ({"limit": ["2"]}, [3, 2]),
    ],
)
def test_trace_filters(console, params, expected):
    answer = console.traces(params)
    assert ids(answer) == [tid(n) for n in expected]
    if "limit" not in params:
        assert answer["total"] == len(expected)
    assert answer["store_traces"] == 4 and answer["services"] == ["api", "worker"]


@pytest.mark.parametrize(
    "params, word",
    [({"limit": ["100000"]}, "limit"), ({"limit": ["0"]}, "limit"), ({"min": ["abc"]}, "min"),
     ({"min": ["nan"]}, "min"), ({"status": ["50"]}, "status"), ({"mark": ["bad"]}, "mark"),
     ({"q": ["x" * 300]}, "q")],
)
def test_bounded_parameters(console, params, word):
    with pytest.raises(console_mod.BadRequest, match=word):
        console.traces(params)


def test_histogram_counts_the_matching_traces(console):
    hist = console.traces({})["histogram"]
    assert len(hist["bins"]) == console_mod.HISTOGRAM_BINS
    assert sum(b["count"] for b in hist["bins"]) == 4
    assert hist["bins"][0]["lo"] == 0.0 and hist["bins"][-1]["hi"] == pytest.approx(0.5)
    assert console_mod._histogram([]) == {"bins": [], "in_progress": 0}
    one = console_mod._histogram([0.2, None])
    assert sum(b["count"] for b in one["bins"]) == 1 and one["in_progress"] == 1


def test_caches_follow_the_store(store, console):
    assert console.traces({})["total"] == 4
    write(store, seg(9, name="late"))  # a new trace
    answer = console.traces({})
    assert ids(answer)[0] == tid(9) and answer["total"] == 5
    # a trace that grows: a second segment arrives later (its last_seen changes)
    later = seg(20, name="callee", start=T0 + 0.01)
    later.update(trace_id=tid(0), parent_id="f" * 16)
    store.write([decode(encode(later), T0 + 5)[1]])
    (item,) = console.traces({"trace": [tid(0)]})["traces"]
    assert item["services"] == ["api", "callee"] and item["segments"] == 2
    store.max_traces = 2
    store.evict()
    assert console.traces({})["total"] == 2
    assert console.graph({})["traces"] == 2


def test_cold_cache_reads_everything_at_once(tmp_path):
    s = Store.open_writer(str(tmp_path / "big.db"))
    write(s, *(seg(n) for n in range(console_mod.COLD_BATCH + 50)))
    c = console_mod.Console(s.path)
    try:
        assert c.traces({})["total"] == console_mod.COLD_BATCH + 50
    finally:
        c.close()
        s.close()


def test_one_trace_and_the_map(store, console):
    call = {"id": "c" * 16, "name": "db", "start_time": T0 + 0.01, "end_time": T0 + 0.06,
            "namespace": "remote", "sql": {"sanitized_query": "SELECT 1", "database_type": "x"}}
    write(store, seg(5, subsegments=[call]))
    merged = console.trace(tid(5))
    assert merged["segments"][0]["subsegments"][0]["sql"]["sanitized_query"] == "SELECT 1"
    assert merged["documents"] == 1
    assert console.trace("1-6553f100") is None  # a prefix of several
    assert console.trace("latest")["trace_id"] == tid(5)
    graph = console.graph({})
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert nodes["service:api"]["requests"] == 4 and "database:db" in nodes
    assert console.graph({"service": ["worker"]})["nodes"][0]["id"] in ("client", "service:worker")
    assert console.graph({"since": [str(T0 + 4.5)]})["traces"] == 1
    # the map's node filter on the trace list
    assert ids(console.traces({"node": ["database:db"]})) == [tid(5)]


def test_a_missing_store(tmp_path):
    c = console_mod.Console(str(tmp_path / "none.db"))
    assert c.traces({})["store_exists"] is False
    assert c.graph({})["nodes"] == []
    assert c.trace("latest") is None
    assert c.status()["store_exists"] is False


@pytest.fixture
def server(store):
    srv = ui.make_server(store.path, "127.0.0.1", 0)
    thread = ui.serve_in_thread(srv)
    yield srv
    srv.shutdown()
    srv.server_close()
    srv.console.close()
    thread.join(5)


def request(server, path, method="GET", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp, body


def test_http_api_and_headers(server):
    resp, body = request(server, "/api/traces?status=5xx")
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("application/json")
    assert [t["status"] for t in json.loads(body)["traces"]] == [500]
    assert "script-src 'self'" in resp.getheader("Content-Security-Policy")
    assert resp.getheader("X-Content-Type-Options") == "nosniff"
    resp, body = request(server, "/api/traces/" + tid(1))
    assert resp.status == 200 and json.loads(body)["trace_id"] == tid(1)
    resp, body = request(server, "/api/traces/1-00000000-nope")
    assert resp.status == 404
    resp, body = request(server, "/api/map")
    assert resp.status == 200 and json.loads(body)["traces"] == 4
    resp, body = request(server, "/api/status")
    assert json.loads(body)["traces"] == 4
    resp, body = request(server, "/api/traces?limit=5000")
    assert resp.status == 400 and "limit" in json.loads(body)["error"]
    resp, body = request(server, "/api/traces?" + "q=" + "x" * 5000)
    assert resp.status == 400
    resp, body = request(server, "/api/traces?" + "&".join(f"a{i}=1" for i in range(60)))
    assert resp.status == 400 and "parameters" in json.loads(body)["error"]


def test_http_serves_the_page_and_its_modules_only(server):
    resp, body = request(server, "/")
    assert resp.status == 200 and b'<script type="module" src="/static/app.js">' in body
    for name in ("app.js", "dom.js", "traces.js", "timeline.js", "map.js", "console.css"):
        resp, body = request(server, "/static/" + name)
        assert resp.status == 200 and body
    resp, _ = request(server, "/static/app.js", method="HEAD")
    assert resp.status == 200
    for path in ("/static/../ui.py", "/static/%2e%2e/ui.py", "/static/nothing.js", "/etc/passwd"):
        assert request(server, path)[0].status == 404


def test_http_is_read_only_and_loopback_only(server):
    for method in ("POST", "PUT", "DELETE"):
        assert request(server, "/api/traces", method=method)[0].status == 405
    assert request(server, "/", headers={"Host": "attacker.example"})[0].status == 403
    assert request(server, "/", headers={"Host": "localhost:2001"})[0].status == 200
    assert request(server, "/", headers={"Host": "[::1]:2001"})[0].status == 200


def test_no_innerhtml_in_the_page():
    """Text from traces only reaches the DOM through textContent and attribute values."""
    import os

    for name in os.listdir(ui.STATIC_DIR):
        text = open(os.path.join(ui.STATIC_DIR, name), encoding="utf-8").read()
        for bad in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                    "new Function", "http://", "https://"):
            assert bad not in text.replace("http://www.w3.org/2000/svg", ""), (name, bad)


def test_the_console_answers_while_the_store_is_written(store, console):
    stop = threading.Event()

    def writer():
        n = 100
        while not stop.is_set():
            write(store, seg(n))
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(20):
            assert console.traces({})["total"] >= 4
            console.graph({})
    finally:
        stop.set()
        thread.join()


def test_the_running_map_equals_a_fresh_one(store, console):
    """The map of every trace is kept as running sums: after traces are added, changed and
    evicted it is the map computed afresh."""
    console.graph({})
    write(store, seg(30, name="new"), seg(31, status=500))
    later = seg(40, name="callee", start=T0 + 0.02)
    later.update(trace_id=tid(1), parent_id="f" * 16)
    write(store, later)
    store.max_traces = 4
    store.evict()
    running = console.graph({})
    fresh = console_mod.Console(store.path)
    try:
        expected = fresh.graph({"limit": ["9999"]})  # not every trace? the same ones here
        assert running["traces"] == expected["traces"] == 4
        key = lambda g: sorted((n["id"], n["requests"]) for n in g["nodes"])  # noqa: E731
        assert key(running) == key(expected)
        assert sorted((e["source"], e["target"], e["requests"]) for e in running["edges"]) == \
            sorted((e["source"], e["target"], e["requests"]) for e in expected["edges"])
    finally:
        fresh.close()


def test_a_map_keeps_its_busiest_nodes():
    graph = {"traces": 1, "nodes": [{"id": "client", "requests": 1}] + [
        {"id": f"remote:h{i}", "requests": i} for i in range(10)],
        "edges": [{"source": "client", "target": f"remote:h{i}"} for i in range(10)]}
    small = console_mod._bounded(graph, 4)
    assert [n["id"] for n in small["nodes"]] == ["client", "remote:h9", "remote:h8", "remote:h7"]
    assert len(small["edges"]) == 3 and small["nodes_left_out"] == 7
    assert console_mod._bounded(graph, 100)["nodes_left_out"] == 0


def test_a_few_new_traces_go_in_at_their_place(store, console):
    console.traces({})
    # one older than all, one in the middle, one newest; then one of them grows
    write(store, seg(50, start=T0 - 100), seg(51, start=T0 + 1.5), seg(52, start=T0 + 99))
    order = [t["start_time"] for t in console.traces({"limit": ["1000"]})["traces"]]
    assert order == sorted(order, reverse=True) and len(order) == 7
    grown = seg(60, name="late-callee", start=T0 + 1.6)
    grown.update(trace_id=tid(51), parent_id="f" * 16)
    store.write([decode(encode(grown), T0 + 50)[1]])
    answer = console.traces({"limit": ["1000"]})
    assert [t["trace_id"] for t in answer["traces"]].count(tid(51)) == 1
    assert "late-callee" in answer["services"]
    (item,) = console.traces({"service": ["late-*"]})["traces"]
    assert item["segments"] == 2
    fresh = console_mod.Console(store.path)
    try:
        assert fresh.traces({"limit": ["1000"]})["traces"] == answer["traces"]
    finally:
        fresh.close()
