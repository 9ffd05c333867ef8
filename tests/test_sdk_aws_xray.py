"""The aws-xray-sdk bridge, in-process: the SDK's recorder (``xray_recorder``) records into the
agent's current entity; every document goes through the agent's emitter (here an in-process
collector) and is schema-valid."""

import asyncio
import math
import sqlite3
import threading

import pytest
from xray_testing import install_tracer, need, validate

need("aws_xray_sdk")

from aws_xray_sdk.core import AWSXRayRecorder, xray_recorder  # noqa: E402

from xray_autoinst.contrib import sdk_aws_xray  # noqa: E402
from xray_autoinst.core import header  # noqa: E402
from xray_autoinst.core.tracer import current_entity  # noqa: E402

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"
NONE_SAMPLED = '{"version": 2, "default": {"fixed_target": 0, "rate": 0.0}}'


@pytest.fixture
def bridge():
    """(tracer, emitter): 100% sampling, the bridge patched, undone afterwards."""
    t, emitter = install_tracer()
    token = current_entity.set(None)
    sdk_aws_xray.patch()
    yield t, emitter
    sdk_aws_xray.unpatch()
    current_entity.reset(token)


def request(t, hdr=None):
    """Open the agent's segment of a request, as its WSGI middleware does."""
    return t.begin_segment("svc", header.parse(hdr) if hdr else None, "h", "GET", "/")


def docs(emitter):
    for d in emitter.documents:
        validate(d)
    return emitter.documents


def by_name(entity, name):
    found = []
    for sub in entity.get("subsegments", ()):
        if sub["name"] == name:
            found.append(sub)
        found += by_name(sub, name)
    return found


def test_capture_in_subsegment_annotations_metadata_nest_under_the_request(bridge):
    t, emitter = bridge

    @xray_recorder.capture("work")
    def work(n):
        xray_recorder.put_annotation("n", n)
        return n * 2

    seg, token = request(t)
    xray_recorder.put_annotation("on_segment", True)
    with xray_recorder.in_subsegment("block") as s:
        s.put_annotation("order_id", 42)
        xray_recorder.put_metadata("payload", {"items": [1, 2]}, "app")
        assert work(21) == 42
    t.end_segment(seg, token)

    [doc] = docs(emitter)
    assert doc["id"] == seg.id and doc["annotations"] == {"on_segment": True}
    [block] = doc["subsegments"]
    assert block["name"] == "block"
    assert block["annotations"] == {"order_id": 42}
    assert block["metadata"] == {"app": {"payload": {"items": [1, 2]}}}
    [w] = block["subsegments"]
    assert w["name"] == "work" and w["annotations"] == {"n": 21}
    assert "namespace" not in w  # the SDK's "local"


def test_begin_segment_inside_a_request_returns_that_segment(bridge):
    t, emitter = bridge
    seg, token = request(t, f"Root={ROOT};Parent={PARENT};Sampled=1")
    sdk_seg = xray_recorder.begin_segment("sdk-name", traceid="1-00000000-000000000000000000000000",
                                          sampling=1)
    assert sdk_seg.id == seg.id and sdk_seg.trace_id == ROOT and sdk_seg.parent_id == PARENT
    assert xray_recorder.current_segment() == sdk_seg
    with xray_recorder.in_subsegment("inner"):
        pass
    xray_recorder.end_segment()  # not the SDK's to end
    assert current_entity.get() is seg
    t.end_segment(seg, token)
    [doc] = docs(emitter)
    assert doc["name"] == "svc" and [s["name"] for s in doc["subsegments"]] == ["inner"]


def test_exception_in_capture_is_recorded_and_propagates_unchanged(bridge):
    t, emitter = bridge
    boom = ValueError("bad input")

    @xray_recorder.capture()
    def fails():
        raise boom

    seg, token = request(t)
    with pytest.raises(ValueError) as info:
        fails()
    assert info.value is boom
    assert current_entity.get() is seg
    t.end_segment(seg, token)
    [doc] = docs(emitter)
    [sub] = doc["subsegments"]
    assert sub["name"] == "fails" and sub["fault"] is True
    assert sub["cause"]["exceptions"][0]["type"] == "ValueError"


def test_sdk_segment_outside_a_request_is_one_agent_segment(bridge):
    t, emitter = bridge
    with xray_recorder.in_segment("batch-job") as seg:
        seg.put_annotation("job", "nightly")
        seg.set_user("alice")
        with xray_recorder.in_segment("nested") as same:  # joins, as one segment
            assert same is seg
            with xray_recorder.in_subsegment("step") as step:
                step.put_http_meta("url", "https://user:pw@example.com/x?token=s3cret&a=1")
                step.put_http_meta("method", "GET")
                step.put_http_meta("status", 503)
        assert xray_recorder.current_segment() is seg
    assert current_entity.get() is None
    [doc] = docs(emitter)
    assert doc["name"] == "batch-job" and doc["user"] == "alice"
    assert doc["annotations"] == {"job": "nightly"}
    [step] = doc["subsegments"]
    assert step["http"]["request"]["url"] == "https://example.com/x?token=REDACTED&a=1"
    assert step["http"]["response"]["status"] == 503 and step["fault"] is True


def test_sdk_segment_continues_the_given_trace(bridge):
    t, emitter = bridge
    xray_recorder.begin_segment("consumer", traceid=ROOT, parent_id=PARENT, sampling=1)
    xray_recorder.end_segment()
    [doc] = docs(emitter)
    assert doc["trace_id"] == ROOT and doc["parent_id"] == PARENT


def test_malformed_sdk_trace_id_starts_a_fresh_trace(bridge):
    t, emitter = bridge
    xray_recorder.begin_segment("consumer", traceid="garbage;Root=x", parent_id="zz")
    xray_recorder.end_segment()
    [doc] = docs(emitter)
    assert doc["trace_id"] != "garbage;Root=x" and "parent_id" not in doc


def test_unsampled_request_gives_dummies_that_work_and_record_nothing(bridge):
    t, emitter = bridge
    seg, token = request(t, f"Root={ROOT};Parent={PARENT};Sampled=0")

    @xray_recorder.capture("tpl")
    def render():
        xray_recorder.current_subsegment().name = "index.html"  # what the Flask ext does
        return "ok"

    with xray_recorder.in_subsegment("block") as s:
        assert s is not None and s.sampled is False and s.trace_id == ROOT
        s.put_annotation("k", 1)
        s.put_metadata("k", 1)
        s.add_exception(RuntimeError("x"), [])
        s.set_sql({"url": "x"})
        assert render() == "ok"
        # downstream calls still carry the trace, unsampled
        assert t.outgoing_header() == f"Root={ROOT};Parent={seg.id};Sampled=0"
    assert current_entity.get() is seg
    assert xray_recorder.is_sampled() is False
    t.end_segment(seg, token)
    assert emitter.documents == []


def test_outside_any_trace_as_the_sdk_none_and_the_function_still_runs(bridge):
    t, emitter = bridge

    @xray_recorder.capture("work")
    def work():
        return "done"

    assert work() == "done"
    with xray_recorder.in_subsegment("x") as s:
        assert s is None
    assert xray_recorder.current_segment() is None
    assert xray_recorder.get_trace_entity() is None
    xray_recorder.put_annotation("k", 1)
    xray_recorder.end_subsegment()
    xray_recorder.end_segment()
    assert emitter.documents == []


def test_subsegment_without_sampling_silences_what_runs_inside(bridge):
    t, emitter = bridge
    seg, token = request(t)
    with xray_recorder.in_subsegment("outer") as outer:
        dummy = xray_recorder.begin_subsegment_without_sampling("quiet")
        assert dummy.sampled is False
        assert t.begin_subsegment("db", "remote") is None  # the agent's integrations too
        xray_recorder.end_subsegment()
        assert xray_recorder.current_subsegment() == outer
    t.end_segment(seg, token)
    [doc] = docs(emitter)
    assert [s["name"] for s in doc["subsegments"]] == ["outer"]
    assert "subsegments" not in doc["subsegments"][0]


@pytest.mark.parametrize("key,value", [
    ("bad-key", 1), ("", 1), ("k" * 501, 1), ("ok", [1]), ("ok", {"a": 1}), ("ok", None),
    ("ok", math.nan), ("ok", math.inf), (3, "x"),
])
def test_invalid_annotations_are_dropped(bridge, key, value):
    t, emitter = bridge
    seg, token = request(t)
    xray_recorder.put_annotation(key, value)
    with xray_recorder.in_subsegment("s") as s:
        s.put_annotation(key, value)
    t.end_segment(seg, token)
    [doc] = docs(emitter)
    assert "annotations" not in doc and "annotations" not in doc["subsegments"][0]


def test_annotation_values_are_clipped_and_metadata_kept_schema_valid(bridge):
    t, emitter = bridge
    seg, token = request(t)
    xray_recorder.put_annotation("long", "x" * 5000)
    xray_recorder.put_metadata("odd", {(1, 2): object()}, "app")
    xray_recorder.put_metadata("secret", 1, "AWS.reserved")
    xray_recorder.put_metadata(7, "int key")
    t.end_segment(seg, token)
    [doc] = docs(emitter)
    assert len(doc["annotations"]["long"]) == 1000
    assert set(doc["metadata"]) == {"app", "default"}
    assert doc["metadata"]["default"] == {"7": "int key"}


def test_entity_methods_apps_use(bridge):
    t, emitter = bridge
    seg, token = request(t)
    sdk_seg = xray_recorder.current_segment()
    assert not hasattr(sdk_seg, "type")  # as on the SDK's Segment
    sdk_seg.put_http_meta("url", "http://other/overwrite")  # the agent's request fields stay
    sdk_seg.apply_status_code(429)
    sdk_seg.some_future_method(1, k=2)  # unknown: a no-op, never an exception
    with xray_recorder.in_subsegment("dynamodb", namespace="aws") as sub:
        assert sub.type == "subsegment" and sub.parent_segment == sdk_seg
        assert sub.parent_id == seg.id and sub.in_progress
        sub.set_aws({"operation": "GetItem", "table_name": "orders"})
        sub.add_throttle_flag()
        sub.put_http_meta("content_length", "12")
        sub.put_http_meta("bogus", 1)
        sub.put_http_meta("status", "not a number")
    with xray_recorder.in_subsegment("db") as sub:
        sub.namespace = "remote"
        sub.set_sql({"url": "postgresql://u:pw@db:5432/app", "user": "u",
                     "sanitized_query": "SELECT * FROM t WHERE name = 'bob' AND id = 7",
                     "database_type": "postgresql", "database_version": 16})
    seg.http = {"request": {"url": "http://h/", "method": "GET"}}
    t.end_segment(seg, token)
    [doc] = docs(emitter)
    assert doc["http"]["request"]["url"] == "http://h/"
    assert doc["error"] and doc["throttle"]
    aws, db = doc["subsegments"]
    assert aws["namespace"] == "aws" and aws["throttle"] is True
    assert aws["aws"] == {"operation": "GetItem", "table_name": "orders"}
    assert aws["http"] == {"response": {"content_length": 12}}
    assert db["namespace"] == "remote"
    assert db["sql"] == {"url": "postgresql://db:5432/app", "user": "u",
                         "sanitized_query": "SELECT * FROM t WHERE name = ? AND id = ?",
                         "database_type": "postgresql", "database_version": "16"}


def test_sql_query_text_dropped_when_queries_are_off():
    t, emitter = install_tracer({"XRAY_SQL_QUERIES": "off"})
    token = current_entity.set(None)
    sdk_aws_xray.patch()
    try:
        seg, tok = request(t)
        with xray_recorder.in_subsegment("db") as sub:
            sub.set_sql({"sanitized_query": "SELECT 1", "database_type": "sqlite3"})
        t.end_segment(seg, tok)
        [doc] = docs(emitter)
        assert doc["subsegments"][0]["sql"] == {"database_type": "sqlite3"}
    finally:
        sdk_aws_xray.unpatch()
        current_entity.reset(token)


def test_trace_entity_handed_to_a_thread_by_hand(bridge):
    t, emitter = bridge
    seg, token = request(t)
    entity = xray_recorder.get_trace_entity()

    def worker():
        xray_recorder.set_trace_entity(entity)
        with xray_recorder.in_subsegment("in-thread") as s:
            s.put_annotation("thread", True)
        xray_recorder.clear_trace_entities()

    th = threading.Thread(target=worker)
    th.start()
    th.join()
    t.end_segment(seg, token)
    [doc] = docs(emitter)
    assert [s["name"] for s in doc["subsegments"]] == ["in-thread"]


def test_async_recorder_capture_async_and_in_subsegment_async(bridge):
    t, emitter = bridge

    @xray_recorder.capture_async("fetch")
    async def fetch(n):
        await asyncio.sleep(0)
        return n

    async def handler():
        seg, token = request(t)
        async with xray_recorder.in_subsegment_async("gather") as s:
            s.put_annotation("tasks", 2)
            assert await asyncio.gather(fetch(1), fetch(2)) == [1, 2]
        t.end_segment(seg, token)

    asyncio.run(handler())
    [doc] = docs(emitter)
    [gather] = doc["subsegments"]
    assert gather["annotations"] == {"tasks": 2}
    assert [s["name"] for s in gather["subsegments"]] == ["fetch", "fetch"]


def test_the_sdk_sends_nothing_and_starts_no_poller(bridge):
    t, emitter = bridge
    sent = []

    class AppEmitter:
        def send_entity(self, entity):
            sent.append(entity)

        def set_daemon_address(self, address):
            pass

    for rec in (xray_recorder, AWSXRayRecorder()):  # made before and after patch()
        assert type(rec.emitter).__name__ == "BridgeEmitter"
        assert type(rec.sampler).__name__ == "BridgeSampler"
        sdk_sampler, sdk_emitter = rec.__dict__[sdk_aws_xray._SAVED]
        sdk_emitter.send_entity = sent.append
        sdk_sampler.start = lambda: sent.append("poller started")
        rec.configure(sampling_rules={"version": 2, "default": {"fixed_target": 1, "rate": 1}},
                      daemon_address="127.0.0.1:9", emitter=AppEmitter())
        assert type(rec.emitter).__name__ == "BridgeEmitter"
        assert rec.sampler.should_trace({"host": "h", "method": "GET", "path": "/"}) is True
        rec.begin_segment("own")
        with rec.in_subsegment("s"):
            pass
        rec.end_segment()
        del sdk_emitter.send_entity, sdk_sampler.start
        rec.__dict__[sdk_aws_xray._SAVED] = (sdk_sampler, sdk_emitter)
    assert sent == []
    pollers = [th for th in threading.enumerate() if type(
        getattr(getattr(th, "_target", None), "__self__", None)).__module__.startswith(
        "aws_xray_sdk")]
    assert pollers == []
    assert [d["name"] for d in docs(emitter)] == ["own", "own"]
    assert all(d["aws"]["xray"]["sdk"] == "xray-autoinst" for d in emitter.documents)


def test_sampler_decides_once_for_an_sdk_middleware_segment():
    """An SDK middleware asks the sampler, then begins a segment with the answer: one decision
    (the reservoir is not consumed twice, the answer is not re-drawn)."""
    t, emitter = install_tracer({"XRAY_TRUST_TRACE_HEADER": "false"})
    token = current_entity.set(None)
    sdk_aws_xray.patch()
    calls = []
    real = t.sampler

    class Counting:
        def sample(self, host, method, path):
            calls.append((host, method, path))
            return len(calls) == 1  # yes the first time only

    t.sampler = Counting()
    try:
        from aws_xray_sdk.ext.util import calculate_sampling_decision, construct_xray_header

        hdr = construct_xray_header({"X-Amzn-Trace-Id": f"Root={ROOT}"})
        decision = calculate_sampling_decision(
            hdr, xray_recorder, {"host": "h", "method": "GET", "path": "/p", "service": "s"})
        xray_recorder.begin_segment("s", traceid=hdr.root, parent_id=hdr.parent,
                                    sampling=decision)
        xray_recorder.end_segment()
        assert calls == [("h", "GET", "/p")]
        [doc] = docs(emitter)
        assert doc["trace_id"] == ROOT
        # an upstream Sampled=1 is a header decision: not trusted here, decided locally
        hdr = construct_xray_header({"X-Amzn-Trace-Id": f"Root={ROOT};Sampled=1"})
        decision = calculate_sampling_decision(hdr, xray_recorder, {})
        xray_recorder.begin_segment("s", traceid=hdr.root, sampling=decision)
        assert xray_recorder.is_sampled() is False
        xray_recorder.end_segment()
        assert len(calls) == 2 and len(emitter.documents) == 1
    finally:
        t.sampler = real
        sdk_aws_xray.unpatch()
        current_entity.reset(token)


def test_unsampled_sdk_segment_outside_a_request():
    t, emitter = install_tracer({"XRAY_SAMPLING_RULES": NONE_SAMPLED})
    token = current_entity.set(None)
    sdk_aws_xray.patch()
    try:
        with xray_recorder.in_segment("job") as seg:
            assert seg.sampled is False
            with xray_recorder.in_subsegment("step") as s:
                s.put_annotation("k", 1)
                assert t.outgoing_header() == f"Root={seg.trace_id};Parent={seg.id};Sampled=0"
        assert current_entity.get() is None and emitter.documents == []
    finally:
        sdk_aws_xray.unpatch()
        current_entity.reset(token)


def test_patch_skips_libraries_the_agent_traces(bridge):
    from aws_xray_sdk.core import patch, patcher

    patch(("sqlite3",))
    assert "sqlite3" not in patcher._PATCHED_MODULES
    assert type(sqlite3.connect).__module__ != "wrapt.wrappers"
    assert not hasattr(sqlite3.connect, "__wrapped__")


@pytest.mark.parametrize("module,integration", [
    ("sqlite3", "sqlite3"), ("psycopg2", "psycopg2"), ("psycopg", "psycopg"),
    ("botocore", "botocore"), ("httplib", "httplib"), ("requests", "httplib"),
    ("aiobotocore", "aiobotocore"), ("pynamodb", None), ("httpx", "httpx"), ("pymongo", None),
    ("pymysql", "pymysql"), ("pg8000", None), ("mysql", None), ("sqlalchemy_core", None),
])
def test_covered_by_agent(bridge, module, integration):
    assert sdk_aws_xray.covered_by_agent(module) == integration


def test_covered_by_agent_not_when_the_integration_is_disabled():
    install_tracer({"XRAY_DISABLED_INSTRUMENTATIONS": "sqlite3,httplib"})
    assert sdk_aws_xray.covered_by_agent("sqlite3") is None
    assert sdk_aws_xray.covered_by_agent("requests") is None
    assert sdk_aws_xray.covered_by_agent("psycopg2") == "psycopg2"


def test_covered_by_agent_asks_the_bootstrap_for_each_status(monkeypatch):
    """A failed or disabled integration does not cover the SDK's patch; a waiting (hooks
    registered, library not imported yet) or patched one does."""
    from xray_autoinst import bootstrap
    from xray_autoinst.bootstrap import DISABLED, PATCHED, WAITING, IntegrationStatus

    install_tracer()
    monkeypatch.setattr(bootstrap, "status", {
        "sqlite3": IntegrationStatus("failed", "RuntimeError: boom"), "httplib": DISABLED,
        "psycopg2": PATCHED})
    monkeypatch.setattr(bootstrap, "_waiting", {"sqlite3", "botocore", "psycopg2"})
    assert bootstrap.integration_status("botocore") is WAITING
    assert sdk_aws_xray.covered_by_agent("sqlite3") is None
    assert sdk_aws_xray.covered_by_agent("requests") is None
    assert sdk_aws_xray.covered_by_agent("psycopg2") == "psycopg2"
    assert sdk_aws_xray.covered_by_agent("botocore") == "botocore"
    assert sdk_aws_xray.covered_by_agent("pymysql") == "pymysql"  # not started: counts


def test_ownership_one_record_per_segment_the_sdk_opened():
    from xray_autoinst.contrib.sdk_aws_xray.ownership import Ownership

    t, emitter = install_tracer()
    token = current_entity.set(None)
    try:
        own = Ownership()
        seg, seg_token = t.begin_segment("sdk", None, sampled=True)
        facade = object()
        rec = own.open(seg, seg_token, facade)
        assert own.of(seg) is rec and rec.facade is facade and len(own) == 1
        other, other_token = t.begin_segment("other", None, sampled=True)
        assert own.of(other) is None  # never opened through the SDK
        t.end_segment(other, other_token)
        own.join(rec)  # a nested begin_segment
        own.end(rec)
        assert own.of(seg) is rec and seg.end_time is None  # the outer one still holds it
        own.end(rec)
        assert own.of(seg) is None and seg.end_time is not None and len(own) == 0
        own.end(rec)  # ending again does nothing
        seg2, token2 = t.begin_segment("sdk2", None, sampled=True)
        rec2 = own.open(seg2, token2, None)
        own.join(rec2)
        own.end(rec2, force=True)  # the facade's close(): at once
        assert own.of(seg2) is None and seg2.end_time is not None
        own.open(seg2, None, None)
        own.clear()  # after fork
        assert len(own) == 0
    finally:
        current_entity.reset(token)


def test_sdk_disabled_by_the_application_runs_the_sdk_itself(bridge):
    from aws_xray_sdk import global_sdk_config

    t, emitter = bridge
    seg, token = request(t)
    global_sdk_config.set_sdk_enabled(False)
    try:
        with xray_recorder.in_subsegment("x") as s:
            assert type(s).__name__ == "DummySubsegment"
    finally:
        global_sdk_config.set_sdk_enabled(True)
    t.end_segment(seg, token)
    [doc] = docs(emitter)
    assert "subsegments" not in doc


def test_unpatch_restores_the_sdk(bridge):
    t, emitter = bridge
    xray_recorder.is_sampled()  # adopted
    saved_sampler, saved_emitter = xray_recorder.__dict__[sdk_aws_xray._SAVED]
    sdk_aws_xray.unpatch()
    assert xray_recorder.sampler is saved_sampler
    assert xray_recorder.emitter is saved_emitter
    assert type(saved_emitter).__name__ == "UDPEmitter"
    assert AWSXRayRecorder.begin_segment.__module__ == "aws_xray_sdk.core.recorder"
    sdk_aws_xray.patch()


def test_flask_with_the_sdk_middleware_one_segment_one_response_header(bridge):
    flask = need("flask")
    from aws_xray_sdk.ext.flask.middleware import XRayMiddleware as SdkMiddleware

    from xray_autoinst.wsgi import XRayMiddleware

    t, emitter = bridge
    app = flask.Flask("sdkapp")
    SdkMiddleware(app, xray_recorder)

    @app.route("/order/<int:n>")
    def order(n):
        with xray_recorder.in_subsegment("block") as s:
            s.put_annotation("order_id", n)
        return "ok"

    app.wsgi_app = XRayMiddleware(app.wsgi_app)
    client = app.test_client()
    for hdr in (None, f"Root={ROOT};Sampled=?"):
        resp = client.get("/order/7?token=abc", headers={"X-Amzn-Trace-Id": hdr} if hdr else {})
        assert resp.status_code == 200 and resp.text == "ok"
        values = resp.headers.getlist("X-Amzn-Trace-Id")
        assert len(values) == 1, values
        resp.close()
    assert values == [f"Root={ROOT};Sampled=1"]
    found = docs(emitter)
    assert len(found) == 2
    for doc in found:
        assert doc["http"]["request"]["url"] == "http://localhost/order/7?token=REDACTED"
        assert doc["http"]["response"]["status"] == 200
        [block] = doc["subsegments"]
        assert block["annotations"] == {"order_id": 7}


def test_flask_sdk_middleware_alone_opens_the_agent_segment(bridge):
    """Under a server the agent does not wrap, the SDK's middleware opens the segment."""
    flask = need("flask")
    from aws_xray_sdk.ext.flask.middleware import XRayMiddleware as SdkMiddleware

    t, emitter = bridge
    xray_recorder.configure(service="orders")
    app = flask.Flask("sdkapp")
    SdkMiddleware(app, xray_recorder)

    @app.route("/boom")
    def boom():
        raise RuntimeError("view failed")

    @app.route("/ok")
    def ok():
        return "fine"

    client = app.test_client()
    assert client.get("/ok?password=pw", headers={"X-Amzn-Trace-Id": f"Root={ROOT};Parent="
                                                  f"{PARENT};Sampled=1"}).status_code == 200
    assert client.get("/boom").status_code == 500
    ok_doc, boom_doc = docs(emitter)
    assert ok_doc["name"] == "orders" and ok_doc["trace_id"] == ROOT
    assert ok_doc["parent_id"] == PARENT
    assert ok_doc["http"]["request"]["method"] == "GET"
    assert ok_doc["http"]["response"]["status"] == 200
    assert boom_doc["fault"] is True and boom_doc["http"]["response"]["status"] == 500
    assert boom_doc["cause"]["exceptions"][0]["type"] == "RuntimeError"
    assert current_entity.get() is None


def test_query_inside_an_sdk_sql_subsegment_is_recorded_once(bridge):
    """The SDK's own database wrappers (Django's ``patch_db``, ``ext.dbapi2``) name the
    subsegment and set its sql before the driver runs; the agent's driver integration then
    records nothing more: one subsegment per query, its text sanitized."""
    from aws_xray_sdk.ext.dbapi2 import XRayTracedConn

    from xray_autoinst.contrib import db_sqlite3

    t, emitter = bridge
    db_sqlite3.patch()
    try:
        seg, token = request(t)
        query = "SELECT 'secret', 42"
        conn = XRayTracedConn(sqlite3.connect(":memory:"),
                              {"name": "app.db", "sanitized_query": query})  # as Django's
        cur = conn.cursor()
        assert cur.execute(query).fetchall() == [("secret", 42)]
        conn.close()
        t.end_segment(seg, token)
    finally:
        db_sqlite3.unpatch()
    [doc] = docs(emitter)
    [sub] = doc["subsegments"]
    assert "subsegments" not in sub
    assert sub["name"] == "app.db" and sub["namespace"] == "remote"
    assert sub["sql"]["database_type"] == "sqlite3"
    assert sub["sql"]["sanitized_query"] == "SELECT ?, ?"
