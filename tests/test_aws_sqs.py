"""SQS and SNS in-process against a moto server: producers stamp AWSTraceHeader (never over
the application's own), consumers ask for it without the application seeing it, one segment per
message taken with the boundary documented in contrib/aws_sqs.py (next take, poll again, delete,
end of the loop, thread-pool task), empty polls record nothing, no message body recorded."""

import asyncio
import json
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from test_http_servers import start_moto
from xray_testing import install_tracer, segment, subs, validate

from xray_autoinst.asgi import XRayMiddleware as AsgiMiddleware
from xray_autoinst.contrib import (
    _work,
    aws_botocore,
    aws_sqs,
    ctx_futures,
    http_client,
    http_urllib3,
)
from xray_autoinst.core import header
from xray_autoinst.core import tracer as tracer_mod
from xray_autoinst.core.tracer import current_entity
from xray_autoinst.wsgi import XRayMiddleware

CREDS = {"region_name": "us-east-1", "aws_access_key_id": "testing",
         "aws_secret_access_key": "testing"}
BODY = "BODY-SECRET-4711"


@pytest.fixture(scope="module")
def moto():
    proc, port = start_moto()
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def patched():
    http_client.patch()
    http_urllib3.patch()
    aws_botocore.patch()
    ctx_futures.patch()
    aws_sqs.patch()
    yield
    aws_sqs.unpatch()
    ctx_futures.unpatch()
    aws_botocore.unpatch()
    http_urllib3.unpatch()
    http_client.unpatch()
    assert not _work.units, _work.units  # every message's segment ended
    assert not _work.taken and not tracer_mod.ending  # and nothing waits for a request's end


@pytest.fixture
def sqs(moto):
    return boto3.client("sqs", endpoint_url=moto, **CREDS)


@pytest.fixture
def queue(sqs):
    return sqs.create_queue(QueueName="q-" + uuid.uuid4().hex[:8])["QueueUrl"]


def docs_of(emitter):
    for d in emitter.documents:
        validate(d)
        assert BODY not in json.dumps(d)
    return emitter.documents


def message_segments(emitter):
    return [d for d in docs_of(emitter)
            if d.get("type") != "subsegment" and "sqs" in d.get("metadata", {})]


def send(sqs, queue, n=1, **extra):
    for i in range(n):
        sqs.send_message(QueueUrl=queue, MessageBody=f"{BODY}-{i}", **extra)


def test_send_stamps_awstraceheader_with_the_call_as_parent(tracer, patched, sqs, queue):
    t, emitter = tracer
    with segment(t, "producer") as seg:
        sqs.send_message(QueueUrl=queue, MessageBody=BODY)
    [doc] = docs_of(emitter)
    [call] = subs(doc)
    assert call["aws"]["operation"] == "SendMessage"
    emitter.documents.clear()
    current_entity.set(None)
    [msg] = sqs.receive_message(QueueUrl=queue, MessageSystemAttributeNames=["All"])["Messages"]
    hdr = header.parse(msg["Attributes"]["AWSTraceHeader"])  # asked for: seen
    assert (hdr.root, hdr.parent, hdr.sampled) == (seg.trace_id, call["id"], "1")


def test_moto_does_not_copy_the_http_header_so_the_attribute_is_what_chains(
        tracer, patched, moto, sqs, queue):
    t, _ = tracer
    plain = boto3.client("sqs", endpoint_url=moto, **CREDS)
    plain._xray_autoinst_sqs = True  # this client never gets the SQS handlers: HTTP header only
    wire = []
    plain.meta.events.register_last("before-send", lambda request, **kw: wire.append(
        request.headers.get("X-Amzn-Trace-Id")))
    with segment(t, "producer"):
        plain.send_message(QueueUrl=queue, MessageBody=BODY)
    assert wire and wire[-1]  # the header went out
    current_entity.set(None)
    [msg] = sqs.receive_message(QueueUrl=queue, MessageSystemAttributeNames=["All"])["Messages"]
    assert "AWSTraceHeader" not in msg.get("Attributes", {})


def test_a_botocore_without_message_system_attribute_names_asks_through_attribute_names(
        tracer, patched, sqs, queue):
    """botocore before 1.34.101 has no MessageSystemAttributeNames: the receive still works
    (the agent's parameter would fail validation) and the trace still chains."""
    t, emitter = tracer
    members = sqs.meta.service_model.operation_model("ReceiveMessage").input_shape.members
    saved = members.pop("MessageSystemAttributeNames", None)
    try:
        with segment(t, "producer") as seg:
            sqs.send_message(QueueUrl=queue, MessageBody=BODY)
        current_entity.set(None)
        bodies = []
        for m in sqs.receive_message(QueueUrl=queue)["Messages"]:
            bodies.append(m["Body"])
            assert "Attributes" not in m  # not asked for by the application: not shown
        assert bodies == [BODY]
    finally:
        if saved is not None:
            members["MessageSystemAttributeNames"] = saved
    [consumer] = message_segments(emitter)
    assert consumer["trace_id"] == seg.trace_id


def test_send_never_overrides_the_applications_header(tracer, patched, sqs, queue):
    t, _ = tracer
    own = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    attrs = {"AWSTraceHeader": {"DataType": "String", "StringValue": own}}
    with segment(t, "producer"):
        sqs.send_message(QueueUrl=queue, MessageBody=BODY, MessageSystemAttributes=attrs)
    assert attrs == {"AWSTraceHeader": {"DataType": "String", "StringValue": own}}
    current_entity.set(None)
    [msg] = sqs.receive_message(QueueUrl=queue, AttributeNames=["AWSTraceHeader"])["Messages"]
    assert msg["Attributes"]["AWSTraceHeader"] == own


def test_send_batch_stamps_each_entry_without_touching_the_applications_list(
        tracer, patched, sqs, queue):
    t, emitter = tracer
    entries = [{"Id": str(i), "MessageBody": BODY} for i in range(3)]
    before = json.dumps(entries)
    wire = []
    sqs.meta.events.register("before-send.sqs.SendMessageBatch",
                             lambda request, **kw: wire.append(request.body))
    with segment(t, "producer") as seg:
        sqs.send_message_batch(QueueUrl=queue, Entries=entries)
    assert json.dumps(entries) == before
    # moto drops system attributes of batch entries: read them on the wire
    [body] = wire
    sent = json.loads(body)["Entries"]
    assert len(sent) == 3
    for e in sent:
        hdr = header.parse(e["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"])
        assert hdr.root == seg.trace_id


def test_sns_publish_and_publish_batch_carry_the_http_header(tracer, patched, moto):
    t, emitter = tracer
    sns = boto3.client("sns", endpoint_url=moto, **CREDS)
    seen = []
    sns.meta.events.register_last("before-send",
                             lambda request, **kw: seen.append(request.headers.get(
                                 "X-Amzn-Trace-Id")))
    arn = sns.create_topic(Name="t-" + uuid.uuid4().hex[:6])["TopicArn"]
    seen.clear()
    with segment(t, "producer") as seg:
        sns.publish(TopicArn=arn, Message=BODY)
        sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=[{"Id": "1", "Message": BODY}])
    [doc] = docs_of(emitter)
    calls = subs(doc)
    assert [c["aws"]["operation"] for c in calls] == ["Publish", "PublishBatch"]
    assert len(seen) == 2, seen
    for value, call in zip(seen, calls, strict=True):
        hdr = header.parse(value.decode() if isinstance(value, bytes) else value)
        assert hdr is not None, seen
        assert (hdr.root, hdr.parent) == (seg.trace_id, call["id"])


def test_receive_asks_without_the_application_seeing_it(tracer, patched, sqs, queue):
    t, emitter = tracer
    with segment(t, "producer"):
        send(sqs, queue, 2)
    current_entity.set(None)
    names = ["SenderId"]
    resp = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10,
                               MessageSystemAttributeNames=names)
    assert names == ["SenderId"]  # the application's list is untouched
    for m in resp["Messages"]:
        assert set(m["Attributes"]) == {"SenderId"}
    for m in resp["Messages"]:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    with segment(t, "producer"):
        send(sqs, queue, 1)
    current_entity.set(None)
    [m] = sqs.receive_message(QueueUrl=queue)["Messages"]
    assert "Attributes" not in m  # asked for nothing, got nothing
    assert isinstance(m, dict) and m["Body"].startswith(BODY)


def test_batch_of_ten_one_segment_each_continuing_the_producer(tracer, patched, sqs, queue):
    t, emitter = tracer
    with segment(t, "producer") as prod:
        send(sqs, queue, 10)
    [pdoc] = docs_of(emitter)
    parents = {c["id"] for c in subs(pdoc)}
    emitter.documents.clear()
    current_entity.set(None)
    got = []
    while len(got) < 10:
        resp = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
        for m in resp.get("Messages", []):
            assert current_entity.get().segment.sampled
            sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])  # handling
            got.append(m["MessageId"])
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
            assert current_entity.get() is None  # the delete ended it
        assert current_entity.get() is None
    segs = message_segments(emitter)
    assert len(segs) == 10
    assert len({s["parent_id"] for s in segs}) == 10
    assert sorted(s["metadata"]["sqs"]["message_id"] for s in segs) == sorted(got)
    for s in segs:
        assert s["trace_id"] == prod.trace_id
        assert s["parent_id"] in parents
        assert s["annotations"]["sqs_queue"] == queue.rsplit("/", 1)[-1]
        assert [(c["aws"]["operation"]) for c in subs(s)] == ["GetQueueAttributes",
                                                               "DeleteMessage"]
    # the polls themselves, made outside any segment, were never recorded
    assert not [d for d in emitter.documents if "ReceiveMessage" in json.dumps(d)]


def test_boto3_resources_one_segment_per_message(tracer, patched, moto, sqs, queue):
    t, emitter = tracer
    with segment(t, "producer") as prod:
        send(sqs, queue, 3)
    emitter.documents.clear()
    current_entity.set(None)
    q = boto3.resource("sqs", endpoint_url=moto, **CREDS).Queue(queue)
    messages = q.receive_messages(MaxNumberOfMessages=10)
    assert current_entity.get() is None and emitter.documents == []  # not taken yet
    assert len(messages) == 3
    for m in messages:
        assert m.body.startswith(BODY)
        sqs.list_queues()
        m.delete()
        assert current_entity.get() is None
    segs = message_segments(emitter)
    assert len(segs) == 3
    for s in segs:
        assert s["trace_id"] == prod.trace_id
        assert [c["aws"]["operation"] for c in subs(s)] == ["ListQueues", "DeleteMessage"]


def test_messages_received_by_a_transport_library_are_not_units(tracer, patched, sqs, queue):
    t, emitter = tracer
    current_entity.set(None)
    send(sqs, queue, 2)
    scope = {"__name__": "kombu.transport.SQS", "sqs": sqs, "queue": queue}
    exec("def get():\n    return sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)",
         scope)
    resp = scope["get"]()
    assert type(resp["Messages"]) is list and len(resp["Messages"]) == 2
    for _m in resp["Messages"]:
        assert current_entity.get() is None
    assert emitter.documents == []


def test_a_poll_inside_a_request_is_its_subsegment_and_messages_their_own(
        tracer, patched, sqs, queue):
    t, emitter = tracer
    current_entity.set(None)
    send(sqs, queue, 2)
    with segment(t, "web") as seg:
        for _m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]:
            sqs.list_queues()
        assert current_entity.get() is seg  # the request is current again after the loop
        sqs.list_queues()
    web = [d for d in docs_of(emitter) if d["name"] == "web"]
    assert [c["aws"]["operation"] for c in subs(web[0])] == ["ReceiveMessage", "ListQueues"]
    segs = message_segments(emitter)
    assert len(segs) == 2 and all(len(subs(s)) == 1 for s in segs)


def test_call_mode_worker_polls_unrecorded_calls_between_messages_own_traces(
        patched, sqs, queue):
    t, emitter = install_tracer({"XRAY_CONTEXT_MISSING": "call"})
    current_entity.set(None)
    send(sqs, queue, 1)  # its own small trace
    emitter.documents.clear()
    for _m in sqs.receive_message(QueueUrl=queue)["Messages"]:
        sqs.list_queues()
    sqs.list_queues()  # between messages: its own small trace
    docs = docs_of(emitter)
    assert len(message_segments(emitter)) == 1
    assert len(docs) == 2 and "ReceiveMessage" not in json.dumps(docs)


def test_empty_polls_record_nothing_in_any_context_missing_mode(patched, sqs, queue):
    for mode in ("ignore", "log", "call", "process"):
        t, emitter = install_tracer({"XRAY_CONTEXT_MISSING": mode})
        current_entity.set(None)
        for _ in range(3):
            assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)
        t.shutdown(0)
        assert emitter.documents == [], mode


def test_without_a_trace_header_a_fresh_trace_and_boundaries(tracer, patched, sqs, queue):
    t, emitter = tracer
    current_entity.set(None)
    send(sqs, queue, 3)  # outside any trace: no header stamped
    assert emitter.documents == []
    resp = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
    msgs = resp["Messages"]
    first = msgs[0]  # indexing takes it
    again = msgs[0]  # the same message again: no second segment
    assert first is again
    seg1 = current_entity.get()
    sqs.list_queues()  # recorded in message 1
    for _m in msgs:  # message 1 again (nothing), then 2 and 3
        sqs.list_queues()
    assert current_entity.get() is None
    segs = message_segments(emitter)
    assert len(segs) == 3
    assert len({s["trace_id"] for s in segs}) == 3
    assert "parent_id" not in segs[0]
    assert segs[0]["id"] == seg1.id
    assert [len(subs(s)) for s in segs] == [2, 1, 1]


def test_polling_again_ends_the_message_in_hand(tracer, patched, sqs, queue):
    t, emitter = tracer
    current_entity.set(None)
    send(sqs, queue, 2)
    m = sqs.receive_message(QueueUrl=queue)["Messages"][0]
    assert current_entity.get() is not None
    sqs.list_queues()
    sqs.receive_message(QueueUrl=queue)["Messages"].pop()
    assert m["MessageId"] and current_entity.get() is not None
    sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)  # ends the second
    assert current_entity.get() is None
    segs = message_segments(emitter)
    assert [len(subs(s)) for s in segs] == [1, 0]


def test_thread_pool_each_message_its_segment_until_its_task_ends(tracer, patched, sqs, queue):
    t, emitter = tracer
    current_entity.set(None)
    send(sqs, queue, 6)
    seen = []

    def handle(m):
        seen.append(current_entity.get().segment.id)
        sqs.list_queues()
        if m["Body"].endswith("-3"):
            raise ValueError("cannot handle this one")
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        return m["MessageId"]

    resp = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
    assert len(resp["Messages"]) == 6
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(handle, m) for m in resp["Messages"]]
        results = [f.exception() or f.result() for f in futures]
    assert sum(isinstance(r, ValueError) for r in results) == 1
    segs = message_segments(emitter)
    assert len(segs) == 6 and len(set(seen)) == 6
    faults = [s for s in segs if s.get("fault")]
    assert len(faults) == 1
    assert faults[0]["cause"]["exceptions"][0]["type"] == "ValueError"
    for s in segs:
        ops = [c["aws"]["operation"] for c in subs(s)]
        assert ops == (["ListQueues"] if s.get("fault") else ["ListQueues", "DeleteMessage"])
        assert s["end_time"] >= max(c["end_time"] for c in subs(s))


def test_submit_to_a_shut_down_pool_releases_its_hold(tracer, patched, sqs, queue):
    t, emitter = tracer
    current_entity.set(None)
    send(sqs, queue, 1)
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
    for m in sqs.receive_message(QueueUrl=queue)["Messages"]:
        with pytest.raises(RuntimeError):
            pool.submit(print, m)
    assert len(message_segments(emitter)) == 1  # ended with the loop all the same


def test_pool_map_over_the_messages(tracer, patched, sqs, queue):
    t, emitter = tracer
    current_entity.set(None)
    send(sqs, queue, 4)
    msgs = []
    while len(msgs) < 4:
        resp = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda m: sqs.list_queues(), resp["Messages"]))
        msgs += resp["Messages"]
        assert current_entity.get() is None
    segs = message_segments(emitter)
    assert len(segs) == 4
    assert all(len(subs(s)) == 1 for s in segs)


def test_an_exception_in_a_synchronous_loop_ends_the_segment(tracer, patched, sqs, queue):
    t, emitter = tracer
    current_entity.set(None)
    send(sqs, queue, 1)
    with pytest.raises(KeyError):
        for _m in sqs.receive_message(QueueUrl=queue)["Messages"]:
            sqs.list_queues()
            raise KeyError("boom")
    assert current_entity.get() is None
    [s] = message_segments(emitter)
    assert len(subs(s)) == 1


def test_unsampled_header_records_nothing_but_propagates(tracer, patched, sqs, queue):
    t, emitter = tracer
    current_entity.set(None)
    hdr = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
    sqs.send_message(QueueUrl=queue, MessageBody=BODY, MessageSystemAttributes={
        "AWSTraceHeader": {"DataType": "String", "StringValue": hdr}})
    for _m in sqs.receive_message(QueueUrl=queue)["Messages"]:
        assert t.outgoing_header().startswith("Root=1-5759e988-bd862e3fe1be46a994272793;")
        assert t.outgoing_header().endswith("Sampled=0")
        sqs.list_queues()
    assert emitter.documents == []
    assert current_entity.get() is None


@pytest.mark.parametrize("decision, recorded", [("", False), (";Sampled=?", False),
                                                ("Sampled=1", True)])
def test_without_a_decision_the_rules_sample(patched, sqs, queue, decision, recorded):
    t, emitter = install_tracer(
        {"XRAY_SAMPLING_RULES": '{"version": 2, "default": {"fixed_target": 0, "rate": 0}}'})
    current_entity.set(None)
    hdr = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8"
    hdr += (";" + decision) if decision and not decision.startswith(";") else decision
    sqs.send_message(QueueUrl=queue, MessageBody=BODY, MessageSystemAttributes={
        "AWSTraceHeader": {"DataType": "String", "StringValue": hdr}})
    for _m in sqs.receive_message(QueueUrl=queue)["Messages"]:
        sqs.list_queues()
    assert len(message_segments(emitter)) == (1 if recorded else 0)


def test_invalid_header_starts_a_fresh_trace(tracer, patched, sqs, queue):
    t, emitter = tracer
    current_entity.set(None)
    sqs.send_message(QueueUrl=queue, MessageBody=BODY, MessageSystemAttributes={
        "AWSTraceHeader": {"DataType": "String", "StringValue": "Root=garbage"}})
    for _m in sqs.receive_message(QueueUrl=queue)["Messages"]:
        pass
    [s] = message_segments(emitter)
    assert "parent_id" not in s and s["trace_id"].startswith("1-")


@pytest.mark.parametrize("target", ["header.parse", "_work.begin", "_record", "_with_trace"])
def test_broken_instrumentation_leaves_calls_unchanged(patched, sqs, queue, monkeypatch, target):
    from xray_autoinst.contrib import aws_sqs

    install_tracer({"XRAY_AUTOINST_RAISE": "0"})
    current_entity.set(None)

    def broken(*a, **kw):
        raise RuntimeError("instrumentation bug")

    owner, _, name = target.rpartition(".")
    where = {"": aws_sqs, "header": aws_sqs._header, "_work": aws_sqs._work}[owner]
    monkeypatch.setattr(where, name, broken)
    t, _ = install_tracer({"XRAY_AUTOINST_RAISE": "0"})
    with segment(t, "producer"):
        sqs.send_message(QueueUrl=queue, MessageBody=BODY)
    current_entity.set(None)
    resp = sqs.receive_message(QueueUrl=queue)
    bodies = [m["Body"] for m in resp["Messages"]]
    assert bodies == [BODY]
    assert "Attributes" not in resp["Messages"][0]
    monkeypatch.undo()


# -- a message taken during a request and let lie ends with the request -------------------------
UNSAMPLED = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"


def send_traced(t, sqs, queue):
    """One message whose AWSTraceHeader says sampled: its segment is recorded."""
    with segment(t, "producer") as prod:
        sqs.send_message(QueueUrl=queue, MessageBody=BODY)
    return prod


def wsgi_call(app, trace_header=None):
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/take", "QUERY_STRING": "",
               "SERVER_NAME": "localhost", "SERVER_PORT": "80", "HTTP_HOST": "web.test",
               "wsgi.url_scheme": "http"}
    if trace_header:
        environ["HTTP_X_AMZN_TRACE_ID"] = trace_header
    result = app(environ, lambda status, headers, exc_info=None: None)
    try:
        return b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()


def asgi_call(app, trace_header=None):
    headers = [(b"host", b"web.test")]
    if trace_header:
        headers.append((b"x-amzn-trace-id", trace_header.encode()))
    scope = {"type": "http", "method": "GET", "path": "/take", "scheme": "http",
             "query_string": b"", "headers": headers}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    asyncio.run(app(scope, receive, send))


def lying_wsgi_app(sqs, queue, seen):
    """Takes one message by indexing, calls AWS while handling it, never deletes it."""
    def app(environ, start_response):
        msg = sqs.receive_message(QueueUrl=queue)["Messages"][0]
        seen.append(current_entity.get())  # the message's segment while it is handled
        sqs.list_queues()
        start_response("200 OK", [("Content-Length", "2")])
        assert msg["Body"] == BODY
        return [b"ok"]

    return app


def lying_asgi_app(sqs, queue, seen, after=False):
    async def app(scope, receive, send):
        if not after:
            msg = sqs.receive_message(QueueUrl=queue)["Messages"][0]
            seen.append(current_entity.get())
            sqs.list_queues()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        if after:  # work after the response: the request's segment has ended already
            msg = sqs.receive_message(QueueUrl=queue)["Messages"][0]
            seen.append(current_entity.get())
            sqs.list_queues()
        assert msg["Body"] == BODY

    return app


def the_message_ended_with_the_request(emitter, prod, seen):
    [msg] = message_segments(emitter)
    assert msg["id"] == seen[0].id and msg["trace_id"] == prod.trace_id
    assert [c["aws"]["operation"] for c in subs(msg)] == ["ListQueues"]
    assert not _work.units and not _work.taken and not tracer_mod.ending
    assert current_entity.get() is None
    return msg


@pytest.mark.parametrize("request_header", [None, UNSAMPLED], ids=["sampled", "unsampled"])
def test_wsgi_request_that_lets_a_message_lie_ends_it_as_it_ends(
        tracer, patched, sqs, queue, request_header):
    t, emitter = tracer
    prod = send_traced(t, sqs, queue)
    emitter.documents.clear()
    seen = []
    app = XRayMiddleware(lying_wsgi_app(sqs, queue, seen), name="web")
    assert wsgi_call(app, request_header) == b"ok"
    msg = the_message_ended_with_the_request(emitter, prod, seen)
    web = [d for d in docs_of(emitter) if d["name"] == "web"]
    if request_header is None:  # the poll is the request's; the message ended before it
        [web] = web
        assert [c["aws"]["operation"] for c in subs(web)] == ["ReceiveMessage"]
        assert web["start_time"] <= msg["start_time"] <= msg["end_time"] <= web["end_time"]
    else:
        assert web == []


@pytest.mark.parametrize("request_header", [None, UNSAMPLED], ids=["sampled", "unsampled"])
def test_asgi_request_that_lets_a_message_lie_ends_it_as_it_ends(
        tracer, patched, sqs, queue, request_header):
    t, emitter = tracer
    prod = send_traced(t, sqs, queue)
    emitter.documents.clear()
    seen = []
    asgi_call(AsgiMiddleware(lying_asgi_app(sqs, queue, seen), name="web"), request_header)
    the_message_ended_with_the_request(emitter, prod, seen)
    assert len([d for d in docs_of(emitter) if d["name"] == "web"]) == (
        1 if request_header is None else 0)


def test_asgi_message_taken_after_the_response_ends_when_the_application_returns(
        tracer, patched, sqs, queue):
    t, emitter = tracer
    prod = send_traced(t, sqs, queue)
    emitter.documents.clear()
    seen = []
    asgi_call(AsgiMiddleware(lying_asgi_app(sqs, queue, seen, after=True), name="web"))
    the_message_ended_with_the_request(emitter, prod, seen)


def test_a_thread_pool_task_keeps_the_message_open_after_the_request(
        tracer, patched, sqs, queue):
    t, emitter = tracer
    prod = send_traced(t, sqs, queue)
    emitter.documents.clear()
    seen = []
    go = threading.Event()
    pool = ThreadPoolExecutor(1)

    def task(msg):
        assert go.wait(10)
        sqs.list_queues()

    def app(environ, start_response):
        msg = sqs.receive_message(QueueUrl=queue)["Messages"][0]
        seen.append(current_entity.get())
        futures.append(pool.submit(task, msg))
        start_response("200 OK", [])
        return [b"ok"]

    futures = []
    try:
        wsgi_call(XRayMiddleware(app, name="web"))
        assert message_segments(emitter) == []  # the task holds it open
        assert list(_work.units) == [seen[0]] and not _work.taken and not tracer_mod.ending
        go.set()
        futures[0].result(10)
    finally:
        go.set()
        pool.shutdown()
    [msg] = message_segments(emitter)
    assert msg["id"] == seen[0].id and msg["trace_id"] == prod.trace_id
    assert [c["aws"]["operation"] for c in subs(msg)] == ["ListQueues"]
    assert not _work.units


def test_a_request_that_deletes_its_message_leaves_nothing_waiting(tracer, patched, sqs, queue):
    t, emitter = tracer
    send_traced(t, sqs, queue)
    emitter.documents.clear()

    def app(environ, start_response):
        for m in sqs.receive_message(QueueUrl=queue)["Messages"]:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
            assert not _work.taken and not tracer_mod.ending  # let go at the delete
        start_response("200 OK", [])
        return [b"ok"]

    wsgi_call(XRayMiddleware(app, name="web"))
    [msg] = message_segments(emitter)
    assert [c["aws"]["operation"] for c in subs(msg)] == ["DeleteMessage"]


@pytest.mark.parametrize("sampled", ["1", "0"])
def test_a_lambda_invocation_that_lets_a_message_lie_ends_it_before_its_result(
        tracer, patched, sqs, queue, sampled):
    t, emitter = tracer
    prod = send_traced(t, sqs, queue)
    emitter.documents.clear()
    hdr = header.parse(f"Root={prod.trace_id};Parent=53995c3f42cd8ad8;Sampled={sampled}")
    facade, token = t.begin_facade(hdr, "fn")
    sqs.receive_message(QueueUrl=queue)["Messages"].pop()
    seen = [current_entity.get()]
    sqs.list_queues()
    t.end_facade(facade, token)
    the_message_ended_with_the_request(emitter, prod, seen)


def test_a_forked_child_does_not_inherit_open_messages(tracer, patched, sqs, queue):
    t, emitter = tracer
    send_traced(t, sqs, queue)
    emitter.documents.clear()
    with segment(t, "web"):
        sqs.receive_message(QueueUrl=queue)["Messages"].pop()
        assert _work.units and _work.taken and tracer_mod.ending
        pid = os.fork()
        if pid == 0:  # the child: the parent's message is the parent's to end and send
            os._exit(0 if not (_work.units or _work.taken or tracer_mod.ending) else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(message_segments(emitter)) == 1 and not _work.units
