"""Centralized sampling end to end: a WSGI app under `xray-run` (wsgiref), a loopback UDP listener
for the daemon, and a loopback fake of the X-Ray sampling API on the daemon's TCP address
(GetSamplingRules, paginated, and SamplingTargets), or a proxy that hangs or refuses."""

import json
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from xray_testing import (
    BIN,
    ROOT,
    agent_env,
    free_port,
    http_get,
    stop,
    validate,
    wait_http,
    xray_run,
)

APPS = ROOT / "integration" / "apps"
PY = sys.executable
POLL = "0.5"  # XRAY_AUTOINST_SAMPLING_POLL: SamplingTargets every half second


def rule(name, priority, rate, size, path="*", service="*"):
    return {"SamplingRule": {
        "RuleName": name, "RuleARN": f"arn:aws:xray:us-east-1:123456789012:sampling-rule/{name}",
        "ResourceARN": "*", "Priority": priority, "FixedRate": rate, "ReservoirSize": size,
        "ServiceName": service, "ServiceType": "*", "Host": "*", "HTTPMethod": "*",
        "URLPath": path, "Version": 1, "Attributes": {}},
        "CreatedAt": 1.7e9, "ModifiedAt": 1.7e9}


class FakeSamplingAPI:
    """GetSamplingRules (two records a page) and SamplingTargets, recording what arrives."""

    def __init__(self, rules, targets):
        self.rules = rules
        self.targets = targets  # rule name -> target document without RuleName
        self.rule_bodies: list[dict] = []
        self.stats: list[dict] = []  # every SamplingStatisticsDocument received
        self.target_calls = 0
        self.cond = threading.Condition()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/GetSamplingRules":
                    answer = api._rules_page(body)
                elif self.path == "/SamplingTargets":
                    answer = api._targets(body)
                else:
                    self.send_error(404)
                    return
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def _rules_page(self, body):
        with self.cond:
            self.rule_bodies.append(body)
        start = int(body.get("NextToken", "0"))
        answer = {"SamplingRuleRecords": self.rules[start:start + 2]}
        if start + 2 < len(self.rules):
            answer["NextToken"] = str(start + 2)
        return answer

    def _targets(self, body):
        now = time.time()
        docs = []
        for stat in body["SamplingStatisticsDocuments"]:
            target = self.targets.get(stat["RuleName"])
            if target is not None:
                docs.append(dict(target, RuleName=stat["RuleName"],
                                 ReservoirQuotaTTL=now + 300))
        with self.cond:
            self.stats.extend(body["SamplingStatisticsDocuments"])
            self.target_calls += 1
            self.cond.notify_all()
        return {"SamplingTargetDocuments": docs, "LastRuleModification": 1.7e9,
                "UnprocessedStatistics": []}

    def totals(self, name):
        with self.cond:
            docs = [d for d in self.stats if d["RuleName"] == name]
        return tuple(sum(d[k] for d in docs) for k in ("RequestCount", "SampledCount",
                                                        "BorrowCount"))

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def start_app(env):
    port = free_port()
    p = subprocess.Popen(xray_run(PY, "plainapp.py", str(port)), cwd=APPS, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(port, "/warmup", proc=p)
    except BaseException:
        stop(p)
        raise
    return p, port


def centralized_env(daemon, tcp_port, **extra):
    """agent_env() sets local 100% sampling for the other tests: back to the defaults here."""
    env = agent_env(daemon, XRAY_SAMPLING="centralized", XRAY_AUTOINST_SAMPLING_POLL=POLL,
                    AWS_XRAY_DAEMON_ADDRESS=f"udp:127.0.0.1:{daemon.port} "
                                            f"tcp:127.0.0.1:{tcp_port}")
    del env["XRAY_SAMPLING_RULES"]
    env.update(extra)
    return env


def path_of(doc):
    url = doc.get("http", {}).get("request", {}).get("url", "")
    return "/" + url.split("/", 3)[3] if url.count("/") >= 3 else f"(no URL: {doc['name']})"


SENTINEL = {"X-Amzn-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"}


def sampled_paths(port, daemon, paths, pause=0.0):
    """Send ``paths`` in order, then a request sampled by its header: once that one arrives,
    every sampled request before it has (one server thread, documents sent in order)."""
    daemon.clear()
    for path in paths:
        assert http_get(port, path)[0] == 200
        time.sleep(pause)
    assert http_get(port, "/sentinel", SENTINEL)[0] == 200
    docs = daemon.wait(1, timeout=15, predicate=lambda d: path_of(d) == "/sentinel")
    for doc in docs:
        validate(doc)
    sent = set(paths)
    return [path_of(d) for d in daemon.segments() if path_of(d) in sent]


def test_rules_quotas_and_statistics_from_the_proxy(daemon):
    api = FakeSamplingAPI(
        rules=[
            rule("all", 10, 1.0, 0),
            rule("other-service", 1, 1.0, 0, service="billing"),  # not ours: never applies
            rule("health", 5, 0.0, 0, path="/health*", service="plain*"),
            rule("quota", 6, 0.0, 1, path="/quota*"),  # borrows 1/s until its quota (0) comes
            rule("Default", 10000, 0.05, 1),
        ],
        targets={"all": {"FixedRate": 1.0, "ReservoirQuota": 0},
                 "health": {"FixedRate": 0.0, "ReservoirQuota": 0},
                 "quota": {"FixedRate": 0.0, "ReservoirQuota": 0}},
    )
    # XRAY_CONTEXT_MISSING=call would record the poller's HTTP calls if they were not skipped
    p, port = start_app(centralized_env(daemon, api.port, XRAY_CONTEXT_MISSING="call"))
    try:
        # until rules are in use and "quota" holds its quota: requests to both rules
        deadline = time.monotonic() + 30
        quota_reports = 0
        while True:
            assert time.monotonic() < deadline, (api.rule_bodies, api.stats)
            http_get(port, "/warm")
            http_get(port, "/quota-warm")
            with api.cond:
                names = [d["RuleName"] for d in api.stats]
                calls = api.target_calls
            if "quota" in names and not quota_reports:
                quota_reports = calls
            if quota_reports and calls > quota_reports:  # the poller is past that answer
                break
            time.sleep(0.05)
        assert api.rule_bodies[:3] == [{}, {"NextToken": "2"}, {"NextToken": "4"}]
        borrowed_before = api.totals("quota")

        paths = [f"/health{i}" for i in range(10)] + [f"/quota{i}" for i in range(10)]
        paths += [f"/ok{i}" for i in range(10)]
        sampled = sampled_paths(port, daemon, paths)
        assert sorted(sampled) == sorted(f"/ok{i}" for i in range(10))

        # the statistics of those requests reach the proxy
        deadline = time.monotonic() + 15
        while api.totals("health")[0] < 10 or api.totals("quota")[0] < borrowed_before[0] + 10:
            assert time.monotonic() < deadline, api.stats
            http_get(port, "/keepalive")
            time.sleep(0.2)
        assert api.totals("health") == (10, 0, 0)
        requests, sampled_count, borrowed = api.totals("quota")
        assert borrowed >= 1 and sampled_count == borrowed  # FixedRate 0: only borrowed ones
        assert (sampled_count, borrowed) == borrowed_before[1:]  # none after the quota of 0
        requests, sampled_count, borrowed = api.totals("all")
        assert requests >= 11 and sampled_count == requests and borrowed == 0
        assert api.totals("other-service") == (0, 0, 0)
        with api.cond:
            stats = list(api.stats)
        assert {d["RuleName"] for d in stats} <= {"all", "health", "quota", "Default"}
        client_ids = {d["ClientID"] for d in stats}
        assert len(client_ids) == 1 and re.fullmatch(r"[0-9a-f]{24}", client_ids.pop())
        assert all(abs(d["Timestamp"] - time.time()) < 120 for d in stats)
        assert all(len(set(d) - {"RuleName", "ClientID", "Timestamp", "RequestCount",
                                 "SampledCount", "BorrowCount"}) == 0 for d in stats)
        # the agent never traced its own calls to the proxy
        assert not [d for d in daemon.documents if "Sampling" in json.dumps(d)]
    finally:
        out = stop(p)
        api.close()
    assert "Traceback" not in out, out


class HangingProxy:
    """Accepts connections (the kernel completes them) and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("proxy", ["hang", "refused"])
def test_broken_proxy_leaves_requests_fast_and_sampled_by_the_default_rule(daemon, proxy):
    hanging = HangingProxy() if proxy == "hang" else None
    tcp_port = hanging.port if hanging else free_port()
    p, port = start_app(centralized_env(daemon, tcp_port))
    try:
        start = time.monotonic()
        # spread over 1.6 s: at least one second starts after the warm-up request's
        sampled = sampled_paths(port, daemon, [f"/r{i}" for i in range(20)], pause=0.08)
        elapsed = time.monotonic() - start
        assert elapsed < 12, elapsed  # generous: nothing waits for the proxy
        # the default rule: the first request each second, then 5%
        assert 1 <= len(sampled) <= 8, sampled  # 20 of 20 would mean the rule is not applied
        check = subprocess.run(xray_run("--check"), capture_output=True, text=True, timeout=30,
                               env=centralized_env(daemon, tcp_port))
        assert "mode: centralized" in check.stdout
        assert "proxy does NOT answer" in check.stdout
        assert "default rule (1/s + 5%) decides" in check.stdout
    finally:
        out = stop(p)
        if hanging:
            hanging.close()
    lines = [ln for ln in out.splitlines() if "sampling proxy" in ln]
    assert len(lines) <= 1, out  # at most one line a minute
    if proxy == "refused":
        assert len(lines) == 1 and "GetSamplingRules" in lines[0], out


def test_configured_local_rules_are_the_fallback(daemon):
    local = {"version": 2, "default": {"fixed_target": 0, "rate": 0.0},
             "rules": [{"host": "*", "http_method": "*", "url_path": "/yes*",
                        "fixed_target": 0, "rate": 1.0}]}
    env = centralized_env(daemon, free_port(), XRAY_SAMPLING_RULES=json.dumps(local))
    p, port = start_app(env)
    try:
        sampled = sampled_paths(port, daemon, [f"/yes{i}" for i in range(5)]
                                + [f"/no{i}" for i in range(5)])
        assert sorted(sampled) == [f"/yes{i}" for i in range(5)]
    finally:
        stop(p)


def test_each_prefork_worker_polls_with_its_own_client_id(daemon):
    api = FakeSamplingAPI(rules=[rule("all", 10, 1.0, 0), rule("Default", 10000, 0.05, 1)],
                          targets={"all": {"FixedRate": 1.0, "ReservoirQuota": 0}})
    port = free_port()
    cmd = [str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "--workers", "2", "--preload",
           "plainapp:app"]
    p = subprocess.Popen(xray_run(*cmd), cwd=APPS, env=centralized_env(daemon, api.port),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(port, "/warmup", proc=p)
        pids, clients = set(), set()
        deadline = time.monotonic() + 30
        while len(pids) < 2 or len(clients) < 2:
            assert time.monotonic() < deadline, (pids, clients)
            pids.add(http_get(port, "/pid")[2])
            with api.cond:
                clients = {d["ClientID"] for d in api.stats}
            time.sleep(0.05)
        assert len(clients) == 2 and all(re.fullmatch(r"[0-9a-f]{24}", c) for c in clients)
    finally:
        stop(p)
        api.close()


def test_local_mode_never_asks_the_proxy(daemon):
    api = FakeSamplingAPI(rules=[rule("Default", 10000, 0.05, 1)], targets={})
    env = centralized_env(daemon, api.port, XRAY_SAMPLING="local")
    p, port = start_app(env)
    try:
        sampled_paths(port, daemon, [f"/r{i}" for i in range(5)])  # decided, and served
        time.sleep(1.5)  # three poll intervals: a poller would have asked by now
        assert api.rule_bodies == [] and api.stats == []
    finally:
        stop(p)
        api.close()


def test_check_reports_a_proxy_that_answers(daemon):
    api = FakeSamplingAPI(rules=[rule("all", 10, 1.0, 0), rule("Default", 10000, 0.05, 1)],
                          targets={})
    try:
        check = subprocess.run(xray_run("--check"), capture_output=True, text=True, timeout=30,
                               env=centralized_env(daemon, api.port))
        assert f"mode: centralized, from the proxy at tcp 127.0.0.1:{api.port}" in check.stdout
        assert "proxy answers: 2 rule(s) apply: all, Default" in check.stdout
        local = subprocess.run(xray_run("--check"), capture_output=True, text=True, timeout=30,
                               env=agent_env(daemon))
        assert "mode: local" in local.stdout and "proxy" not in local.stdout
    finally:
        api.close()
