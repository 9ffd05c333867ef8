"""End to end: an unchanged WSGI application under ``xray-run gunicorn`` calls AWS through
boto3 -- a moto server standing in for S3, DynamoDB and SQS, and an AWS-shaped endpoint that
records the headers it receives -- and the documents reaching a loopback daemon are checked."""

import json
import subprocess
import textwrap

import pytest
from test_http_servers import FakeAWS, parse_trace_header, start_moto
from xray_testing import (
    BIN,
    FakeDaemon,
    agent_env,
    free_port,
    http_get,
    start_traced,
    stop,
    validate,
    wait_http,
    xray_run,
)

APP = textwrap.dedent('''
    """A plain WSGI application calling AWS (no tracing code)."""
    import json
    import os

    import boto3
    import botocore.exceptions

    MOTO = os.environ["T_MOTO"]
    FAKE = os.environ["T_FAKE_AWS"]
    s3 = boto3.client("s3", endpoint_url=MOTO)
    ddb = boto3.client("dynamodb", endpoint_url=MOTO)
    sqs = boto3.client("sqs", endpoint_url=MOTO)
    edge = boto3.client("dynamodb", endpoint_url=FAKE)


    def app(environ, start_response):
        path = environ["PATH_INFO"]
        out = {}
        if path == "/aws":
            s3.create_bucket(Bucket="invoices")
            s3.put_object(Bucket="invoices", Key="2026/11/a.pdf", Body=b"PDF-CONTENT-SECRET")
            ddb.create_table(
                TableName="orders", BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
            ddb.put_item(TableName="orders", Item={"id": {"S": "ITEM-SECRET"}})
            item = ddb.get_item(TableName="orders", Key={"id": {"S": "ITEM-SECRET"}})
            out["item"] = item["Item"]["id"]["S"]
            url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
            sqs.send_message(QueueUrl=url, MessageBody="MESSAGE-SECRET")
            try:
                s3.get_object(Bucket="invoices", Key="missing.pdf")
            except botocore.exceptions.ClientError as exc:
                out["missing"] = exc.response["Error"]["Code"]
        elif path == "/edge":
            edge.put_item(TableName="edge", Item={"id": {"S": "1"}})
            edge.put_item(TableName="edge", Item={"id": {"S": "2"}})
        body = json.dumps(out).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
''')


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("aws")
    (tmp / "aws_app.py").write_text(APP)
    moto_proc, moto_port = start_moto()
    fake, daemon = FakeAWS(), FakeDaemon()
    port = free_port()
    env = agent_env(daemon, T_MOTO=f"http://127.0.0.1:{moto_port}", T_FAKE_AWS=fake.url(),
                    AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                    AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
                    XRAY_SERVICE_NAME="billing")
    proc = subprocess.Popen(
        xray_run(str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "1", "aws_app:app"),
        cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(port, "/warmup", proc=proc)
        yield {"port": port, "fake": fake, "daemon": daemon}
    finally:
        out = stop(proc)
        moto_proc.terminate()
        moto_proc.wait(10)
        fake.close()
        daemon.close()
        assert "Traceback" not in out, out


def call(stack, path):
    status, _headers, body = http_get(stack["port"], path)
    assert status == 200
    [doc] = stack["daemon"].wait(
        1, timeout=20,
        predicate=lambda d: d.get("http", {}).get("request", {}).get("url", "").endswith(path))
    for d in stack["daemon"].documents:
        validate(d)
    assert doc["name"] == "billing"
    return json.loads(body), doc


def subs(doc):
    return doc.get("subsegments", [])


def test_boto3_calls_to_s3_dynamodb_sqs(stack):
    answer, doc = call(stack, "/aws")
    assert answer == {"item": "ITEM-SECRET", "missing": "NoSuchKey"}
    calls = subs(doc)
    assert [(c["name"], c["namespace"], c["aws"]["operation"]) for c in calls] == [
        ("s3", "aws", "CreateBucket"), ("s3", "aws", "PutObject"),
        ("dynamodb", "aws", "CreateTable"), ("dynamodb", "aws", "PutItem"),
        ("dynamodb", "aws", "GetItem"), ("sqs", "aws", "CreateQueue"),
        ("sqs", "aws", "SendMessage"), ("s3", "aws", "GetObject")]
    for c in calls:
        assert c["aws"]["region"] == "us-east-1" and c["aws"]["request_id"]
        assert c["aws"]["retries"] == 0
        # the AWS call is the node: under it only the connection phases, never an HTTP call
        for inner in subs(c):
            assert inner["name"] == "connect" and "namespace" not in inner
            assert [p["name"] for p in subs(inner)] == ["dns", "dial"]
    assert [c["http"]["response"]["status"] for c in calls] == [200] * 7 + [404]
    aws = [c["aws"] for c in calls]
    assert aws[1]["bucket_name"] == "invoices" and aws[1]["key"] == "2026/11/a.pdf"
    assert aws[3]["table_name"] == aws[4]["table_name"] == "orders"
    assert aws[6]["queue_url"].endswith("/jobs") and aws[6]["message_id"]
    missing = calls[7]
    assert missing["error"] is True and "fault" not in missing
    assert missing["cause"]["exceptions"][0]["type"] == "NoSuchKey"
    assert missing["cause"]["exceptions"][0]["remote"] is True
    text = json.dumps(doc)
    for secret in ("PDF-CONTENT-SECRET", "ITEM-SECRET", "MESSAGE-SECRET"):
        assert secret not in text


def test_trace_header_reaches_the_aws_endpoint(stack):
    stack["fake"].requests.clear()
    _answer, doc = call(stack, "/edge")
    first, second = subs(doc)
    assert (first["name"], second["name"]) == ("dynamodb", "dynamodb")
    received = [parse_trace_header(h) for h in stack["fake"].trace_headers()]
    assert received == [{"Root": doc["trace_id"], "Parent": first["id"], "Sampled": "1"},
                        {"Root": doc["trace_id"], "Parent": second["id"], "Sampled": "1"}]
    assert [s["name"] for s in subs(first)] == ["connect"]
    assert [p["name"] for p in subs(subs(first)[0])] == ["dns", "dial"]
    assert "subsegments" not in second  # the pooled keep-alive connection


FAILING_APP = textwrap.dedent('''
    """A WSGI application that lets a failed AWS call's exception through (gunicorn: 500)."""
    import os

    import boto3

    ddb = boto3.client("dynamodb", endpoint_url=os.environ["T_FAKE_AWS"])


    def load_order():
        return ddb.get_item(TableName="orders", Key={"id": {"S": "1"}})


    def app(environ, start_response):
        if environ["PATH_INFO"] == "/order":
            load_order()
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]
''')


def test_a_failed_call_the_application_lets_through_is_recorded_once(tmp_path):
    """The call's subsegment records the exception (remote, the application's frames that led
    to the call, none of the agent's); the request's segment refers to that record by id."""
    (tmp_path / "failing_app.py").write_text(FAILING_APP)
    fake, daemon = FakeAWS(), FakeDaemon()
    proc = None
    try:
        proc, port = start_traced(
            [str(BIN / "gunicorn"), "-b", "127.0.0.1:{port}", "-w", "1", "failing_app:app"],
            daemon, tmp_path, T_FAKE_AWS=fake.url(), AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true")
        fake.queue.append((400, {"__type": "ResourceNotFoundException", "message": "gone"}))
        status, _headers, _body = http_get(port, "/order")
        assert status == 500
        [doc] = daemon.wait(1, timeout=20)
    finally:
        out = stop(proc) if proc is not None else ""
        fake.close()
        daemon.close()
    validate(doc)
    [sub] = subs(doc)
    assert sub["name"] == "dynamodb" and sub["aws"]["operation"] == "GetItem"
    [record] = sub["cause"]["exceptions"]
    assert record["type"] == "ResourceNotFoundException" and record["remote"] is True
    labels = [f["label"] for f in record["stack"]]
    assert labels.index("load_order") < labels.index("app"), labels
    assert not [f["path"] for f in record["stack"] if "xray_autoinst" in f["path"]], record
    assert doc["fault"] is True and doc["http"]["response"]["status"] == 500
    assert doc["cause"] == record["id"], (doc["cause"], out)
