"""botocore in-process against a moto server and an AWS-shaped endpoint that records headers:
one ``aws`` subsegment per API call, its fields, the trace header on the wire, error/throttle/
fault, the agent's own X-Ray calls, no payloads, and a broken instrumentation that must not
change any call."""

import json

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config
from test_http_servers import FakeAWS, parse_trace_header, start_moto
from xray_testing import free_port, install_tracer, only_doc, segment, subs, validate

from xray_autoinst.contrib import aws_botocore, http_client, http_urllib3
from xray_autoinst.core.tracer import current_entity

CREDS = {"region_name": "us-east-1", "aws_access_key_id": "testing",
         "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def moto():
    proc, port = start_moto()
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def fake():
    s = FakeAWS()
    yield s
    s.close()


@pytest.fixture
def patched():
    http_client.patch()
    http_urllib3.patch()
    aws_botocore.patch()
    yield
    aws_botocore.unpatch()
    http_urllib3.unpatch()
    http_client.unpatch()


def client(service, endpoint, attempts=None):
    cfg = Config(retries={"max_attempts": attempts, "mode": "standard"}) \
        if attempts is not None else None
    return boto3.client(service, endpoint_url=endpoint, config=cfg, **CREDS)



def walk(doc):
    yield doc
    for s in subs(doc):
        yield from walk(s)


def test_s3_dynamodb_sqs_one_aws_subsegment_per_call(tracer, patched, moto):
    t, emitter = tracer
    s3, ddb, sqs = (client(s, moto) for s in ("s3", "dynamodb", "sqs"))
    with segment(t):
        s3.create_bucket(Bucket="orders-bucket")
        s3.put_object(Bucket="orders-bucket", Key="in/1.json", Body=b"PAYLOAD-SECRET")
        ddb.create_table(
            TableName="orders", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
        ddb.put_item(TableName="orders", Item={"id": {"S": "ITEM-SECRET"}})
        ddb.batch_get_item(RequestItems={"orders": {"Keys": [{"id": {"S": "ITEM-SECRET"}}]}})
        queue_url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
        sqs.send_message(QueueUrl=queue_url, MessageBody="BODY-SECRET")
        received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1)
        assert received["Messages"][0]["Body"] == "BODY-SECRET"
    # the message taken (indexed) is a segment of its own, ended with the request that took it
    [msg] = [d for d in emitter.documents if "sqs" in d.get("metadata", {})]
    emitter.documents.remove(msg)
    validate(msg)
    doc = only_doc(emitter)
    calls = subs(doc)
    assert [(c["name"], c["aws"]["operation"]) for c in calls] == [
        ("s3", "CreateBucket"), ("s3", "PutObject"), ("dynamodb", "CreateTable"),
        ("dynamodb", "PutItem"), ("dynamodb", "BatchGetItem"), ("sqs", "CreateQueue"),
        ("sqs", "SendMessage"), ("sqs", "ReceiveMessage")]
    for c in calls:
        assert c["namespace"] == "aws"
        assert c["aws"]["region"] == "us-east-1" and c["aws"]["retries"] == 0
        assert c["aws"]["request_id"]
        assert c["http"]["response"]["status"] == 200
        assert not any(c.get(f) for f in ("error", "fault", "throttle"))
    # the AWS call is the node: no HTTP subsegment under it, only connection phases
    for c in calls:
        for inner in walk(c):
            assert inner is c or inner["name"] in ("connect", "dns", "dial", "tls")
            assert inner is c or "namespace" not in inner
    assert [p["name"] for p in subs(subs(calls[0])[0])] == ["dns", "dial"]
    put_object, put_item, batch = calls[1]["aws"], calls[3]["aws"], calls[4]["aws"]
    assert put_object["bucket_name"] == "orders-bucket" and put_object["key"] == "in/1.json"
    assert put_item["table_name"] == "orders" and batch["table_names"] == ["orders"]
    assert calls[5]["aws"]["queue_name"] == "jobs"
    assert calls[6]["aws"]["queue_url"] == queue_url and calls[6]["aws"]["message_id"]
    assert calls[7]["aws"]["message_count"] == 1
    text = json.dumps(doc)
    for secret in ("PAYLOAD-SECRET", "ITEM-SECRET", "BODY-SECRET"):
        assert secret not in text


def test_trace_header_reaches_the_wire_and_keep_alive_reuse(tracer, patched, fake):
    t, emitter = tracer
    ddb = client("dynamodb", fake.url())
    with segment(t) as seg:
        ddb.put_item(TableName="t", Item={"id": {"S": "1"}})
        ddb.get_item(TableName="t", Key={"id": {"S": "1"}})
    first, second = subs(only_doc(emitter))
    headers = [parse_trace_header(h) for h in fake.trace_headers()]
    assert headers == [{"Root": seg.trace_id, "Parent": first["id"], "Sampled": "1"},
                       {"Root": seg.trace_id, "Parent": second["id"], "Sampled": "1"}]
    assert first["aws"]["request_id"] == "fake-request-1"
    assert [s["name"] for s in subs(first)] == ["connect"]
    assert "subsegments" not in second  # the pooled connection was reused
    assert len({r["conn"] for r in fake.requests}) == 1


def test_client_error_4xx_is_error_with_remote_cause(tracer, patched, fake):
    t, emitter = tracer
    fake.queue.append((400, {"__type": "com.amazonaws.dynamodb.v20120810#"
                                       "ResourceNotFoundException", "message": "no table"}))
    ddb = client("dynamodb", fake.url())
    with segment(t):
        with pytest.raises(botocore.exceptions.ClientError) as info:
            ddb.get_item(TableName="missing", Key={"id": {"S": "1"}})
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    [sub] = subs(only_doc(emitter))
    assert sub["error"] is True and "fault" not in sub and "throttle" not in sub
    assert sub["http"]["response"]["status"] == 400
    assert sub["aws"]["table_name"] == "missing" and sub["aws"]["request_id"] == "fake-request-1"
    [exc] = sub["cause"]["exceptions"]
    assert exc["type"] == "ResourceNotFoundException" and exc["remote"] is True


def test_throttling_with_a_retry(tracer, patched, fake):
    t, emitter = tracer
    throttled = (400, {"__type": "ThrottlingException", "message": "slow down"})
    fake.queue += [throttled, throttled]
    ddb = client("dynamodb", fake.url(), attempts=1)  # one retry
    with segment(t):
        with pytest.raises(botocore.exceptions.ClientError):
            ddb.put_item(TableName="t", Item={"id": {"S": "1"}})
    [sub] = subs(only_doc(emitter))
    assert sub["throttle"] is True and sub["error"] is True and "fault" not in sub
    assert sub["aws"]["retries"] == 1
    assert [parse_trace_header(h)["Parent"] for h in fake.trace_headers()] == [sub["id"]] * 2


def test_server_error_is_fault(tracer, patched, fake):
    t, emitter = tracer
    fake.queue.append((500, {"__type": "InternalServerError", "message": "boom"}))
    ddb = client("dynamodb", fake.url(), attempts=0)
    with segment(t):
        with pytest.raises(botocore.exceptions.ClientError):
            ddb.put_item(TableName="t", Item={"id": {"S": "1"}})
    [sub] = subs(only_doc(emitter))
    assert (sub["name"], sub["namespace"], sub["aws"]["operation"]) == (
        "dynamodb", "aws", "PutItem")
    assert sub["fault"] is True and "error" not in sub
    assert sub["http"]["response"]["status"] == 500


def test_connection_error_fault_phases_under_the_aws_call(tracer, patched):
    t, emitter = tracer
    port = free_port()
    sqs = client("sqs", f"http://127.0.0.1:{port}", attempts=0)
    with segment(t):
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            sqs.list_queues()
    [sub] = subs(only_doc(emitter))
    assert sub["name"] == "sqs" and sub["fault"] is True
    assert sub["cause"]["exceptions"][0]["type"] == "EndpointConnectionError"
    assert sub["cause"]["exceptions"][0]["remote"] is True
    [connect] = subs(sub)
    assert connect["fault"] is True and subs(connect)[-1]["name"] == "dial"


def test_calls_to_the_xray_service_are_never_recorded(tracer, patched, fake):
    t, emitter = tracer
    xray = client("xray", fake.url())
    with segment(t):
        xray.get_sampling_rules()
    assert subs(only_doc(emitter)) == []
    assert fake.trace_headers() == [None]


def test_unsampled_request_sends_sampled_0(patched, fake):
    t, emitter = install_tracer(
        {"XRAY_SAMPLING_RULES": '{"version": 2, "default": {"fixed_target": 0, "rate": 0}}'})
    token = current_entity.set(None)
    try:
        with segment(t) as seg:
            client("dynamodb", fake.url()).put_item(TableName="t", Item={"id": {"S": "1"}})
    finally:
        current_entity.reset(token)
    assert emitter.documents == []
    [hdr] = fake.trace_headers()
    assert parse_trace_header(hdr) == {"Root": seg.trace_id, "Parent": seg.id, "Sampled": "0"}


def test_outside_any_request_nothing_recorded(tracer, patched, fake):
    _t, emitter = tracer
    client("dynamodb", fake.url()).put_item(TableName="t", Item={"id": {"S": "1"}})
    assert emitter.documents == [] and fake.trace_headers() == [None]


@pytest.mark.parametrize("helper", ["_begin", "_identifiers", "_result", "_error", "_metadata",
                                    "_plan", "_ensure_handler"])
def test_broken_instrumentation_leaves_calls_unchanged(patched, fake, monkeypatch, helper):
    t, emitter = install_tracer({"XRAY_AUTOINST_RAISE": "0"})

    def broken(*args, **kwargs):
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(aws_botocore, helper, broken)
    fake.queue += [(200, {"Item": {"id": {"S": "1"}}}),
                   (400, {"__type": "ResourceNotFoundException", "message": "gone"})]
    ddb = client("dynamodb", fake.url(), attempts=0)
    token = current_entity.set(None)
    try:
        with segment(t):
            assert ddb.get_item(TableName="t", Key={"id": {"S": "1"}})["Item"] == {
                "id": {"S": "1"}}
            with pytest.raises(botocore.exceptions.ClientError) as info:
                ddb.get_item(TableName="t", Key={"id": {"S": "1"}})
            assert info.value.response["Error"] == {
                "Code": "ResourceNotFoundException", "Message": "gone"}
            assert current_entity.get() is not None and current_entity.get().name == "svc"
    finally:
        current_entity.reset(token)
    validate(only_doc(emitter))


def test_the_header_handler_never_raises_into_botocore(patched, fake, monkeypatch):
    t, emitter = install_tracer({"XRAY_AUTOINST_RAISE": "0"})
    monkeypatch.setattr(aws_botocore._tracer_mod.tracer, "outgoing_header",
                        lambda *_a: 1 / 0)
    token = current_entity.set(None)
    try:
        with segment(t):
            client("dynamodb", fake.url()).put_item(TableName="t", Item={"id": {"S": "1"}})
    finally:
        current_entity.reset(token)
    [sub] = subs(only_doc(emitter))
    assert sub["http"]["response"]["status"] == 200


def test_make_api_call_called_with_keywords_is_traced(tracer, patched, fake):
    """The replacement of ``_make_api_call`` takes what the original takes, keywords too."""
    t, emitter = tracer
    fake.queue += [(200, {"Item": {"id": {"S": "1"}}})] * 2
    ddb = client("dynamodb", fake.url())
    with segment(t):
        out = ddb._make_api_call(operation_name="GetItem",
                                 api_params={"TableName": "t", "Key": {"id": {"S": "1"}}})
        ddb.get_item(TableName="t", Key={"id": {"S": "1"}})
    assert out["Item"] == {"id": {"S": "1"}}
    doc = only_doc(emitter)
    validate(doc)
    assert [(s["name"], s["namespace"], s["aws"]["operation"], s["aws"]["table_name"],
             s["aws"]["region"]) for s in subs(doc)] == [
        ("dynamodb", "aws", "GetItem", "t", ddb.meta.region_name)] * 2


def test_header_handler_uses_the_checked_headers_dict_and_keeps_a_callers_header(patched):
    """The installed botocore's HeadersDict passes the check at patch time (the handler sets
    its headers in the dict directly), and a trace header already on the request wins."""
    from botocore.awsrequest import HeadersDict

    assert aws_botocore._fast_headers[0] is HeadersDict

    class Req:
        headers = HeadersDict({"x-amzn-trace-id": "Root=mine"})

    t, _emitter = install_tracer({})
    seg, token = t.begin_segment("svc")
    try:
        aws_botocore._inject_header(request=Req)
    finally:
        t.end_segment(seg, token)
    assert Req.headers["X-Amzn-Trace-Id"] == "Root=mine"
    assert Req.headers["traceparent"].startswith("00-")


def _stubbed_ddb():
    from botocore.stub import Stubber

    ddb = boto3.client("dynamodb", endpoint_url="http://127.0.0.1:9", **CREDS)
    stubber = Stubber(ddb)
    stubber.activate()
    return ddb, stubber


def test_a_known_operation_is_begun_in_make_api_call_and_records_the_same(
        tracer, patched, monkeypatch):
    """The second call of an operation on a client takes the path written out in
    ``_make_api_call`` (``_begin`` is not called again) and records what the first recorded:
    the same fields, a str subclass and a long identifier as ``_identifiers`` takes them."""
    t, emitter = tracer
    calls = []
    begin = aws_botocore._begin
    monkeypatch.setattr(aws_botocore, "_begin", lambda *a: calls.append(a[1]) or begin(*a))

    class Name(str):
        pass

    long_name = "t" * 300
    ddb, stubber = _stubbed_ddb()
    for _ in range(3):
        stubber.add_response("get_item", {"Item": {"id": {"S": "1"}}})
    stubber.add_response("batch_get_item", {"Responses": {}})
    with segment(t):
        for name in ("orders", Name("orders"), long_name):
            ddb.get_item(TableName=name, Key={"id": {"S": "1"}})
        ddb.batch_get_item(RequestItems={"a": {"Keys": [{"id": {"S": "1"}}]}})
    assert calls == ["GetItem", "BatchGetItem"]  # each operation's first call only
    doc = only_doc(emitter)
    validate(doc)
    got = [(s["name"], s["namespace"], s["aws"]) for s in subs(doc)]
    ops = {"operation": "GetItem", "region": "us-east-1"}
    assert got == [
        ("dynamodb", "aws", dict(ops, table_name="orders")),
        ("dynamodb", "aws", dict(ops, table_name="orders")),
        ("dynamodb", "aws", dict(ops, table_name="t" * 247 + "...")),
        ("dynamodb", "aws", {"operation": "BatchGetItem", "region": "us-east-1",
                             "table_names": ["a"]})]


def test_the_written_out_path_fails_into_the_reporter_not_the_call(patched, monkeypatch):
    """A failure while the usual call is begun in ``_make_api_call`` (here the plan's
    parameters) is reported and the call still runs; one while it is ended too."""
    t, emitter = install_tracer({"XRAY_AUTOINST_RAISE": "0"})
    ddb, stubber = _stubbed_ddb()
    for _ in range(3):
        stubber.add_response("get_item", {"Item": {"id": {"S": "1"}}})
    token = current_entity.set(None)
    try:
        with segment(t):
            ddb.get_item(TableName="orders", Key={"id": {"S": "1"}})  # the plan is made
            plan = ddb._xray_autoinst_events.ops["GetItem"]
            monkeypatch.setattr(plan, "params", (None,))  # unpacking it raises
            assert ddb.get_item(TableName="orders", Key={"id": {"S": "1"}})["Item"]
            monkeypatch.setattr(aws_botocore, "_result", lambda *a: 1 / 0)
            assert ddb.get_item(TableName="orders", Key={"id": {"S": "1"}})["Item"]
            assert current_entity.get().name == "svc"
    finally:
        current_entity.reset(token)
    doc = only_doc(emitter)
    validate(doc)
    # recorded and ended all the same (the plan stays broken for the third)
    assert [s["aws"].get("table_name") for s in subs(doc)] == ["orders", None, None]


@pytest.mark.parametrize("lineage, tracestate", [(None, None), ("a87bd80c:1", None),
                                                 (None, "vendor=1")])
def test_header_handler_values_equal_core_headers(patched, lineage, tracestate):
    """The trace headers the before-send handler writes out for the usual case are
    core.header's format and format_traceparent (with a lineage or a tracestate, the
    tracer's own methods); a caller's traceparent wins as its X-Amzn-Trace-Id does."""
    from botocore.awsrequest import HeadersDict

    from xray_autoinst.core import header

    t, _emitter = install_tracer({})
    seg, token = t.begin_segment("svc")
    seg.lineage, seg.tracestate = lineage, tracestate
    sub = t.begin_subsegment("dynamodb", "aws")
    sub.aws = {}

    class Req:
        headers = HeadersDict({})

    class Mine:
        headers = HeadersDict({"TraceParent": "00-mine"})

    try:
        aws_botocore._inject_header(request=Req)
        aws_botocore._inject_header(request=Mine)
    finally:
        t.end_subsegment(sub)
        t.end_segment(seg, token)
    assert Req.headers["X-Amzn-Trace-Id"] == header.format(seg.trace_id, sub.id, True, lineage)
    assert Req.headers["traceparent"] == header.format_traceparent(seg.trace_id, sub.id, True)
    assert Req.headers.get("tracestate") == tracestate
    assert Mine.headers["traceparent"] == "00-mine" and "tracestate" not in Mine.headers
    assert Mine.headers["X-Amzn-Trace-Id"] == Req.headers["X-Amzn-Trace-Id"]
    assert sub.aws["retries"] == 1  # one per attempt: two attempts
