"""An exception is recorded once: the subsegment of the downstream call that raised it records
it (``remote: true``), and each entity above it that records the same exception -- the web
middleware's segment, a subsegment of the application's own -- has that record's id as its
``cause`` (X-Ray's reference to an exception recorded in a child). Recorded stacks hold the
application's frames, never the agent's."""

import gc
import sqlite3

import boto3
import botocore.exceptions
import pytest
from test_asgi import run, scope
from test_http_servers import FakeAWS
from test_wsgi import call
from xray_testing import segment, subs, validate

from xray_autoinst.contrib import (
    _calls,
    aws_botocore,
    db_sqlite3,
    http_client,
    http_urllib3,
    web_asgi,
)
from xray_autoinst.core import entities
from xray_autoinst.wsgi import XRayMiddleware

CREDS = {"region_name": "us-east-1", "aws_access_key_id": "testing",
         "aws_secret_access_key": "testing"}


def _raised(exc):
    try:
        raise exc
    except Exception as caught:  # noqa: BLE001
        return caught


# -- on the entities themselves ----------------------------------------------------------------
def test_the_segment_refers_to_the_exception_its_subsegment_recorded(tracer):
    t, emitter = tracer
    boom = _raised(ValueError("boom"))
    with segment(t) as seg:
        sub = t.begin_subsegment("db", "remote")
        sub.add_exception(boom, remote=True)
        t.end_subsegment(sub)
        seg.add_exception(boom)
    [doc] = emitter.documents
    validate(doc)
    [child] = subs(doc)
    [record] = child["cause"]["exceptions"]
    assert record["remote"] is True and record["type"] == "ValueError"
    assert doc["cause"] == record["id"] and doc["fault"] is True


def test_every_ancestor_refers_to_the_one_record(tracer):
    t, emitter = tracer
    boom = _raised(KeyError("k"))
    with segment(t) as seg:
        outer = t.begin_subsegment("handler")
        inner = t.begin_subsegment("call", "remote")
        inner.add_exception(boom, remote=True)
        t.end_subsegment(inner)
        outer.add_exception(boom)
        t.end_subsegment(outer)
        seg.add_exception(boom)
    [doc] = emitter.documents
    validate(doc)
    [handler] = subs(doc)
    [called] = subs(handler)
    record_id = called["cause"]["exceptions"][0]["id"]
    assert handler["cause"] == record_id and doc["cause"] == record_id
    assert handler["fault"] is True and doc["fault"] is True


def test_another_exception_or_a_sibling_s_gets_its_own_record(tracer):
    t, emitter = tracer
    first, second = _raised(ValueError("a")), _raised(ValueError("b"))
    with segment(t) as seg:
        left = t.begin_subsegment("left")
        left.add_exception(first)
        t.end_subsegment(left)
        right = t.begin_subsegment("right")
        right.add_exception(first)  # not raised below ``right``: a record of its own
        t.end_subsegment(right)
        seg.add_exception(second)
    [doc] = emitter.documents
    validate(doc)
    left_doc, right_doc = subs(doc)
    assert isinstance(right_doc["cause"], dict)
    assert right_doc["cause"]["exceptions"][0]["id"] != left_doc["cause"]["exceptions"][0]["id"]
    assert doc["cause"]["exceptions"][0]["message"] == "b"


def downstream():
    raise ValueError("downstream")


def application(sub):
    return _calls.call(sub, lambda s, _r, exc: s.add_exception(exc, remote=True),
                       downstream, (), {})


def test_a_downstream_call_s_record_holds_the_application_s_callers(tracer):
    """The wrapper caught the exception: its traceback starts in the agent's frame, and the
    application's calls that led there are above it (every Python version alike)."""
    t, _emitter = tracer
    with segment(t):
        sub = t.begin_subsegment("call", "remote")
        with pytest.raises(ValueError):
            application(sub)
        t.end_subsegment(sub)
    stack = sub.cause["exceptions"][0]["stack"]
    labels = [f["label"] for f in stack]
    assert labels[:3] == ["downstream", "application", \
                          "test_a_downstream_call_s_record_holds_the_application_s_callers"]
    assert _agent_frames(sub.cause["exceptions"][0]) == []


def test_a_finished_entity_holds_no_exception(tracer):
    """The exceptions recorded are the application's objects (holding its frames and locals):
    nothing the agent keeps refers to them once they are recorded."""
    t, emitter = tracer
    boom = _raised(ValueError("boom"))
    with segment(t) as seg:
        sub = t.begin_subsegment("call", "remote")
        sub.add_exception(boom, remote=True)
        t.end_subsegment(sub)
        seg.add_exception(boom)
    reached, todo = set(), [seg]
    while todo:
        obj = todo.pop()
        if id(obj) in reached or isinstance(obj, type):
            continue
        reached.add(id(obj))
        assert not isinstance(obj, BaseException) and obj is not boom.__traceback__
        if isinstance(obj, (dict, list, tuple, entities.Entity)):
            todo.extend(gc.get_referents(obj))
    assert doc_cause(emitter) == sub.cause["exceptions"][0]["id"]


def doc_cause(emitter):
    [doc] = emitter.documents
    validate(doc)
    return doc["cause"]


def test_an_id_reused_by_another_exception_is_not_taken_for_it(tracer):
    """``id()`` of a freed exception may be given to a new one: a record only counts when it
    also names the same type and the frames the exception came through."""
    t, emitter = tracer
    first = _raised(ValueError("first"))
    with segment(t) as seg:
        sub = t.begin_subsegment("call", "remote")
        sub.add_exception(first, remote=True)
        t.end_subsegment(sub)
        other = _raised_elsewhere(ValueError("other"))
        sub.exc_id = id(other)  # as if ``other`` had been given ``first``'s address
        seg.add_exception(other)
    cause = doc_cause(emitter)
    assert isinstance(cause, dict) and cause["exceptions"][0]["message"] == "other"


def _raised_elsewhere(exc):
    try:
        raise exc
    except Exception as caught:  # noqa: BLE001
        return caught


# -- through the instrumentation: a failed AWS call, a failed query, under the middleware -----
@pytest.fixture
def fake():
    s = FakeAWS()
    yield s
    s.close()


@pytest.fixture
def aws_patched():
    http_client.patch()
    http_urllib3.patch()
    aws_botocore.patch()
    yield
    aws_botocore.unpatch()
    http_urllib3.unpatch()
    http_client.unpatch()


def _agent_frames(record):
    return [f["path"] for f in record["stack"] if "xray_autoinst" in f["path"]]


def load_order(ddb):
    return ddb.get_item(TableName="orders", Key={"id": {"S": "1"}})


def test_a_failed_aws_call_is_recorded_once_with_the_application_s_frames(
        tracer, aws_patched, fake):
    _t, emitter = tracer
    fake.queue.append((400, {"__type": "ResourceNotFoundException", "message": "no table"}))
    ddb = boto3.client("dynamodb", endpoint_url=fake.url(), **CREDS)

    def app(environ, start_response):
        load_order(ddb)
        start_response("200 OK", [])
        return [b""]

    with pytest.raises(botocore.exceptions.ClientError):
        call(XRayMiddleware(app))
    doc = emitter.documents[-1]
    validate(doc)
    [sub] = subs(doc)
    assert sub["name"] == "dynamodb" and sub["error"] is True
    [record] = sub["cause"]["exceptions"]
    assert record["type"] == "ResourceNotFoundException" and record["remote"] is True
    assert doc["fault"] is True and doc["cause"] == record["id"]
    # the application's frames, most recent first, and none of the agent's
    labels = [f["label"] for f in record["stack"]]
    assert "load_order" in labels and "app" in labels
    assert labels.index("load_order") < labels.index("app")
    assert _agent_frames(record) == []


def test_a_failed_query_is_recorded_once(tracer):
    _t, emitter = tracer
    db_sqlite3.patch()
    try:
        def app(environ, start_response):
            conn = sqlite3.connect(":memory:")
            try:
                conn.execute("SELECT * FROM missing")
            finally:
                conn.close()
            start_response("200 OK", [])
            return [b""]

        with pytest.raises(sqlite3.OperationalError):
            call(XRayMiddleware(app))
    finally:
        db_sqlite3.unpatch()
    doc = emitter.documents[-1]
    validate(doc)
    [query] = [s for s in subs(doc) if "sql" in s]
    [record] = query["cause"]["exceptions"]
    assert record["type"] == "OperationalError" and record["remote"] is True
    assert doc["cause"] == record["id"] and doc["fault"] is True
    assert _agent_frames(record) == []


def test_under_the_asgi_middleware_too(tracer):
    _t, emitter = tracer
    db_sqlite3.patch()
    try:
        async def app(scope, receive, send):
            conn = sqlite3.connect(":memory:")
            try:
                conn.execute("SELECT * FROM missing")
            finally:
                conn.close()

        with pytest.raises(sqlite3.OperationalError):
            run(web_asgi.XRayMiddleware(app), scope())
    finally:
        db_sqlite3.unpatch()
    [doc] = emitter.documents
    validate(doc)
    [query] = [s for s in subs(doc) if "sql" in s]
    [record] = query["cause"]["exceptions"]
    assert doc["cause"] == record["id"] and doc["fault"] is True
    assert doc["http"]["response"]["status"] == 500


def test_an_application_subsegment_refers_to_the_call_it_holds(tracer):
    """``with xray_autoinst.subsegment(...)`` around a failing query: the query's subsegment
    records the exception, the block's and the request's refer to it."""
    import xray_autoinst

    _t, emitter = tracer
    db_sqlite3.patch()
    try:
        def checkout():
            conn = sqlite3.connect(":memory:")
            try:
                with xray_autoinst.subsegment("checkout"):
                    conn.execute("SELECT * FROM missing")
            finally:
                conn.close()

        def app(environ, start_response):
            checkout()

        with pytest.raises(sqlite3.OperationalError):
            call(XRayMiddleware(app))
    finally:
        db_sqlite3.unpatch()
    doc = emitter.documents[-1]
    validate(doc)
    [block] = [s for s in subs(doc) if s["name"] == "checkout"]
    [query] = subs(block)
    [record] = query["cause"]["exceptions"]
    labels = [f["label"] for f in record["stack"]]
    assert labels.index("checkout") < labels.index("app"), labels
    assert block["cause"] == record["id"] and block["fault"] is True
    assert doc["cause"] == record["id"]
