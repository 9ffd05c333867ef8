"""Context follows the work: threads, executors, asyncio; parents already sent; no leaks."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from xray_testing import validate

from xray_autoinst.contrib import ctx_futures, ctx_threading
from xray_autoinst.core.tracer import current_entity


@pytest.fixture
def patched():
    ctx_threading.patch()
    ctx_futures.patch()
    yield
    ctx_threading.unpatch()
    ctx_futures.unpatch()


def record(t, name):
    sub = t.begin_subsegment(name, "remote")
    if sub is not None:
        t.end_subsegment(sub)
    return sub


def all_names(doc):
    out = [doc["name"]]
    for s in doc.get("subsegments", []):
        out += all_names(s)
    return out


def test_thread_started_in_request_records_under_it(tracer, patched):
    t, emitter = tracer
    seg, token = t.begin_segment("svc")
    th = threading.Thread(target=record, args=(t, "in-thread"))
    th.start()
    th.join()
    t.end_segment(seg, token)
    [doc] = emitter.documents
    validate(doc)
    assert [s["name"] for s in doc["subsegments"]] == ["in-thread"]


def test_thread_subclass_with_run_override(tracer, patched):
    t, emitter = tracer

    class Worker(threading.Thread):
        def run(self):
            record(t, "subclass")

    seg, token = t.begin_segment("svc")
    w = Worker()
    w.start()
    w.join()
    t.end_segment(seg, token)
    assert [s["name"] for s in emitter.documents[0]["subsegments"]] == ["subclass"]


def test_without_patch_threads_lose_the_request(tracer):
    t, emitter = tracer
    seg, token = t.begin_segment("svc")
    th = threading.Thread(target=record, args=(t, "lost"))
    th.start()
    th.join()
    t.end_segment(seg, token)
    assert "subsegments" not in emitter.documents[0]


def test_executor_tasks_record_under_submitting_request_and_do_not_leak(tracer, patched):
    t, emitter = tracer
    with ThreadPoolExecutor(max_workers=1) as pool:
        seg, token = t.begin_segment("svc")
        pool.submit(record, t, "task-a").result()
        t.end_segment(seg, token)
        # the same worker thread, outside any request: nothing current there
        assert pool.submit(current_entity.get).result() is None
        seg2, token2 = t.begin_segment("svc2")
        pool.submit(record, t, "task-b").result()
        t.end_segment(seg2, token2)
    d1, d2 = emitter.documents
    assert all_names(d1) == ["svc", "task-a"]
    assert all_names(d2) == ["svc2", "task-b"]


def test_subsegment_ending_after_parent_was_sent_is_delivered_linked(tracer, patched):
    t, emitter = tracer
    started = threading.Event()
    release = threading.Event()

    def slow():
        sub = t.begin_subsegment("late", "remote")
        started.set()
        release.wait(5)
        t.end_subsegment(sub)

    seg, token = t.begin_segment("svc")
    th = threading.Thread(target=slow)
    th.start()
    started.wait(5)
    t.end_segment(seg, token)
    release.set()
    th.join()
    main, late = emitter.documents
    validate(main)
    validate(late)
    assert "subsegments" not in main
    assert late["type"] == "subsegment" and late["name"] == "late"
    assert late["parent_id"] == seg.id and late["trace_id"] == seg.trace_id


def test_asyncio_tasks_inherit_naturally(tracer):
    t, emitter = tracer

    async def work(name):
        await asyncio.sleep(0.01)
        sub = t.begin_subsegment(name, "remote")
        await asyncio.sleep(0.01)
        t.end_subsegment(sub)

    async def request(name):
        seg, token = t.begin_segment(name)
        await asyncio.gather(work(name + "-a"), work(name + "-b"))
        t.end_segment(seg, token)

    async def main():
        await asyncio.gather(request("r1"), request("r2"))

    asyncio.run(main())
    by_name = {d["name"]: sorted(all_names(d)[1:]) for d in emitter.documents}
    assert by_name == {"r1": ["r1-a", "r1-b"], "r2": ["r2-a", "r2-b"]}


def test_nothing_leaks_into_the_next_request_on_the_same_thread(tracer):
    t, emitter = tracer
    seg, token = t.begin_segment("one")
    t.end_segment(seg, token)
    assert current_entity.get() is None
    assert t.begin_subsegment("outside", "remote") is None


def test_open_segment_is_sent_in_progress_at_shutdown(tracer):
    t, emitter = tracer
    seg, _token = t.begin_segment("svc")
    record(t, "finished-part")
    t.shutdown()
    [doc] = emitter.documents
    validate(doc)
    assert doc["in_progress"] is True and "end_time" not in doc
    assert [s["name"] for s in doc["subsegments"]] == ["finished-part"]
    current_entity.set(None)
