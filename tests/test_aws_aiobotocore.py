"""aiobotocore in-process against a moto server and an AWS-shaped endpoint that records
headers: the same ``aws`` subsegments botocore gets (from aws_botocore's code), the trace header
on the wire for each call, errors with the client's own exception, concurrent requests on one
event loop each under its own segment, nothing outside a request, and unpatch restoring."""

import asyncio
import inspect
import json

import pytest
from test_http_servers import FakeAWS, parse_trace_header, start_moto
from xray_testing import install_tracer, need, subs, validate

aiobotocore_session = need("aiobotocore.session")
import botocore.exceptions  # noqa: E402
from aiobotocore import client as aio_client  # noqa: E402

from xray_autoinst.contrib import aws_aiobotocore, aws_botocore  # noqa: E402

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
def traced(tracer):
    aws_aiobotocore.patch()
    yield tracer
    aws_aiobotocore.unpatch()


def client(service, endpoint, attempts=None):
    from aiobotocore.config import AioConfig

    cfg = AioConfig(retries={"max_attempts": attempts, "mode": "standard"}) \
        if attempts is not None else None
    session = aiobotocore_session.get_session()
    return session.create_client(service, endpoint_url=endpoint, config=cfg, **CREDS)


def docs(emitter):
    for d in emitter.documents:
        validate(d)
    return emitter.documents


def test_patch_keeps_a_coroutine_function_and_unpatch_restores():
    original = aio_client.AioBaseClient._make_api_call
    aws_aiobotocore.patch()
    try:
        patched = aio_client.AioBaseClient._make_api_call
        assert patched is not original
        assert inspect.iscoroutinefunction(patched)
    finally:
        aws_aiobotocore.unpatch()
    assert aio_client.AioBaseClient._make_api_call is original
    assert "_xray_autoinst_events" not in aio_client.AioBaseClient.__dict__
    assert aws_botocore._state["aio"] is False


def test_calls_fields_errors_and_no_payload(traced, moto):
    t, emitter = traced

    async def main():
        async with client("s3", moto) as s3, client("dynamodb", moto) as ddb:
            seg, token = t.begin_segment("svc")
            await s3.create_bucket(Bucket="invoices")
            await s3.put_object(Bucket="invoices", Key="a.pdf", Body=b"PDF-CONTENT-SECRET")
            obj = await s3.get_object(Bucket="invoices", Key="a.pdf")
            async with obj["Body"] as body:
                assert await body.read() == b"PDF-CONTENT-SECRET"
            await ddb.create_table(
                TableName="orders", BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
            await ddb.put_item(TableName="orders", Item={"id": {"S": "ITEM-SECRET"}})
            with pytest.raises(botocore.exceptions.ClientError) as info:
                await s3.get_object(Bucket="invoices", Key="missing.pdf")
            t.end_segment(seg, token)
            return info.value

    exc = asyncio.run(main())
    assert type(exc).__name__ == "NoSuchKey"  # the client's own exception class
    [doc] = docs(emitter)
    calls = subs(doc)
    assert [(c["name"], c["namespace"], c["aws"]["operation"]) for c in calls] == [
        ("s3", "aws", "CreateBucket"), ("s3", "aws", "PutObject"), ("s3", "aws", "GetObject"),
        ("dynamodb", "aws", "CreateTable"), ("dynamodb", "aws", "PutItem"),
        ("s3", "aws", "GetObject")]
    for c in calls:
        assert c["aws"]["region"] == "us-east-1" and c["aws"]["request_id"]
        assert c["aws"]["retries"] == 0
        assert doc["start_time"] <= c["start_time"] <= c["end_time"] <= doc["end_time"]
    assert [c["http"]["response"]["status"] for c in calls] == [200] * 5 + [404]
    assert calls[1]["aws"]["bucket_name"] == "invoices" and calls[1]["aws"]["key"] == "a.pdf"
    assert calls[4]["aws"]["table_name"] == "orders"
    missing = calls[5]
    assert missing["error"] is True and "fault" not in missing
    [ex] = missing["cause"]["exceptions"]
    assert ex["type"] == "NoSuchKey" and ex["remote"] is True
    text = json.dumps(doc)
    for secret in ("PDF-CONTENT-SECRET", "ITEM-SECRET", "testing"):
        assert secret not in text


def test_trace_header_on_the_wire_and_faults(traced, fake):
    t, emitter = traced
    boom = (500, {"__type": "InternalServerError", "message": "boom"})
    fake.queue[:] = [(200, {}), boom, boom]

    async def main():
        async with client("dynamodb", fake.url(), attempts=1) as ddb:
            seg, token = t.begin_segment("svc")
            await ddb.put_item(TableName="edge", Item={"id": {"S": "1"}})
            try:
                await ddb.put_item(TableName="edge", Item={"id": {"S": "2"}})
            except botocore.exceptions.ClientError as exc:
                caught = exc
            t.end_segment(seg, token)
            return caught

    exc = asyncio.run(main())
    assert exc.response["Error"]["Code"] == "InternalServerError"
    [doc] = docs(emitter)
    first, second = subs(doc)
    headers = [parse_trace_header(h) for h in fake.trace_headers()]
    assert headers[0] == {"Root": doc["trace_id"], "Parent": first["id"], "Sampled": "1"}
    # both attempts of the failing call carry the header, with the same parent
    assert len(headers) == 3
    for h in headers[1:]:
        assert h == {"Root": doc["trace_id"], "Parent": second["id"], "Sampled": "1"}
    assert second["fault"] is True and second["http"]["response"]["status"] == 500
    assert second["aws"]["retries"] == len(headers) - 2


def test_concurrent_requests_on_one_loop(traced, fake):
    t, emitter = traced

    async def request(ddb, i):
        seg, token = t.begin_segment("req-%d" % i)
        for _ in range(3):
            await ddb.get_item(TableName="table_%d" % i, Key={"id": {"S": "k"}})
            await asyncio.sleep(0)
        t.end_segment(seg, token)

    async def main():
        async with client("dynamodb", fake.url()) as ddb:
            await asyncio.gather(*(request(ddb, i) for i in range(8)))

    asyncio.run(main())
    documents = docs(emitter)
    assert len(documents) == 8
    for doc in documents:
        i = doc["name"].split("-")[1]
        tables = [c["aws"]["table_name"] for c in subs(doc)]
        assert tables == ["table_%s" % i] * 3, (doc["name"], tables)
    received = [parse_trace_header(h) for h in fake.trace_headers()]
    by_parent = {c["id"]: d["trace_id"] for d in documents for c in subs(d)}
    assert len(received) == 24
    assert all(by_parent[h["Parent"]] == h["Root"] for h in received)


def test_nothing_recorded_outside_a_request(traced, fake):
    _t, emitter = traced

    async def main():
        async with client("dynamodb", fake.url()) as ddb:
            await ddb.get_item(TableName="t", Key={"id": {"S": "k"}})

    asyncio.run(main())
    assert emitter.documents == []
    assert fake.trace_headers() == [None]  # no header outside a trace


@pytest.mark.parametrize("helper", ["_begin", "_identifiers", "_result", "_error", "_metadata",
                                    "_plan", "_ensure_handler"])
def test_broken_instrumentation_leaves_calls_unchanged(fake, monkeypatch, helper):
    from xray_autoinst.core.tracer import current_entity

    t, emitter = install_tracer({"XRAY_AUTOINST_RAISE": "0"})

    def broken(*args, **kwargs):
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(aws_botocore, helper, broken)
    fake.queue += [(200, {"Item": {"id": {"S": "1"}}}),
                   (400, {"__type": "ResourceNotFoundException", "message": "gone"})]

    async def main():
        async with client("dynamodb", fake.url(), attempts=0) as ddb:
            seg, token = t.begin_segment("svc")
            try:
                got = await ddb.get_item(TableName="t", Key={"id": {"S": "1"}})
                assert got["Item"] == {"id": {"S": "1"}}
                with pytest.raises(botocore.exceptions.ClientError) as info:
                    await ddb.get_item(TableName="t", Key={"id": {"S": "1"}})
                assert info.value.response["Error"] == {
                    "Code": "ResourceNotFoundException", "Message": "gone"}
                assert current_entity.get() is seg
            finally:
                t.end_segment(seg, token)

    aws_aiobotocore.patch()
    try:
        asyncio.run(main())
    finally:
        aws_aiobotocore.unpatch()
    [doc] = docs(emitter)
