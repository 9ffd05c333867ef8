"""How fast the browser console answers on a full store (issue 16: list and map <= 100 ms for a
store of 10,000 traces), beside the terminal views that read the same store.

    .venv/bin/python bench/bench_ui.py [--quick] [--traces N] [--out PATH] [--browser]

Builds a store of N traces (default 10,000, the daemon's default bound) shaped like a small
shop: a ``web`` segment (HTTP, 2 SQL queries, a DynamoDB call, an HTTP call) and the ``stock``
segment it called, 1 in 10 with a fault. Then measures, in this process (median of rounds):

  api list (cold)              the first ``GET /api/traces`` of a console: every summary
  api list +1 trace            ``GET /api/traces`` right after one more trace was stored
                               (what each poll of the live list pays while traffic flows)
  api list filtered +1 trace   the same with ``service=stock&mark=fault&q=/orders``
  api list, idle store         again with nothing new (the answer is remembered)
  api map (cold)               the first ``GET /api/map`` of all N traces: every document
  api map +1 trace             after one more trace (the running sums move by one trace)
  api map, idle store          again with nothing new
  api trace                    ``GET /api/traces/ID`` of a 3,000-subsegment trace
  http list / map +1 trace     the same through the HTTP server on loopback (JSON, socket)
  terminal traces      what ``xray-autoinst traces`` does (50 newest, no filter)
  terminal traces -f   ``xray-autoinst traces --service stock --status 5xx`` (a scan)
  terminal map         what ``xray-autoinst map`` does (its default: the 1,000 newest traces)

With ``--browser`` (needs /usr/bin/chromium and chromedriver, selenium): the time for the page
to draw the 3,000-subsegment trace, the trace list and the map in headless Chromium.

No other local X-Ray viewer exists to compare with (the issue's point); Jaeger and
otel-desktop-viewer read other formats, and were not installed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from xray_autoinst.daemon import console as console_mod  # noqa: E402
from xray_autoinst.daemon import servicemap, ui  # noqa: E402
from xray_autoinst.daemon.protocol import decode, encode  # noqa: E402
from xray_autoinst.daemon.store import Store  # noqa: E402
from xray_autoinst.daemon.tree import merged_trace  # noqa: E402

T0 = time.time() - 3600
TARGET_MS = 100.0


def _hex(rng, n):
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def shop_trace(n: int, rng: random.Random) -> list[dict]:
    start = T0 + n * 0.3
    trace_id = f"1-{int(start):08x}-{n:024x}"
    fault = n % 10 == 0
    web_id, call_id = f"{n:016x}", _hex(rng, 16)
    d = rng.uniform(0.01, 0.2)
    subs = [
        {"id": _hex(rng, 16), "name": "orders@db", "namespace": "remote",
         "start_time": start + 0.001, "end_time": start + 0.003,
         "sql": {"sanitized_query": "SELECT * FROM orders WHERE id = %s",
                 "database_type": "PostgreSQL", "url": "postgresql://db/shop"}},
        {"id": _hex(rng, 16), "name": "orders@db", "namespace": "remote",
         "start_time": start + 0.004, "end_time": start + 0.006,
         "sql": {"sanitized_query": "UPDATE orders SET seen = now() WHERE id = %s",
                 "database_type": "PostgreSQL", "url": "postgresql://db/shop"}},
        {"id": _hex(rng, 16), "name": "DynamoDB", "namespace": "aws",
         "start_time": start + 0.006, "end_time": start + 0.01,
         "aws": {"operation": "GetItem", "table_name": "carts", "region": "eu-west-1"},
         "http": {"response": {"status": 200}}},
        {"id": call_id, "name": "stock.internal", "namespace": "remote",
         "start_time": start + 0.01, "end_time": start + d - 0.001, "fault": fault,
         "http": {"request": {"method": "GET", "url": f"http://stock.internal/level/{n}"},
                  "response": {"status": 503 if fault else 200}}},
    ]
    web = {"name": "web", "id": web_id, "trace_id": trace_id, "start_time": start,
           "end_time": start + d, "fault": fault, "origin": "AWS::EC2::Instance",
           "http": {"request": {"method": "GET", "url": f"http://shop.example/orders/{n}",
                                "user_agent": "bench/1.0", "client_ip": "10.0.0.1"},
                    "response": {"status": 502 if fault else 200}},
           "annotations": {"order": n}, "subsegments": subs}
    stock = {"name": "stock", "id": _hex(rng, 16), "trace_id": trace_id, "parent_id": call_id,
             "start_time": start + 0.011, "end_time": start + d - 0.002, "fault": fault,
             "http": {"request": {"method": "GET", "url": f"http://stock.internal/level/{n}"},
                      "response": {"status": 503 if fault else 200}}}
    return [web, stock]


def big_trace(subsegments: int) -> list[dict]:
    """One trace with ``subsegments`` subsegments, streamed as separate documents (as the
    agent streams a segment that grows past its limit)."""
    start = time.time() - 10
    trace_id = f"1-{int(start):08x}-{'f' * 24}"
    root = {"name": "batch", "id": "b" * 16, "trace_id": trace_id, "start_time": start,
            "end_time": start + 3.0}
    docs = [root]
    for i in range(subsegments):
        docs.append({"type": "subsegment", "name": "orders@db", "id": f"{i:016x}",
                     "trace_id": trace_id, "parent_id": root["id"],
                     "start_time": start + i * 0.001, "end_time": start + i * 0.001 + 0.0008,
                     "namespace": "remote",
                     "sql": {"sanitized_query": f"SELECT * FROM t WHERE id = %s -- {i}"}})
    return docs


def fill(path: str, traces: int) -> Store:
    store = Store.open_writer(path, max_traces=traces + 10)
    rng = random.Random(7)
    batch: list[tuple] = []
    for n in range(traces):
        for doc in shop_trace(n, rng):
            batch.append(decode(encode(doc), T0)[1])
        if len(batch) >= 2000:
            store.write(batch)
            batch = []
    store.write(batch)
    return store


def timed(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def http_get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    body = conn.getresponse().read()
    conn.close()
    return body


def browser_times(url: str, big_id: str, rounds: int) -> dict:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    profile = tempfile.mkdtemp(prefix="bench-ui-chrome-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1400,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    out = {}
    try:
        for label, route, js in (
            ("page trace 3000 rows", f"#/trace/{big_id}",
             "return document.querySelectorAll('#timeline-rows .row').length > 3000"),
            ("page trace list", "#/traces",
             "return document.querySelectorAll('tr.trace-row').length > 0"),
            ("page map", "#/map", "return document.querySelectorAll('#map-svg .node').length > 0"),
        ):
            times = []
            for _ in range(rounds):
                driver.get("about:blank")
                t = time.perf_counter()
                driver.get(url + route)
                WebDriverWait(driver, 60, poll_frequency=0.01).until(
                    lambda d, js=js: d.execute_script(js))
                times.append((time.perf_counter() - t) * 1000)
            out[label] = times
    finally:
        driver.quit()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds (same store size)")
    p.add_argument("--traces", type=int, default=10_000)
    p.add_argument("--out", help="write the results as JSON to PATH")
    p.add_argument("--browser", action="store_true", help="also time the page in Chromium")
    args = p.parse_args(argv)
    rounds = 5 if args.quick else 21
    workdir = tempfile.mkdtemp(prefix="bench-ui-")
    path = os.path.join(workdir, "traces.db")
    t = time.perf_counter()
    store = fill(path, args.traces)
    big = big_trace(3000)
    store.write([decode(encode(d), time.time())[1] for d in big])
    fill_s = time.perf_counter() - t
    results: dict[str, list[float]] = {}

    console = console_mod.Console(path)
    rng = random.Random(9)
    extra = [args.traces + 100]

    def new_trace():
        extra[0] += 1
        store.write([decode(encode(d), time.time())[1] for d in shop_trace(extra[0], rng)])

    def after_new_trace(fn):
        """Time ``fn`` after one more trace was stored (what a live poll pays)."""
        def run():
            out = []
            for _ in range(rounds):
                new_trace()
                t0 = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t0) * 1000)
            return out
        return run

    filtered = {"service": ["stock"], "mark": ["fault"], "q": ["/orders"]}
    results["api list (cold)"] = timed(lambda: console.traces({}), 1)
    results["api list +1 trace"] = after_new_trace(lambda: console.traces({}))()
    results["api list filtered +1 trace"] = after_new_trace(lambda: console.traces(filtered))()
    results["api list, idle store"] = timed(lambda: console.traces({}), rounds)
    results["api map (cold)"] = timed(lambda: console.graph({}), 1)
    results["api map +1 trace"] = after_new_trace(lambda: console.graph({}))()
    results["api map, idle store"] = timed(lambda: console.graph({}), rounds)
    big_id = big[0]["trace_id"]
    results["api trace 3000 subsegments"] = timed(lambda: console.trace(big_id), rounds)
    trace_bytes = len(json.dumps(console.trace(big_id)))

    server = ui.make_server(path, "127.0.0.1", 0)
    thread = ui.serve_in_thread(server, warm=False)
    port = server.server_address[1]
    http_get(port, "/api/traces")
    http_get(port, "/api/map")
    results["http list +1 trace"] = after_new_trace(lambda: http_get(port, "/api/traces"))()
    results["http map +1 trace"] = after_new_trace(lambda: http_get(port, "/api/map"))()
    if args.browser:
        try:
            results.update(browser_times(server.url, big_id, max(3, rounds // 4)))
        except Exception as exc:  # no browser here: say so, measure the rest
            sys.stderr.write(f"bench_ui: no browser timings ({exc.__class__.__name__}: {exc})\n")

    reader = Store.open_reader(path)
    results["terminal traces"] = timed(lambda: reader.summaries(limit=50), rounds)
    results["terminal traces -f"] = timed(
        lambda: reader.summaries(limit=50, service="stock", status="5xx"), max(3, rounds // 4))

    def terminal_map():
        servicemap.build_map([merged_trace(t, reader.documents(t))
                         for t in reader.trace_ids(limit=1000)])

    results["terminal map (1000 traces)"] = timed(terminal_map, max(3, rounds // 4))
    reader.close_reader()
    server.shutdown()
    server.server_close()
    thread.join(5)
    console.close()
    store.close()

    medians = {k: statistics.median(v) for k, v in results.items()}
    base_list, base_map = medians["terminal traces"], medians["terminal map (1000 traces)"]
    print(f"store: {args.traces} traces ({2 * args.traces + 3001} documents, "
          f"{os.path.getsize(path) / 1e6:.1f} MB, filled in {fill_s:.1f} s); "
          f"rounds: {rounds}; the 3,000-subsegment trace is {trace_bytes / 1e6:.2f} MB of JSON")
    print()
    print("| measurement | median ms | vs terminal traces | vs terminal map | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    for key, value in medians.items():
        target = ""
        if "+1 trace" in key or "idle" in key:
            target = f"<= {TARGET_MS:.0f} ms: " + ("met" if value <= TARGET_MS else "MISSED")
        print(f"| {key} | {value:.1f} | {value / base_list:.2f}x | {value / base_map:.2f}x "
              f"| {target} |")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"traces": args.traces, "rounds": rounds, "target_ms": TARGET_MS,
                       "trace_json_bytes": trace_bytes,
                       "median_ms": medians, "samples_ms": results}, f, indent=2)
    import shutil

    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
