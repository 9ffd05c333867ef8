"""Centralized sampling (core/centralized.py, core/centralized_rules.py): rule matching and
order, quotas, TTL, borrowing, statistics, fallback, back-off, fork, and the HTTP transport
against loopback servers."""

import json
import logging
import os
import re
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from xray_autoinst import config
from xray_autoinst import log as xlog
from xray_autoinst.core import centralized, centralized_rules, sampling
from xray_autoinst.core.centralized import CentralizedSampler

NOW = 1_700_000_000.0


def record(name, priority=100, rate=0.0, size=0, service="*", stype="*", host="*",
           method="*", path="*", **extra):
    r = {"RuleName": name, "RuleARN": f"arn:aws:xray:us-east-1:1:sampling-rule/{name}",
         "ResourceARN": "*", "Priority": priority, "FixedRate": rate, "ReservoirSize": size,
         "ServiceName": service, "ServiceType": stype, "Host": host, "HTTPMethod": method,
         "URLPath": path, "Version": 1, "Attributes": {}}
    r.update(extra)
    return {"SamplingRule": r, "CreatedAt": NOW - 100, "ModifiedAt": NOW - 100}


DEFAULT = record("Default", 10000, 0.0, 0)


class Clock:
    def __init__(self, t=NOW):
        self.t = t

    def __call__(self):
        return self.t


class FakeProxy:
    """An in-memory proxy: ``post(path, body)``; records the calls."""

    def __init__(self, records=(), targets=None, fail=False):
        self.records = list(records)
        self.targets = targets if targets is not None else {}
        self.fail = fail
        self.calls = []
        self.modified = NOW - 100
        self.page_size = None

    def __call__(self, path, body):
        self.calls.append((path, json.loads(json.dumps(body))))
        if self.fail:
            raise centralized_rules.ProxyError("connection refused")
        if path == "/GetSamplingRules":
            if not self.page_size:
                return {"SamplingRuleRecords": self.records}
            start = int(body.get("NextToken", 0))
            end = start + self.page_size
            answer = {"SamplingRuleRecords": self.records[start:end]}
            if end < len(self.records):
                answer["NextToken"] = str(end)
            return answer
        assert path == "/SamplingTargets"
        docs = []
        for stat in body["SamplingStatisticsDocuments"]:
            target = self.targets.get(stat["RuleName"])
            if target is not None:
                docs.append(dict(target, RuleName=stat["RuleName"]))
        return {"SamplingTargetDocuments": docs, "LastRuleModification": self.modified,
                "UnprocessedStatistics": []}

    def stats(self):
        return [d for p, b in self.calls if p == "/SamplingTargets"
                for d in b["SamplingStatisticsDocuments"]]


def never():
    return sampling.LocalRules([], sampling.Rule(0, 0.0))


def always():
    return sampling.LocalRules([], sampling.Rule(0, 1.0))


def make(proxy, fallback=None, service="orders", clock=None, poll=10.0):
    s = CentralizedSampler(("127.0.0.1", 9), fallback or never(), service, poll=poll,
                           post=proxy, clock=clock or Clock())
    s._thread = "not started in unit tests"  # the tests drive the poller by hand
    return s


def decisions(s, n, *req):
    return [s.sample(*req) for _ in range(n)]


# -- rules: which apply, in which order ---------------------------------------------------------
def test_rules_are_ordered_by_priority_then_name_and_invalid_ones_skipped():
    rules, skipped = centralized_rules.parse_rules([
        record("zeta", 5), record("alpha", 5), record("first", 1), DEFAULT,
        record("v2", 2, Version=2),
        record("arn", 2, ResourceARN="arn:aws:ecs:us-east-1:1:service/x"),
        record("emptyarn", 3, ResourceARN=""),
        record("attrs", 2, Attributes={"tenant": "a"}),
        record("ec2", 2, stype="AWS::EC2::Instance"),
        record("anytype", 4, stype="AWS::*", ),
        record("badrate", 2, rate=1.5),
        record("badsize", 2, size=-1),
        record("textrate", 2, rate="0.5"),
        record("x" * 33, 2),
        {"SamplingRule": "nope"},
        "nope",
    ])
    assert [r.name for r in rules] == ["first", "emptyarn", "alpha", "zeta", "Default"]
    assert len(skipped) == 11
    assert any("Version 2" in s for s in skipped) and any("Attributes" in s for s in skipped)


@pytest.mark.parametrize(
    "service, host, method, path, expected",
    [
        ("orders", "api.example.com", "GET", "/health", "health"),
        ("orders", "api.example.com", "GET", "/healthz/deep", "health"),
        ("orders", "api.example.com", "POST", "/health", "health"),  # priority 1 first
        ("orders", "api.example.com", "POST", "/x", "orders-post"),
        ("orders", "API.EXAMPLE.COM", "POST", "/v1/items", "orders-post"),
        ("orders", "api.example.com", "PUT", "/v1/items", "api-v"),
        ("orders", "api.example.com", "PUT", "/v10/items", "Default"),  # ? is one character
        ("orders", "other", "PUT", "/v1/items", "Default"),
        ("billing", "api.example.com", "GET", "/health", "health"),
        ("billing", "api.example.com", "POST", "/x", "Default"),  # ServiceName is ours
        ("orders", None, None, None, "Default"),  # no request attributes: only '*' patterns
    ],
)
def test_matching_table(service, host, method, path, expected):
    proxy = FakeProxy([
        record("health", 1, path="/health*"),
        record("orders-post", 2, service="ord*", method="POST"),
        record("api-v", 3, host="api.*", path="/v?/*"),
        DEFAULT,
    ])
    s = make(proxy, service=service)
    assert s.poll_rules()
    s.sample(host, method, path)
    counted = {r.name: r.state.requests for r in s.rules if r.state.requests}
    assert counted == {expected: 1}


def test_service_name_is_read_on_use():
    names = ["first"]
    proxy = FakeProxy([record("mine", 1, rate=1.0, service="second"), DEFAULT])
    s = CentralizedSampler(("127.0.0.1", 9), never(), lambda: names[0], post=proxy,
                           clock=Clock())
    s._thread = "manual"
    s.poll_rules()
    assert not s.sample("h", "GET", "/")
    names[0] = "second"
    assert s.sample("h", "GET", "/")


def test_rules_are_paginated():
    proxy = FakeProxy([record(f"r{i}", i + 1, path=f"/p{i}") for i in range(7)] + [DEFAULT])
    proxy.page_size = 3
    s = make(proxy)
    assert s.poll_rules()
    assert len(s.rules) == 8
    bodies = [b for p, b in proxy.calls]
    assert bodies == [{}, {"NextToken": "3"}, {"NextToken": "6"}]


# -- reservoir, quota, TTL, borrowing, rate -----------------------------------------------------
def test_borrows_one_a_second_until_a_quota_arrives_then_honours_quota_and_ttl():
    clock = Clock()
    proxy = FakeProxy([record("api", 1, rate=0.0, size=50), DEFAULT])
    s = make(proxy, clock=clock)
    s.poll_rules()
    # no quota yet: one borrowed request each second, then the rate (0)
    assert decisions(s, 5, "h", "GET", "/") == [True, False, False, False, False]
    clock.t += 1
    assert decisions(s, 3, "h", "GET", "/") == [True, False, False]
    # the service grants 3 a second for 10 s
    proxy.targets["api"] = {"FixedRate": 0.0, "ReservoirQuota": 3,
                            "ReservoirQuotaTTL": clock.t + 30}
    clock.t += 10
    assert s.poll_targets()
    stats = proxy.stats()
    assert stats == [{"RuleName": "api", "ClientID": s.client_id, "Timestamp": int(clock.t),
                      "RequestCount": 8, "SampledCount": 2, "BorrowCount": 2}]
    assert re.fullmatch(r"[0-9a-f]{24}", s.client_id)
    assert decisions(s, 5, "h", "GET", "/") == [True, True, True, False, False]
    clock.t += 1
    assert decisions(s, 4, "h", "GET", "/") == [True, True, True, False]
    # the TTL passes with no new target: borrowing again
    clock.t += 20
    assert decisions(s, 3, "h", "GET", "/") == [True, False, False]


def test_quota_zero_means_no_borrowing_and_rate_updates_apply():
    clock = Clock()
    proxy = FakeProxy([record("api", 1, rate=0.0, size=5), DEFAULT])
    s = make(proxy, clock=clock)
    s.poll_rules()
    assert s.sample("h", "GET", "/")  # borrowed
    proxy.targets["api"] = {"FixedRate": 0.0, "ReservoirQuota": 0,
                            "ReservoirQuotaTTL": clock.t + 60, "Interval": 10}
    clock.t += 10
    s.poll_targets()
    clock.t += 1
    assert not any(decisions(s, 20, "h", "GET", "/"))
    # the service raises the rate to 1: every request sampled
    proxy.targets["api"] = {"FixedRate": 1.0, "ReservoirQuota": 0,
                            "ReservoirQuotaTTL": clock.t + 60}
    clock.t += 10
    s.poll_targets()
    assert all(decisions(s, 20, "h", "GET", "/"))
    doc = proxy.stats()[-1]
    assert (doc["RequestCount"], doc["SampledCount"], doc["BorrowCount"]) == (20, 0, 0)
    # a rule without reservoir never borrows
    proxy2 = FakeProxy([record("noreservoir", 1, rate=0.0, size=0), DEFAULT])
    s2 = make(proxy2, clock=clock)
    s2.poll_rules()
    assert not any(decisions(s2, 5, "h", "GET", "/"))


def test_fixed_rate_is_a_probability():
    proxy = FakeProxy([record("half", 1, rate=0.5), DEFAULT])
    s = make(proxy)
    s.poll_rules()
    hits = sum(decisions(s, 20000, "h", "GET", "/"))
    assert 9000 < hits < 11000


def test_statistics_only_for_matched_rules_as_deltas_at_most_25_per_call():
    clock = Clock()
    proxy = FakeProxy([record(f"r{i:02}", i + 1, rate=1.0, path=f"/r{i}") for i in range(30)]
                      + [record("idle", 99, path="/idle"), DEFAULT])
    s = make(proxy, clock=clock)
    s.poll_rules()
    for i in range(30):
        decisions(s, i + 1, "h", "GET", f"/r{i}")
    clock.t += 10
    assert s.poll_targets()
    calls = [b["SamplingStatisticsDocuments"] for p, b in proxy.calls if p == "/SamplingTargets"]
    assert [len(c) for c in calls] == [25, 5]
    by_name = {d["RuleName"]: d for c in calls for d in c}
    assert set(by_name) == {f"r{i:02}" for i in range(30)}  # not "idle", not "Default"
    assert all(by_name[f"r{i:02}"]["RequestCount"] == i + 1 for i in range(30))
    assert all(d["SampledCount"] == d["RequestCount"] for d in by_name.values())
    # the next report carries only what happened since
    proxy.calls.clear()
    decisions(s, 2, "h", "GET", "/r3")
    clock.t += 10
    s.poll_targets()
    assert [(d["RuleName"], d["RequestCount"]) for d in proxy.stats()] == [("r03", 2)]


def test_failed_report_is_sent_again_with_the_next_one():
    clock = Clock()
    proxy = FakeProxy([record("api", 1, rate=1.0), DEFAULT])
    s = make(proxy, clock=clock)
    s.poll_rules()
    decisions(s, 3, "h", "GET", "/")
    proxy.fail = True
    clock.t += 10
    assert not s.poll_targets()
    proxy.fail = False
    decisions(s, 2, "h", "GET", "/")
    clock.t = s.next_targets
    assert s.poll_targets()
    assert proxy.stats()[-1]["RequestCount"] == 5


def test_target_interval_sets_the_rule_s_reporting_period():
    clock = Clock()
    proxy = FakeProxy([record("fast", 1, rate=1.0, path="/f"), record("slow", 2, rate=1.0),
                       DEFAULT])
    proxy.targets = {"fast": {"FixedRate": 1.0, "Interval": 2},
                     "slow": {"FixedRate": 1.0, "Interval": 30}}
    s = make(proxy, clock=clock)
    s.poll_rules()
    s.sample("h", "GET", "/f")
    s.sample("h", "GET", "/s")
    clock.t += 10
    s.poll_targets()
    assert s.next_targets - clock.t < 2.5  # sooner than 10 s: "fast" asked for 2
    reported = []
    for _ in range(10):  # 20 s more, a request to each rule every 2 s
        s.sample("h", "GET", "/f")
        s.sample("h", "GET", "/s")
        clock.t += 2
        proxy.calls.clear()
        s.poll_targets()
        reported.append({d["RuleName"] for d in proxy.stats()})
    assert all("fast" in r for r in reported)
    assert sum("slow" in r for r in reported) == 0  # 30 s not yet elapsed
    for _ in range(5):
        s.sample("h", "GET", "/s")
        clock.t += 2
        proxy.calls.clear()
        s.poll_targets()
        reported.append({d["RuleName"] for d in proxy.stats()})
    assert sum("slow" in r for r in reported) == 1


def test_rule_changes_reported_by_targets_trigger_a_rule_refresh():
    clock = Clock()
    proxy = FakeProxy([record("api", 1, rate=1.0), DEFAULT])
    s = make(proxy, clock=clock)
    s.poll_rules()
    s.sample("h", "GET", "/")
    clock.t += 10
    s.poll_targets()
    assert s.next_rules > clock.t + 200  # nothing changed: the next fetch is minutes away
    s.sample("h", "GET", "/")
    proxy.modified = clock.t + 5
    clock.t += 10
    s.poll_targets()
    assert s.next_rules == 0.0
    proxy.records = [record("api", 1, rate=0.0), DEFAULT]
    s.step()
    assert not s.sample("h", "GET", "/")


def test_refresh_keeps_counters_and_quota_of_unchanged_rules():
    clock = Clock()
    proxy = FakeProxy([record("api", 1, rate=0.0, size=1), DEFAULT])
    proxy.targets["api"] = {"FixedRate": 0.0, "ReservoirQuota": 2,
                            "ReservoirQuotaTTL": clock.t + 100}
    s = make(proxy, clock=clock)
    s.poll_rules()
    s.sample("h", "GET", "/")
    clock.t += 10
    s.poll_targets()
    s.sample("h", "GET", "/")
    s.poll_rules()
    clock.t += 1
    assert decisions(s, 3, "h", "GET", "/") == [True, True, False]
    assert s.rules[0].state.requests == 5


# -- fallback and back-off ---------------------------------------------------------------------
def test_fallback_while_rules_unknown_or_stale():
    clock = Clock()
    proxy = FakeProxy([record("none", 1, rate=0.0), DEFAULT], fail=True)
    s = make(proxy, fallback=always(), clock=clock)
    assert not s.poll_rules()
    assert all(decisions(s, 10, "h", "GET", "/"))  # the local rules decide
    proxy.fail = False
    assert s.poll_rules()
    assert not any(decisions(s, 10, "h", "GET", "/"))  # the centralized rule decides
    clock.t += centralized.RULES_TTL + 1  # the proxy has not answered for an hour
    assert all(decisions(s, 10, "h", "GET", "/"))


def test_no_matching_rule_and_no_default_uses_the_fallback():
    s = make(FakeProxy([record("only", 1, rate=0.0, path="/only")]), fallback=always())
    s.poll_rules()
    assert not s.sample("h", "GET", "/only")
    assert s.sample("h", "GET", "/other")


def test_default_rule_and_local_rules_are_the_fallback_in_the_tracer():
    from xray_autoinst.core.tracer import Tracer

    t = Tracer(config.Config(tcp_address=("127.0.0.1", 1)))
    assert isinstance(t.sampler, CentralizedSampler)
    assert t.sampler.fallback.default.fixed_target == 1 and t.sampler.fallback.default.rate == 0.05
    assert t.sampler._thread is None  # no poller before the first request
    cfg = config.from_env({"XRAY_SAMPLING": "centralized", "XRAY_SAMPLING_RULES":
                           '{"version": 2, "default": {"fixed_target": 0, "rate": 0.5}}',
                           "XRAY_AUTOINST_SAMPLING_POLL": "0.5"})
    t = Tracer(cfg)
    assert t.sampler.fallback is cfg.sampling_rules and t.sampler.poll == 0.5
    t = Tracer(config.from_env({"XRAY_SAMPLING": "local"}))
    assert isinstance(t.sampler, sampling.LocalRules)
    t = Tracer(config.from_env({"XRAY_SAMPLING_RULES":
                                '{"version": 2, "default": {"fixed_target": 0, "rate": 1}}'}))
    assert isinstance(t.sampler, sampling.LocalRules)


@pytest.mark.parametrize("value, ok", [("0.5", True), ("0", False), ("x", False), ("nan", False)])
def test_poll_variable(value, ok):
    cfg = config.from_env({"XRAY_AUTOINST_SAMPLING_POLL": value})
    assert cfg.sampling_poll == (float(value) if ok else 10.0)
    assert bool(cfg.problems) is not ok


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, rec):
        self.records.append(rec)


def test_back_off_is_exponential_capped_and_logs_once_a_minute():
    clock = Clock()
    proxy = FakeProxy(fail=True)
    s = make(proxy, clock=clock)
    xlog._last.pop(centralized.LOG_KEY, None)
    handler = Collect()
    logger = xlog.get()
    logger.addHandler(handler)
    try:
        waits = []
        for _ in range(12):
            s.step()
            waits.append(s.next_rules - clock.t)
            clock.t = s.next_rules
    finally:
        logger.removeHandler(handler)
    # 1 s doubling (with jitter: half to all of it), at most 60 s
    for i, w in enumerate(waits):
        full = min(60.0, 2.0 ** i)
        assert full / 2 <= w <= full, (i, waits)
    assert len(proxy.calls) == 12
    assert not any(p == "/SamplingTargets" for p, _ in proxy.calls)
    lines = [r for r in handler.records if "sampling proxy" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in handler.records]  # once a minute at most
    # an answer resets the back-off
    proxy.fail = False
    proxy.records = [DEFAULT]
    s.step()
    assert s.rule_failures == 0 and s.next_rules - clock.t >= 300


# -- threads, never blocking -------------------------------------------------------------------
def test_poller_thread_starts_on_first_use_marked_internal_and_stops_on_close():
    proxy = FakeProxy([record("all", 1, rate=1.0), DEFAULT])
    s = CentralizedSampler(("127.0.0.1", 9), never(), "svc", poll=0.2, post=proxy)
    time.sleep(0.05)
    assert s._thread is None and not proxy.calls
    s.sample("h", "GET", "/")
    t = s._thread
    assert t.daemon and t._xray_autoinst_internal is True
    deadline = time.monotonic() + 10
    while not any(p == "/SamplingTargets" for p, _ in proxy.calls):
        assert time.monotonic() < deadline, proxy.calls
        s.sample("h", "GET", "/")
        time.sleep(0.05)
    s.close()
    t.join(5)
    assert not t.is_alive()


def test_replaced_sampler_s_thread_ends():
    proxy = FakeProxy([DEFAULT])
    s = CentralizedSampler(("127.0.0.1", 9), never(), "svc", poll=0.05, post=proxy)
    s.sample()
    t = s._thread
    del s  # the thread holds it weakly
    t.join(10)
    assert not t.is_alive()


class _Server:
    """A loopback HTTP server: 'answer' (valid rules), 'hang' (accepts, never answers)."""

    def __init__(self, mode):
        self.mode = mode
        if mode == "hang":
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.sock.listen(16)
            self.port = self.sock.getsockname()[1]
            return
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                outer.bodies.append((self.path, json.loads(self.rfile.read(n))))
                if self.path == "/GetSamplingRules":
                    body = json.dumps({"SamplingRuleRecords": [record("all", 1, rate=1.0),
                                                               DEFAULT]}).encode()
                    self.send_response(200)
                else:
                    body = b'{"message": "nope"}'
                    self.send_response(400)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.bodies = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        if self.mode == "hang":
            self.sock.close()
        else:
            self.httpd.shutdown()
            self.httpd.server_close()


def test_http_transport_against_a_loopback_proxy_and_probe():
    server = _Server("answer")
    try:
        addr = ("127.0.0.1", server.port)
        ok, text = centralized_rules.probe(addr)
        assert ok and "2 rule(s)" in text and "all, Default" in text
        with pytest.raises(centralized_rules.ProxyError, match="HTTP 400"):
            centralized_rules.http_post(addr, "/SamplingTargets",
                                        {"SamplingStatisticsDocuments": []})
        s = CentralizedSampler(addr, never(), "svc")
        s._thread = "manual"
        assert s.poll_rules() and [r.name for r in s.rules] == ["all", "Default"]
        assert s.sample("h", "GET", "/")
        assert server.bodies[0] == ("/GetSamplingRules", {})
    finally:
        server.close()


def test_a_hanging_proxy_never_blocks_sample():
    server = _Server("hang")
    try:
        s = CentralizedSampler(("127.0.0.1", server.port), always(), "svc", timeout=0.5)
        start = time.monotonic()
        results = []
        for _ in range(200):
            results.append(s.sample("h", "GET", "/"))
            time.sleep(0.002)
        assert time.monotonic() - start < 5  # generous: the poller waits on the proxy
        assert all(results)  # the fallback decided
        deadline = time.monotonic() + 10
        while not s.rule_failures:  # the poll timed out (0.5 s), and backs off
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ok, text = centralized_rules.probe(("127.0.0.1", server.port), timeout=0.3)
        assert not ok and "timed out" in text
        s.close()
    finally:
        server.close()


def test_refused_port_probe():
    ok, text = centralized_rules.probe(("127.0.0.1", _free_port()), timeout=1)
    assert not ok and "refused" in text.lower()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- fork ----------------------------------------------------------------------------------------
def _raw_fork():
    """A fork that skips os.register_at_fork hooks, as uWSGI's C fork does."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.fork()


def _in_child(use_os_fork, child):
    r, w = os.pipe()
    pid = os.fork() if use_os_fork else _raw_fork()
    if pid == 0:
        try:
            os.close(r)
            os.write(w, json.dumps(child()).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([r], [], [], 0.5)
            if ready:
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                data += chunk
    finally:
        os.close(r)
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    return json.loads(data)


@pytest.mark.parametrize("use_os_fork", [True, False], ids=["os.fork", "libc-fork"])
def test_child_gets_fresh_counters_no_quota_new_client_id_and_its_own_poller(use_os_fork):
    proxy = FakeProxy([record("api", 1, rate=0.0, size=0), DEFAULT])
    proxy.targets["api"] = {"FixedRate": 0.0, "ReservoirQuota": 100,
                            "ReservoirQuotaTTL": time.time() + 3600}
    s = CentralizedSampler(("127.0.0.1", 9), never(), "svc", poll=0.1, post=proxy)
    s.sample("h", "GET", "/")  # starts the parent's poller
    parent_thread = s._thread
    deadline = time.monotonic() + 10
    while s.rules[0].state.quota is None:  # rules, then a target with the quota
        assert time.monotonic() < deadline
        s.sample("h", "GET", "/")
        time.sleep(0.02)
    assert all(decisions(s, 5, "h", "GET", "/"))  # the quota samples
    parent_id = s.client_id

    def child():
        before = {"quota": s.rules[0].state.quota, "requests": s.rules[0].state.requests}
        if not use_os_fork:
            # no fork hook ran: the sampler checks the PID at most once a second
            time.sleep(1.1)
        got = decisions(s, 5, "h", "GET", "/")  # no quota, no reservoir to borrow: rate 0
        t = s._thread
        proxy.calls.clear()
        deadline = time.monotonic() + 10
        while not proxy.stats() and time.monotonic() < deadline:
            time.sleep(0.02)  # the child's own poller reports
        return {"decisions": got, "client_id": s.client_id, "stats": proxy.stats(),
                "new_thread": t is not parent_thread and t.is_alive(), "before": before}

    out = _in_child(use_os_fork, child)
    assert out["decisions"] == [False] * 5
    assert out["new_thread"]
    assert out["client_id"] != parent_id and re.fullmatch(r"[0-9a-f]{24}", out["client_id"])
    stats = out["stats"]
    assert stats and stats[0]["ClientID"] == out["client_id"]
    assert stats[0]["RequestCount"] == 5 and stats[0]["SampledCount"] == 0
    # inherited memory, reset by the fork hook (os.fork) or on use (a C fork)
    assert out["before"]["quota"] == (None if use_os_fork else 100)
    s.close()
    assert s.client_id == parent_id and s.sample("h", "GET", "/")  # the parent is unchanged
