"""The sampling proxy: local answers in the X-Ray API's shapes, forwarding through botocore,
and the HTTP surface (read back with a real botocore ``xray`` client, as the SDKs do)."""

import datetime
import json
import socket
import urllib.error
import urllib.request

import botocore.session
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from xray_autoinst.core.sampling import load_rules
from xray_autoinst.daemon.proxy import (
    ForwardSampling,
    LocalSampling,
    ProxyError,
    SamplingProxy,
    _wire,
)

RULES = json.dumps({
    "version": 2,
    "rules": [
        {"description": "health checks", "host": "*", "http_method": "GET",
         "url_path": "/health", "fixed_target": 0, "rate": 0.0},
        {"description": "api", "host": "api.example.com", "http_method": "*",
         "url_path": "/v1/*", "fixed_target": 5, "rate": 0.5},
    ],
    "default": {"fixed_target": 2, "rate": 0.1},
})


def stats(name):
    return {"RuleName": name, "ClientID": "0" * 24, "Timestamp": 1_700_000_000,
            "RequestCount": 10, "SampledCount": 2, "BorrowCount": 0}


def test_default_rule_when_no_local_rules():
    answer = LocalSampling(None, clock=lambda: 1000.0).get_sampling_rules({})
    (record,) = answer["SamplingRuleRecords"]
    rule = record["SamplingRule"]
    assert rule == {
        "RuleName": "Default", "RuleARN": "arn:aws:xray:local:000000000000:sampling-rule/Default",
        "ResourceARN": "*", "Priority": 10000, "FixedRate": 0.05, "ReservoirSize": 1,
        "ServiceName": "*", "ServiceType": "*", "Host": "*", "HTTPMethod": "*", "URLPath": "*",
        "Version": 1, "Attributes": {},
    }
    assert record["CreatedAt"] == record["ModifiedAt"] == 1000.0


def test_local_rules_become_sampling_rules():
    answer = LocalSampling(load_rules(RULES)).get_sampling_rules({})
    rules = [r["SamplingRule"] for r in answer["SamplingRuleRecords"]]
    assert [(r["RuleName"], r["Priority"], r["ReservoirSize"], r["FixedRate"], r["Host"],
             r["HTTPMethod"], r["URLPath"]) for r in rules] == [
        ("local-1", 1, 0, 0.0, "*", "GET", "/health"),
        ("local-2", 2, 5, 0.5, "api.example.com", "*", "/v1/*"),
        ("Default", 10000, 2, 0.1, "*", "*", "*"),
    ]


def test_targets_for_known_and_unknown_rules():
    local = LocalSampling(load_rules(RULES), clock=lambda: 2000.0)
    answer = local.get_sampling_targets(
        {"SamplingStatisticsDocuments": [stats("local-2"), stats("Default"), stats("nope")]}
    )
    assert answer["SamplingTargetDocuments"] == [
        {"RuleName": "local-2", "FixedRate": 0.5, "ReservoirQuota": 5,
         "ReservoirQuotaTTL": 2030.0, "Interval": 10},
        {"RuleName": "Default", "FixedRate": 0.1, "ReservoirQuota": 2,
         "ReservoirQuotaTTL": 2030.0, "Interval": 10},
    ]
    assert answer["UnprocessedStatistics"] == [
        {"RuleName": "nope", "ErrorCode": "400", "Message": "unknown sampling rule"}
    ]
    assert answer["LastRuleModification"] == 2000.0
    assert local.get_sampling_targets({})["SamplingTargetDocuments"] == []


def test_wire_converts_timestamps_and_drops_metadata():
    when = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    assert _wire({"A": [when], "ResponseMetadata": {}, "B": {"C": 1}}) == {
        "A": [when.timestamp()], "B": {"C": 1}}


def xray_client(endpoint=None):
    return botocore.session.get_session().create_client(
        "xray", region_name="us-east-1", endpoint_url=endpoint,
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_forward_sampling_through_botocore():
    client = xray_client("http://127.0.0.1:9")
    modified = datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)
    with Stubber(client) as stub:
        stub.add_response(
            "get_sampling_targets",
            {"SamplingTargetDocuments": [{"RuleName": "r", "FixedRate": 0.2,
                                          "ReservoirQuota": 3, "ReservoirQuotaTTL": modified,
                                          "Interval": 10}],
             "LastRuleModification": modified, "UnprocessedStatistics": []},
            {"SamplingStatisticsDocuments": [stats("r")]},
        )
        stub.add_client_error("get_sampling_rules", "ThrottlingException", "slow down", 429)
        fwd = ForwardSampling(client)
        answer = fwd.get_sampling_targets(
            {"SamplingStatisticsDocuments": [stats("r")], "Ignored": 1})
        assert answer["LastRuleModification"] == modified.timestamp()
        assert answer["SamplingTargetDocuments"][0]["ReservoirQuotaTTL"] == modified.timestamp()
        with pytest.raises(ProxyError) as err:
            fwd.get_sampling_rules({})
        assert (err.value.status, err.value.code) == (429, "ThrottlingException")


@pytest.fixture
def proxy():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = SamplingProxy(sock, LocalSampling(load_rules(RULES)),
                           lambda: {"service": "xray-autoinst-daemon", "pid": 1})
    server.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.stop()


def test_sdk_style_client_reads_the_local_answers(proxy):
    # The X-Ray SDKs point an unsigned botocore xray client at the daemon's TCP address.
    from botocore import UNSIGNED

    client = botocore.session.get_session().create_client(
        "xray", region_name="us-east-1", endpoint_url=proxy,
        config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}),
    )
    rules = client.get_sampling_rules()["SamplingRuleRecords"]
    assert [r["SamplingRule"]["RuleName"] for r in rules] == ["local-1", "local-2", "Default"]
    assert isinstance(rules[0]["CreatedAt"], datetime.datetime)
    targets = client.get_sampling_targets(
        SamplingStatisticsDocuments=[{**stats("Default"), "Timestamp": datetime.datetime.now()}])
    (doc,) = targets["SamplingTargetDocuments"]
    assert doc["RuleName"] == "Default" and doc["ReservoirQuota"] == 2
    assert isinstance(doc["ReservoirQuotaTTL"], datetime.datetime)


def post(url, body=b"{}"):
    req = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_only_the_two_sampling_operations_are_served(proxy):
    assert post(proxy + "/GetSamplingRules")[0] == 200
    status, body = post(proxy + "/TraceSegments", b'{"TraceSegmentDocuments": []}')
    assert status == 404 and body["__type"] == "UnknownOperationException"
    assert post(proxy + "/SamplingTargets", b"not json")[0] == 400
    assert post(proxy + "/SamplingTargets", b"[1]")[0] == 400


def test_status_endpoint(proxy):
    with urllib.request.urlopen(proxy + "/xray-autoinst/status", timeout=5) as answer:
        assert json.load(answer) == {"service": "xray-autoinst-daemon", "pid": 1}
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(proxy + "/other", timeout=5)
