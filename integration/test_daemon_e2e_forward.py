"""The relay and the sampling proxy end to end: a real moto server as the X-Ray API (documents
come back from BatchGetTraces, including those of an app run under ``xray-run``), and a loopback
fake of the X-Ray API for throttling, 5xx, slow answers and the sampling operations."""

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import botocore.session
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from daemon_testing import Daemon, FakeXRay, MotoServer, base_env, segment, trace_id, wait_until
from xray_testing import free_port, http_get, stop, validate, wait_http, xray_run

APPS = Path(__file__).resolve().parent / "apps"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    yield server
    server.close()


def batch_get(client, ids):
    found = {}
    for i in range(0, len(ids), 5):  # the API takes at most 5 ids a call
        for trace in client.batch_get_traces(TraceIds=ids[i:i + 5])["Traces"]:
            found[trace["Id"]] = [json.loads(s["Document"]) for s in trace["Segments"]]
    return found


def test_documents_are_relayed_to_xray(tmp_path, moto):
    d = Daemon(tmp_path, "--forward", "--endpoint-url", moto.url)
    try:
        now = time.time()
        docs = [segment(trace_id(n, now), f"{n:016x}", now, now + 0.1, name="relay",
                        annotations={"n": n}) for n in range(120)]
        d.send(*docs)
        nameless = segment(trace_id(999, now), "b" * 16, now, now + 1)
        del nameless["name"]  # X-Ray (and moto) answer this one as unprocessed
        d.send(nameless)
        c = d.wait_counter("forwarded", 120)
        wait_until(lambda: d.counters()["forward_unprocessed"] == 1, what="unprocessed")
        assert c["stored"] == 121  # and the store keeps them all
        found = batch_get(moto.client(), [doc["trace_id"] for doc in docs])
        assert len(found) == 120
        for doc in docs:
            assert found[doc["trace_id"]] == [doc]
        wait_until(lambda: "X-Ray did not accept segment bbbbbbbbbbbbbbbb" in d.log(),
                   what="the unprocessed segment in the log")
    finally:
        assert d.stop() == 0
    assert re.search(r"totals: .*forwarded 120 \(unprocessed 1\)", d.log())


def test_an_apps_traces_reach_xray_and_the_store(tmp_path, moto):
    """An app under xray-run sends to the daemon; the documents come back from BatchGetTraces."""
    d = Daemon(tmp_path, "--forward", "--endpoint-url", moto.url)
    port = free_port()
    env = base_env(AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{d.port}", XRAY_SERVICE_NAME="shop",
                   XRAY_SAMPLING="local",
                   XRAY_SAMPLING_RULES='{"version": 2, "default": {"fixed_target": 0, '
                                       '"rate": 1.0}}')
    app = subprocess.Popen(xray_run(sys.executable, str(APPS / "plainapp.py"), str(port)),
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(port, "/pid", proc=app)
        assert http_get(port, "/orders")[0] == 200
        assert http_get(port, "/missing")[0] == 404
        # the agent sends from a background thread: let it, before the app is killed
        d.wait_counter("received", 3)
    finally:
        stop(app)
    try:
        d.wait_counter("forwarded", 3)
        stored = d.view_json("traces")
        by_url = {t["url"].rsplit("/", 1)[-1]: t for t in stored}
        assert by_url["orders"]["service"] == "shop" and by_url["orders"]["status"] == 200
        assert by_url["missing"]["status"] == 404 and by_url["missing"]["error"] is True
        found = batch_get(moto.client(), [t["trace_id"] for t in stored])
        assert set(found) == {t["trace_id"] for t in stored}
        for docs in found.values():
            for doc in docs:
                validate(doc)
                assert doc["name"] == "shop"
        relayed = found[by_url["orders"]["trace_id"]]
        assert relayed[0]["http"]["request"]["url"].endswith("/orders")
    finally:
        assert d.stop() == 0


THROTTLED = (400, {"__type": "ThrottlingException", "message": "Rate exceeded"}, 0.0)
FAILED = (500, {"__type": "InternalFailure", "message": "oops"}, 0.0)


def test_throttling_and_5xx_are_retried(tmp_path):
    now = time.time()
    docs = [segment(trace_id(n, now), f"{n:016x}", now, now + 0.1) for n in range(60)]
    bad_id = f"{7:016x}"
    xray = FakeXRay([THROTTLED, THROTTLED, FAILED,
                     (200, {"UnprocessedTraceSegments": [{"Id": bad_id, "ErrorCode": "Invalid",
                                                          "Message": "nope"}]}, 0.0)])
    d = Daemon(tmp_path, "--forward", "--endpoint-url", xray.url)
    try:
        d.send(*docs)
        wait_until(lambda: len(xray.accepted) == 59, what="all documents accepted")
        c = d.wait_counter("forwarded", 59)
        assert c["forward_retries"] >= 3 and c["forward_failed"] == 0
        assert c["forward_unprocessed"] == 1
        assert sorted(json.loads(x)["id"] for x in xray.accepted) == sorted(
            doc["id"] for doc in docs if doc["id"] != bad_id)
        assert all(0 < len(b) <= 50 for b in xray.batches())
        # signed with the standard credentials chain
        auth = [r["headers"].get("Authorization", "") for r in xray.requests]
        assert all(a.startswith("AWS4-HMAC-SHA256 Credential=testing/") for a in auth)
        wait_until(lambda: f"did not accept segment {bad_id}: Invalid nope" in d.log(),
                   what="the unprocessed segment reported")
    finally:
        assert d.stop() == 0
        xray.close()


def test_sigterm_sends_pending_batches_first(tmp_path):
    xray = FakeXRay(delay=0.25)
    d = Daemon(tmp_path, "--forward", "--endpoint-url", xray.url)
    now = time.time()
    docs = [segment(trace_id(n, now), f"{n:016x}", now, now + 0.1) for n in range(220)]
    try:
        d.send(*docs)
        d.wait_counter("decoded", 220)
        assert len(xray.accepted) < 220  # batches still waiting
    finally:
        assert d.stop(signal.SIGTERM) == 0
        xray.close()
    assert sorted(json.loads(x)["id"] for x in xray.accepted) == sorted(x["id"] for x in docs)
    assert "forwarded 220" in d.log()


def sdk_client(port):
    """What the X-Ray SDKs do: an unsigned botocore xray client aimed at the daemon's TCP."""
    return botocore.session.get_session().create_client(
        "xray", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{port}",
        config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}))


STATS = {"RuleName": "from-xray", "ClientID": "a" * 24, "Timestamp": 1_700_000_200,
         "RequestCount": 4, "SampledCount": 1, "BorrowCount": 0}


def test_sampling_proxy_forwards_signed_requests(tmp_path):
    xray = FakeXRay()
    d = Daemon(tmp_path, "--forward", "--endpoint-url", xray.url)
    try:
        client = sdk_client(d.port)
        (record,) = client.get_sampling_rules()["SamplingRuleRecords"]
        assert record["SamplingRule"]["RuleName"] == "from-xray"
        assert record["SamplingRule"]["ReservoirSize"] == 7
        assert record["ModifiedAt"].timestamp() == 1700000100.0
        targets = client.get_sampling_targets(SamplingStatisticsDocuments=[STATS])
        (target,) = targets["SamplingTargetDocuments"]
        assert (target["RuleName"], target["FixedRate"], target["ReservoirQuota"]) == (
            "from-xray", 0.25, 3)
        assert targets["LastRuleModification"].timestamp() == 1700000100.0
        sent = [r for r in xray.requests if r["path"] == "/SamplingTargets"][0]
        assert sent["body"]["SamplingStatisticsDocuments"][0]["RuleName"] == "from-xray"
        for r in xray.requests:
            assert r["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256 ")
        # nothing else is proxied
        req = urllib.request.Request(f"http://127.0.0.1:{d.port}/TraceSegments",
                                     data=b'{"TraceSegmentDocuments": []}', method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 404
        assert set(xray.paths()) == {"/GetSamplingRules", "/SamplingTargets"}
    finally:
        assert d.stop() == 0
        xray.close()


def test_sampling_proxy_answers_from_local_rules(tmp_path):
    rules = {"version": 2, "rules": [{"description": "orders", "host": "*",
                                      "http_method": "POST", "url_path": "/orders*",
                                      "fixed_target": 3, "rate": 0.5}],
             "default": {"fixed_target": 1, "rate": 0.1}}
    d = Daemon(tmp_path, env=base_env(XRAY_SAMPLING_RULES=json.dumps(rules)))
    try:
        client = sdk_client(d.port)
        records = client.get_sampling_rules()["SamplingRuleRecords"]
        assert [(r["SamplingRule"]["RuleName"], r["SamplingRule"]["URLPath"],
                 r["SamplingRule"]["ReservoirSize"]) for r in records] == [
            ("local-1", "/orders*", 3), ("Default", "*", 1)]
        answer = client.get_sampling_targets(SamplingStatisticsDocuments=[
            {**STATS, "RuleName": "local-1"}, {**STATS, "RuleName": "gone"}])
        assert [t["RuleName"] for t in answer["SamplingTargetDocuments"]] == ["local-1"]
        assert [u["RuleName"] for u in answer["UnprocessedStatistics"]] == ["gone"]
    finally:
        assert d.stop() == 0
    bad = Daemon(tmp_path / "bad" if (tmp_path / "bad").mkdir() is None else tmp_path,
                 env=base_env(XRAY_SAMPLING_RULES='{"version": 9}'))
    try:
        (record,) = sdk_client(bad.port).get_sampling_rules()["SamplingRuleRecords"]
        assert record["SamplingRule"]["RuleName"] == "Default"
        assert "XRAY_SAMPLING_RULES: version=9 is not supported" in bad.log()
    finally:
        assert bad.stop() == 0


def test_the_agents_centralized_sampling_uses_the_proxy(tmp_path):
    """An app under xray-run (centralized sampling, the default) takes its rules from the
    daemon: here 'sample everything', where X-Ray's default rule would keep about 1 a second."""
    rules = {"version": 2, "rules": [], "default": {"fixed_target": 0, "rate": 1.0}}
    d = Daemon(tmp_path, env=base_env(XRAY_SAMPLING_RULES=json.dumps(rules)))
    port = free_port()
    env = base_env(AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{d.port}", XRAY_SERVICE_NAME="polled",
                   XRAY_AUTOINST_SAMPLING_POLL="0.2")
    app = subprocess.Popen(xray_run(sys.executable, str(APPS / "plainapp.py"), str(port)),
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(port, "/pid", proc=app)  # the first sample() starts the poller
        d.wait_counter("sampling_requests", 2)  # GetSamplingRules, then SamplingTargets
        time.sleep(0.5)
        before = d.counters()["received"]
        for _ in range(8):
            assert http_get(port, "/orders")[0] == 200
        d.wait_counter("received", before + 8)
    finally:
        stop(app)
    try:
        orders = [t for t in d.view_json("traces") if t["url"].endswith("/orders")]
        assert len(orders) == 8 and {t["service"] for t in orders} == {"polled"}
    finally:
        assert d.stop() == 0
