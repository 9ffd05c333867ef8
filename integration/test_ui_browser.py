"""The browser console (``xray-autoinst daemon --ui``) in a real Chromium, driven by selenium.

A real daemon stores what two real services under ``xray-run`` send: ``shop`` (SQLite, then an
HTTP call to ``stock``), a failing request and one whose URL, user agent and exception message
hold markup; plus one hand-made document with markup in every text field. One browser for the
module. Screenshots of each view land in $XRAY_UI_ARTIFACTS (default: artifacts/ui).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from daemon_testing import HEADER, XRAY_AUTOINST, base_env, free_udp_tcp_port, wait_until
from xray_testing import free_port, skip_or_fail, stop, wait_http, xray_run

ROOT = Path(__file__).resolve().parent.parent
APP = Path(__file__).resolve().parent / "apps" / "uiapp.py"
RULES = '{"version": 2, "default": {"fixed_target": 0, "rate": 1.0}}'
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("XRAY_UI_ARTIFACTS") or ROOT / "artifacts" / "ui")
MARKUP = '<img src=x onerror="window.__xss=5"><script>window.__xss=6</script>'
XSS_UA = "<script>window.__xss=4</script>"
XSS_PATH = "/xss?q=<script>window.__xss=3</script>"
WAIT = 20.0


def _need_browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        hint = "run scripts/system-deps.sh (apt-get install chromium chromium-driver)"
        skip_or_fail(f"missing {', '.join(missing)}: {hint}")


def _port_open(port) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _get(port, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


class World:
    """The processes behind the console and what they were asked."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.store = workdir / "traces.db"
        self.procs: list[subprocess.Popen] = []
        self.env = base_env(XRAY_SAMPLING="local", XRAY_SAMPLING_RULES=RULES,
                            XDG_DATA_HOME=workdir, HOME=workdir)

    def api(self, path):
        with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=10) as r:
            return json.loads(r.read())

    def start(self):
        port = free_udp_tcp_port()
        self.daemon_addr = f"127.0.0.1:{port}"
        log = open(self.workdir / "daemon.log", "w")  # noqa: SIM115
        self.daemon = subprocess.Popen(
            [XRAY_AUTOINST, "daemon", "--listen", self.daemon_addr, "--store", str(self.store),
             "--ui", "--ui-port", "0", "--summary-interval", "3600"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(self.daemon)
        pid_file = Path(f"{self.store}.pid")

        def ready():
            try:
                info = json.loads(pid_file.read_text())
            except (OSError, ValueError):
                return None
            return info if info.get("ui") else None

        info = wait_until(ready, timeout=WAIT, what="the daemon's console")
        self.url = info["ui"]
        self.ui_port = int(self.url.rstrip("/").rsplit(":", 1)[1])
        app_env = dict(self.env, AWS_XRAY_DAEMON_ADDRESS=self.daemon_addr)
        self.stock_port, self.shop_port = free_port(), free_port()
        for name, args in (("stock", [str(self.stock_port)]),
                           ("shop", [str(self.shop_port), str(self.stock_port)])):
            out = open(self.workdir / f"{name}.log", "w")  # noqa: SIM115
            proc = subprocess.Popen(
                xray_run(sys.executable, str(APP), name, *args),
                env=dict(app_env, XRAY_SERVICE_NAME=name), stdout=out, stderr=subprocess.STDOUT)
            self.procs.append(proc)
        # the stock service: a TCP connect (an HTTP probe would be a trace of its own)
        wait_until(lambda: _port_open(self.stock_port), timeout=WAIT, what="the stock service")
        wait_http(self.shop_port, "/orders", proc=self.procs[-1])  # the first /orders trace

    def request(self, path, headers=None):
        return _get(self.shop_port, path, headers)

    def send_document(self, doc: dict):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(HEADER + json.dumps(doc).encode(), ("127.0.0.1", int(
                self.daemon_addr.rsplit(":", 1)[1])))

    def close(self):
        for proc in reversed(self.procs):
            stop(proc)


def _xss_document() -> dict:
    now = time.time()
    trace_id = "1-%08x-%s" % (int(now), "abcdef0123456789abcdef01")
    return {
        "trace_id": trace_id, "id": "1234567890abcdef", "name": MARKUP,
        "start_time": now - 0.2, "end_time": now, "fault": True,
        "http": {"request": {"method": "GET", "url": f"http://evil.example/{MARKUP}",
                             "user_agent": XSS_UA},
                 "response": {"status": 500}},
        "annotations": {"note": MARKUP},
        "metadata": {"default": {MARKUP: MARKUP}},
        "cause": {"exceptions": [{"id": "0123456789abcdef", "type": MARKUP, "message": MARKUP,
                                  "stack": [{"path": MARKUP, "line": 1, "label": MARKUP}]}]},
        "subsegments": [{"id": "2234567890abcdef", "name": MARKUP, "start_time": now - 0.1,
                         "end_time": now - 0.05, "namespace": "remote",
                         "sql": {"sanitized_query": f"SELECT '{MARKUP}'", "url": MARKUP},
                         "http": {"request": {"url": f"http://{MARKUP}/"}}},
                        {"id": "3234567890abcdef", "name": "still-running",
                         "start_time": now - 0.04, "in_progress": True}],
    }


@pytest.fixture(scope="module")
def world():
    _need_browser()
    workdir = Path(tempfile.mkdtemp(prefix="xray-ui-"))
    w = World(workdir)
    try:
        w.start()
        assert w.request("/orders")[0] == 200
        assert w.request("/orders")[0] == 200
        assert w.request("/boom")[0] == 500
        assert w.request(XSS_PATH, {"User-Agent": XSS_UA})[0] == 500

        def stored():
            data = w.api("/api/traces?limit=1000")
            urls = [t["url"] or "" for t in data["traces"]]
            done = sum(1 for t in data["traces"] if not t["in_progress"])
            return (sum("/orders" in u and "/level" not in u for u in urls) >= 3
                    and any("/boom" in u for u in urls) and any("/xss" in u for u in urls)
                    and done == len(data["traces"])) and data

        wait_until(stored, timeout=WAIT, what="the traces in the store")
        yield w
    finally:
        w.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(world):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="xray-ui-chrome-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1400,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, cond, what, timeout=WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: cond(d), message=f"timed out waiting for {what}")


def css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def rows(driver):
    """The trace ids listed (read in one script: the live list may redraw meanwhile)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('tr.trace-row')].map(r => r.dataset.traceId)")


def open_list(driver, world, query=""):
    driver.get(world.url + "#/traces" + query)
    wait_for(driver, lambda d: rows(d), "the trace list")


def no_xss(driver):
    assert driver.execute_script("return window.__xss === undefined"), "markup ran"


def test_list_shows_the_traces_newest_first(world, browser):
    stored = world.api("/api/traces?limit=1000")
    open_list(browser, world)
    wait_for(browser, lambda d: len(rows(d)) == stored["total"], "every trace listed")
    assert rows(browser) == [t["trace_id"] for t in stored["traces"]]
    text = css(browser, "#trace-table")[0].text
    assert "GET http://127.0.0.1:%d/orders" % world.shop_port in text
    assert "shop → stock" in text
    assert css(browser, "#histogram svg .bin")  # the latency histogram
    browser.save_screenshot(str(ARTIFACTS / "traces.png"))
    no_xss(browser)


def test_filters_narrow_the_list(world, browser):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    open_list(browser, world)
    box = css(browser, "#f-q")[0]
    box.send_keys("/boom", Keys.ENTER)
    wait_for(browser, lambda d: len(rows(d)) == 1, "only the /boom trace")
    assert "q=%2Fboom" in browser.current_url
    (boom,) = [t for t in world.api("/api/traces?q=/boom")["traces"]]
    assert rows(browser) == [boom["trace_id"]]
    css(browser, "#f-clear")[0].click()
    wait_for(browser, lambda d: len(rows(d)) > 1, "the whole list again")
    Select(css(browser, "#f-mark")[0]).select_by_value("fault")
    faults = [t["trace_id"] for t in world.api("/api/traces?mark=fault")["traces"]]
    wait_for(browser, lambda d: rows(d) == faults, "the faults only")
    assert len(faults) == 2  # /boom and /xss
    open_list(browser, world, "?service=stock")
    both = [t["trace_id"] for t in world.api("/api/traces?service=stock")["traces"]]
    wait_for(browser, lambda d: rows(d) == both, "the traces through stock")
    assert len(both) >= 3


def test_a_histogram_click_selects_a_range(world, browser):
    open_list(browser, world)
    before = len(rows(browser))
    bins = css(browser, "#histogram .bin")
    # the first bin that holds traces
    counts = [b["count"] for b in world.api("/api/traces")["histogram"]["bins"]]
    first = next(i for i, c in enumerate(counts) if c)
    bins[first].click()
    wait_for(browser, lambda d: "min_ms=" in d.current_url and "max_ms=" in d.current_url,
             "the range in the URL")
    from urllib.parse import parse_qs

    query = parse_qs(browser.current_url.split("?", 1)[1])
    lo, hi = (float(query[k][0]) / 1000 for k in ("min_ms", "max_ms"))
    inside = [t["trace_id"] for t in world.api(f"/api/traces?min={lo}&max={hi}")["traces"]]
    assert 0 < len(inside) < before
    wait_for(browser, lambda d: rows(d) == inside, "the traces of that range")
    assert css(browser, "#range-clear")


def test_timeline_rows_nesting_sql_and_cause(world, browser):
    orders = [t for t in world.api("/api/traces?q=/orders&service=stock")["traces"]
              if t["service"] == "shop"][0]
    browser.get(world.url + "#/trace/" + orders["trace_id"])
    wait_for(browser, lambda d: css(d, "#timeline-rows .row"), "the timeline")
    items = css(browser, "#timeline-rows .row")
    names = [r.get_attribute("data-name") for r in items]
    depths = [int(r.get_attribute("data-depth")) for r in items]
    assert names[0] == "shop" and depths[0] == 0
    stock = names.index("stock")
    # the stock service's segment sits under the shop's call to it, later on the same axis
    call = max(i for i in range(stock) if depths[i] < depths[stock])
    assert depths[stock] == depths[call] + 1
    assert names[call] == "127.0.0.1" or "127.0.0.1" in names[call], names
    sql = [i for i, r in enumerate(items) if "SELECT" in r.text]
    assert sql and depths[sql[0]] >= 1
    assert sql[0] < call  # the query ran before the call (rows in time order)
    items[sql[0]].click()
    query = wait_for(browser, lambda d: css(d, "#d-sql-query"), "the SQL details")[0].text
    assert "SELECT" in query and "secret-item" not in query
    browser.save_screenshot(str(ARTIFACTS / "trace.png"))

    boom = world.api("/api/traces?q=/boom")["traces"][0]
    browser.get(world.url + "#/trace/" + boom["trace_id"])
    wait_for(browser, lambda d: css(d, "#timeline-rows .row"), "the /boom timeline")
    first = css(browser, "#timeline-rows .row")[0]
    assert "fault" in first.find_element("css selector", ".bar").get_attribute("class")
    first.click()
    cause = wait_for(browser, lambda d: css(d, "#d-cause"), "the cause")[0].text
    assert "RuntimeError" in cause and "boom from the shop" in cause
    assert "uiapp.py" in cause  # the stack


def test_map_nodes_edges_and_counts(world, browser):
    graph = world.api("/api/map")
    browser.get(world.url + "#/map")
    wait_for(browser, lambda d: css(d, "#map-svg .node"), "the map")
    ids = {n.get_attribute("data-node-id") for n in css(browser, "#map-svg .node")}
    assert {"client", "service:shop", "service:stock"} <= ids
    assert any(i.startswith("database:") for i in ids)
    assert ids == {n["id"] for n in graph["nodes"]}
    edges = {(e.get_attribute("data-source"), e.get_attribute("data-target")): e.text
             for e in css(browser, "#map-svg .edge")}
    by_pair = {(e["source"], e["target"]): e for e in graph["edges"]}
    shop_stock = by_pair[("service:shop", "service:stock")]
    assert shop_stock["requests"] == 3  # wait_http's /orders and the fixture's two
    assert f"{shop_stock['requests']} req" in edges[("service:shop", "service:stock")]
    assert ("client", "service:shop") in edges
    browser.save_screenshot(str(ARTIFACTS / "map.png"))
    # a click on a node lists the traces through it
    node = [n for n in css(browser, "#map-svg .node")
            if n.get_attribute("data-node-id") == "service:stock"][0]
    node.click()
    wait_for(browser, lambda d: "node=service%3Astock" in d.current_url and rows(d),
             "the traces through stock")
    through = world.api("/api/traces?node=service:stock")["traces"]
    wait_for(browser, lambda d: rows(d) == [t["trace_id"] for t in through], "those traces")


def test_live_update_shows_a_new_trace(world, browser):
    open_list(browser, world)
    before = set(rows(browser))
    assert world.request("/orders?live=1")[0] == 200

    def new_rows(d):
        fresh = set(rows(d)) - before
        marked = d.execute_script(
            "return [...document.querySelectorAll('tr.trace-row.new')].map(r => r.textContent)")
        return fresh if any("live=1" in text for text in marked) else None

    fresh = wait_for(browser, new_rows, "the new trace without a reload")
    assert fresh


def test_the_xss_corpus_is_inert(world, browser):
    doc = _xss_document()
    world.send_document(doc)
    wait_until(lambda: world.api(f"/api/traces?trace={doc['trace_id']}")["total"],
               what="the hand-made trace stored")
    world.xss_trace = doc["trace_id"]
    open_list(browser, world)
    wait_for(browser, lambda d: doc["trace_id"] in rows(d), "the hand-made trace listed")
    table = css(browser, "#trace-table")[0].text
    assert MARKUP in table  # shown as text
    no_xss(browser)
    browser.get(world.url + "#/trace/" + world.xss_trace)
    wait_for(browser, lambda d: css(d, "#timeline-rows .row"), "the hand-made trace")
    for row in css(browser, "#timeline-rows .row"):
        row.click()
        if row.get_attribute("data-name") == "still-running":  # in progress: hatched, to the end
            bar = row.find_element("css selector", ".bar")
            assert "in-progress" in bar.get_attribute("class")
            assert "in progress" in row.text
        else:
            assert css(browser, "#details h2")[0].text == MARKUP
    css(browser, "#timeline-rows .row")[1].click()  # the subsegment with SQL
    assert MARKUP in css(browser, "#d-sql-query")[0].text
    xss = world.api("/api/traces?q=/xss")["traces"][0]
    browser.get(world.url + "#/trace/" + xss["trace_id"])
    wait_for(browser, lambda d: css(d, "#timeline-rows .row"), "the /xss trace")
    css(browser, "#timeline-rows .row")[0].click()
    details = css(browser, "#details")[0].text
    assert XSS_UA in details and "onerror" in details
    browser.get(world.url + "#/map")
    wait_for(browser, lambda d: css(d, "#map-svg .node"), "the map")
    assert MARKUP in browser.execute_script("return document.getElementById('map-svg').textContent")
    browser.save_screenshot(str(ARTIFACTS / "xss.png"))
    no_xss(browser)
    assert not css(browser, "img, script:not([src])"), "markup became elements"
    # the page works within its strict Content-Security-Policy: no violation, no script error
    problems = [entry["message"] for entry in browser.get_log("browser")
                if entry["level"] == "SEVERE" and "favicon" not in entry["message"]]
    assert not problems, problems


def test_a_trace_in_progress_is_redrawn_when_it_completes(world, browser):
    now = time.time()
    trace_id = "1-%08x-%s" % (int(now), "c" * 24)
    doc = {"trace_id": trace_id, "id": "c" * 16, "name": "slow-job", "start_time": now - 1,
           "in_progress": True}
    world.send_document(doc)
    wait_until(lambda: world.api(f"/api/traces?trace={trace_id}")["total"], what="stored")
    browser.get(world.url + "#/trace/" + trace_id)
    wait_for(browser, lambda d: css(d, "#timeline-rows .row .bar.in-progress"), "in progress")
    css(browser, "#timeline-rows .row")[0].click()
    done = {k: v for k, v in doc.items() if k != "in_progress"}
    done.update(end_time=now, annotations={"finished": True})
    world.send_document(done)
    wait_for(browser, lambda d: d.execute_script(
        "const b = document.querySelector('#timeline-rows .row .bar');"
        "return b && !b.classList.contains('in-progress')"), "the completed trace, no reload")
    # the selected row stays selected, its details follow
    assert "finished" in wait_for(browser, lambda d: css(d, "#d-annotations"), "details")[0].text


def test_a_3000_subsegment_trace_opens_and_answers(world, browser):
    """A batch job's trace: 3,000 streamed subsegments, all drawn; a click still answers."""
    now = time.time()
    trace_id = "1-%08x-%s" % (int(now), "b" * 24)
    world.send_document({"trace_id": trace_id, "id": "b" * 16, "name": "batch",
                         "start_time": now - 3, "end_time": now})
    for i in range(3000):
        world.send_document({"type": "subsegment", "trace_id": trace_id, "id": f"{i:016x}",
                             "parent_id": "b" * 16, "name": "orders@db", "namespace": "remote",
                             "start_time": now - 3 + i * 0.001, "end_time": now - 3 + i * 0.001
                             + 0.0008, "sql": {"sanitized_query": f"SELECT {i}"}})
    wait_until(lambda: world.api(f"/api/traces?trace={trace_id}")["traces"][0]["documents"]
               == 3001 if world.api(f"/api/traces?trace={trace_id}")["total"] else False,
               timeout=WAIT, what="the 3,001 documents stored")
    browser.get(world.url + "#/trace/" + trace_id)
    wait_for(browser, lambda d: d.execute_script(
        "return document.querySelectorAll('#timeline-rows .row').length") == 3001,
        "every row drawn")
    last = css(browser, "#timeline-rows .row")[-1]
    browser.execute_script("arguments[0].scrollIntoView()", last)
    last.click()
    assert wait_for(browser, lambda d: css(d, "#d-sql-query"), "its details")[0].text == \
        "SELECT 2999"


def test_refuses_foreign_hosts_and_writes(world):
    status, body = _get(world.ui_port, "/api/traces", {"Host": "evil.example:80"})
    assert status == 403
    conn = http.client.HTTPConnection("127.0.0.1", world.ui_port, timeout=10)
    conn.request("POST", "/api/traces", body=b"{}")
    assert conn.getresponse().status == 405
    conn.close()
    status, body = _get(world.ui_port, "/api/traces?limit=100000")
    assert status == 400 and b"limit" in body
    status, _ = _get(world.ui_port, "/static/../ui.py")
    assert status == 404
