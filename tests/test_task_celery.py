"""Celery in-process (memory broker, and the worker's own tracer function run in this process):
the publish subsegment and the header in the message, the application's own header kept, one
segment per execution with the task's fields, fault with cause, eager runs inside the caller,
process mode in a worker, a broken receiver never failing a task."""

import pytest
from xray_testing import install_tracer, need, segment, subs, validate

from xray_autoinst.contrib import _work, db_sqlite3, task_celery
from xray_autoinst.core import header
from xray_autoinst.core.tracer import current_entity

celery = need("celery")


@pytest.fixture
def app():
    task_celery.patch()
    db_sqlite3.patch()
    app = celery.Celery("proj", broker="memory://", set_as_current=False)
    app.conf.task_ignore_result = True
    published = []

    def capture(headers=None, **kw):
        published.append(dict(headers))

    celery.signals.before_task_publish.connect(capture, weak=False)
    celery.signals.before_task_publish.receivers.sort(  # ours first, capture after
        key=lambda r: 0 if "xray-autoinst" in str(r[0]) else 1)

    @app.task(name="proj.add")
    def add(x, y):
        import sqlite3

        with sqlite3.connect(":memory:") as db:
            db.execute("SELECT ? + ?", (x, y)).fetchall()
        return x + y

    @app.task(name="proj.boom")
    def boom():
        raise ValueError("task failed")

    app.published = published
    yield app
    celery.signals.before_task_publish.disconnect(capture)
    db_sqlite3.unpatch()
    task_celery.unpatch()


def run_in_worker(app, task, headers, args=()):
    """What a worker does with a received message: build the task's tracer and call it."""
    from celery.app.trace import build_tracer

    trace = build_tracer(task.name, task, app=app, eager=False, propagate=False)
    request = {"id": headers.get("id", "tid-1"), "retries": headers.get("retries", 0),
               "delivery_info": {"routing_key": "celery"}, "hostname": "w@h"}
    request.update(headers)
    return trace(request["id"], args, {}, request)


def test_publish_records_a_subsegment_and_carries_the_header(tracer, app):
    t, emitter = tracer
    with segment(t, "web") as seg:
        result = app.tasks["proj.add"].delay(2, 3)
    [doc] = emitter.documents
    validate(doc)
    [pub] = subs(doc)
    assert (pub["name"], pub["namespace"]) == ("proj.add", "remote")
    assert pub["metadata"]["celery"] == {"task": "proj.add", "id": result.id}
    [headers] = app.published
    hdr = header.parse(headers["X-Amzn-Trace-Id"])
    assert (hdr.root, hdr.parent, hdr.sampled) == (seg.trace_id, pub["id"], "1")


def test_canvas_chain_and_group_each_publish_is_recorded(tracer, app):
    t, emitter = tracer
    add = app.tasks["proj.add"]
    with segment(t, "web") as seg:
        celery.group(add.s(1, 1), add.s(2, 2)).apply_async()
        celery.chain(add.s(1, 1), add.s(3)).apply_async()
    [doc] = emitter.documents
    validate(doc)
    pubs = subs(doc)
    assert [p["name"] for p in pubs] == ["proj.add"] * 3  # a chain publishes its first task
    for pub, headers in zip(pubs, app.published, strict=True):
        hdr = header.parse(headers["X-Amzn-Trace-Id"])
        assert (hdr.root, hdr.parent) == (seg.trace_id, pub["id"])


def test_the_applications_own_header_is_kept(tracer, app):
    t, _ = tracer
    own = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    with segment(t, "web"):
        app.tasks["proj.add"].apply_async((1, 2), headers={"X-Amzn-Trace-Id": own})
    assert app.published[0]["X-Amzn-Trace-Id"] == own


def test_outside_any_request_no_header_no_document(tracer, app):
    t, emitter = tracer
    app.tasks["proj.add"].delay(1, 2)
    assert "X-Amzn-Trace-Id" not in app.published[0]
    assert emitter.documents == []


def test_worker_execution_is_a_segment_continuing_the_header(tracer, app):
    t, emitter = tracer
    hdr = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    run_in_worker(app, app.tasks["proj.add"], {"X-Amzn-Trace-Id": hdr, "id": "t-1"}, (2, 3))
    assert current_entity.get() is None
    [doc] = emitter.documents
    validate(doc)
    assert doc["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert doc["parent_id"] == "53995c3f42cd8ad8"
    assert doc["annotations"] == {"celery_task": "proj.add", "celery_task_id": "t-1",
                                  "celery_retries": 0, "celery_state": "SUCCESS"}
    assert doc["metadata"]["celery"]["queue"] == "celery"
    assert [s.get("sql", {}).get("database_type") for s in subs(doc)] == ["sqlite"]
    assert "5" not in str(doc.get("metadata"))  # no result


def test_failing_task_is_fault_with_cause_and_fresh_trace_without_header(tracer, app):
    t, emitter = tracer
    run_in_worker(app, app.tasks["proj.boom"], {"id": "t-2"})
    [doc] = emitter.documents
    validate(doc)
    assert "parent_id" not in doc
    assert doc["fault"] is True and doc["annotations"]["celery_state"] == "FAILURE"
    assert doc["cause"]["exceptions"][0]["type"] == "ValueError"


def test_unsampled_header_records_nothing(tracer, app):
    t, emitter = tracer
    hdr = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
    run_in_worker(app, app.tasks["proj.add"], {"X-Amzn-Trace-Id": hdr}, (1, 1))
    assert emitter.documents == []


def test_eager_runs_are_part_of_the_caller(tracer, app):
    t, emitter = tracer
    with segment(t, "web"):
        assert app.tasks["proj.add"].apply((2, 2)).get() == 4
    [doc] = emitter.documents
    assert doc["name"] == "web"
    assert [s.get("sql", {}).get("database_type") for s in subs(doc)] == ["sqlite"]


def test_worker_init_in_process_mode_ends_the_process_segment(app):
    earlier = set(_work.units)  # (units other tests left open are not this test's)
    t, emitter = install_tracer({"XRAY_CONTEXT_MISSING": "process"})
    current_entity.set(None)
    import sqlite3

    sqlite3.connect(":memory:").execute("SELECT 1").fetchall()  # start-up work
    assert t.process_segment is not None
    task_celery._on_worker_init(sender=type("W", (), {"app": app})())
    assert t.process_segment is None and t.context_missing == "ignore"
    assert current_entity.get() is None
    segs = [d for d in emitter.documents if d.get("type") != "subsegment"]
    assert [d for d in segs if d.get("end_time")], segs
    t.shutdown(0)
    assert set(_work.units) <= earlier


def test_a_broken_receiver_never_fails_the_task(app, monkeypatch):
    t, emitter = install_tracer({"XRAY_AUTOINST_RAISE": "0"})
    current_entity.set(None)

    def broken(*a, **kw):
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(task_celery._header, "parse", broken)
    out = run_in_worker(app, app.tasks["proj.add"], {"X-Amzn-Trace-Id": "x"}, (2, 3))
    assert out[0] == 5  # the task ran and returned as without the agent
    monkeypatch.setattr(task_celery, "clean_name", broken)
    with segment(t, "web"):
        app.tasks["proj.add"].delay(1, 2)
    assert len(app.published) == 1
