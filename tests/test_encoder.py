import json

import pytest
from xray_testing import CollectingEmitter, validate

from xray_autoinst.core import encoder, ids
from xray_autoinst.core.entities import Segment, Subsegment


def seg_with(n_subs=0, name="svc", payload=0):
    seg = Segment(name, ids.trace_id())
    for i in range(n_subs):
        sub = Subsegment(f"db{i}", seg, "remote")
        if payload:
            sub.sql = {"sanitized_query": "SELECT " + "x" * payload}
        sub.end_time = sub.start_time + 0.001
        seg.subsegments = (seg.subsegments or []) + [sub]
    seg.end_time = seg.start_time + 0.01
    return seg


def test_simple_segment_is_valid_json_and_schema():
    seg = seg_with(2)
    seg.http = {"request": {"method": "GET", "url": "http://x/é\"\\"},
                "response": {"status": 200}}
    seg.set_status(503)
    docs = encoder.documents(seg)
    assert len(docs) == 1
    doc = json.loads(docs[0])
    validate(doc)
    assert doc["fault"] is True and doc["http"]["request"]["url"] == "http://x/é\"\\"
    assert doc["aws"]["xray"]["sdk"] == "xray-autoinst"
    assert [s["name"] for s in doc["subsegments"]] == ["db0", "db1"]


def test_thousands_of_subsegments_are_streamed_by_size_and_all_linked():
    seg = seg_with(3000, payload=100)
    emitter = CollectingEmitter()
    emitter.submit(seg)  # asserts each datagram <= 64 KB
    docs = emitter.documents
    assert len(docs) > 1
    for d in docs:
        validate(d)
    main = [d for d in docs if d.get("type") != "subsegment"]
    assert len(main) == 1 and main[0]["id"] == seg.id
    streamed = [d for d in docs if d.get("type") == "subsegment"]
    assert all(d["parent_id"] == seg.id and d["trace_id"] == seg.trace_id for d in streamed)
    names = {s["name"] for s in main[0].get("subsegments", [])} | {d["name"] for d in streamed}
    assert names == {f"db{i}" for i in range(3000)}


def test_one_huge_subsegment_is_truncated_and_marked_not_dropped():
    seg = seg_with(1)
    sub = seg.subsegments[0]
    sub.put_metadata("blob", "x" * 200_000)
    emitter = CollectingEmitter()
    emitter.submit(seg)
    docs = emitter.documents
    for d in docs:
        validate(d)
    found = [s for d in docs for s in [d] + d.get("subsegments", []) if s["name"] == "db0"]
    assert len(found) == 1
    assert found[0]["metadata"] == {
        "xray_autoinst": {"truncated": "metadata over the 64 KB limit"}
    }


def test_nested_deep_tree_keeps_parent_links():
    seg = Segment("svc", ids.trace_id())
    parent = seg
    for i in range(5):
        child = Subsegment(f"level{i}", parent, "remote")
        for j in range(300):
            leaf = Subsegment(f"leaf{i}-{j}", child, "remote")
            leaf.sql = {"sanitized_query": "q" * 200}
            leaf.end_time = leaf.start_time
            child.subsegments = (child.subsegments or []) + [leaf]
        child.end_time = child.start_time
        parent.subsegments = (parent.subsegments or []) + [child]
        parent = child
    seg.end_time = seg.start_time
    emitter = CollectingEmitter()
    emitter.submit(seg)
    by_id = {}

    def index(d, parent_id):
        by_id[d["id"]] = parent_id
        for s in d.get("subsegments", []):
            index(s, d["id"])

    for d in emitter.documents:
        validate(d)
        index(d, d.get("parent_id") if d.get("type") == "subsegment" else None)
    leaves = [k for k in by_id if k not in {seg.id}]
    assert len(leaves) == 5 + 5 * 300
    # every entity reaches the segment through parent links
    for ent in leaves:
        seen = 0
        while ent != seg.id:
            ent = by_id[ent]
            seen += 1
            assert seen < 20


def test_in_progress_document():
    seg = Segment("svc", ids.trace_id())
    doc = json.loads(encoder.in_progress_document(seg))
    validate(doc)
    assert doc["in_progress"] is True and "end_time" not in doc
    sub = Subsegment("work", seg, "remote")
    sdoc = json.loads(encoder.in_progress_document(sub))
    validate(sdoc)
    assert sdoc["type"] == "subsegment" and sdoc["parent_id"] == seg.id


# the web middlewares' http block is written by hand; every shape must read back exactly as the
# JSON encoder writes it, and any other shape must go through the encoder
_WEB_HTTP = [
    {"request": {"method": "GET", "url": "http://h/", "client_ip": "1.2.3.4",
                 "user_agent": 'ua"\\x\u00e9\n'},
     "response": {"status": 200, "content_length": 2}},
    {"request": {"method": "GET", "url": "http://h/", "client_ip": "1.2.3.4",
                 "x_forwarded_for": True}},
    {"request": {"method": "GET", "url": "u"}, "response": {"status": 500}},
    {"request": {"method": "GET", "url": "u"}, "response": {"content_length": 5}},
    {"request": {"method": "GET", "url": "u"}, "response": {}},
]
_OTHER_HTTP = [
    {"request": {"method": "GET", "url": None}},
    {"request": {"method": "GET", "url": "u", "traced": True}},
    {"request": {"method": "GET", "url": "u"}, "response": {"status": True}},
    {"request": {"method": "GET", "url": "u"}, "response": {"status": 2.5}},
    {"request": {"method": "GET", "url": "u", "x_forwarded_for": False}},
    {"request": {"url": "u"}},
    {"response": {"status": 200}},
    {"request": {"method": "GET", "url": "u"}, "response": None},
    {"request": {"method": "GET", "url": "u"}, "other": 1},
    {},
]


@pytest.mark.parametrize("http", _WEB_HTTP + _OTHER_HTTP)
def test_http_block_reads_back_as_the_json_encoder_writes_it(http):
    text = encoder._http(http)
    assert text.startswith(',"http":')
    assert json.loads(text[len(',"http":'):]) == json.loads(json.dumps(http))


@pytest.mark.parametrize("http", _WEB_HTTP)
def test_web_http_block_is_written_by_hand(http):
    assert encoder._web_http(http) is not None


@pytest.mark.parametrize("http", _OTHER_HTTP)
def test_other_http_blocks_go_through_the_encoder(http):
    try:
        assert encoder._web_http(http) is None
    except (KeyError, TypeError):
        pass  # _http falls back on these as well


@pytest.mark.parametrize("t", [1796425594.0, 1796425594.9999995, 1796425594.123456789, 0.5,
                               -1.5, 2e11])
def test_times_are_written_to_the_microsecond(t):
    seg = Segment("svc", ids.trace_id(), start_time=t)
    seg.end_time = t + 1.25
    doc = json.loads(encoder.documents(seg)[0])
    validate(doc)
    assert abs(doc["start_time"] - t) < 2e-6 and abs(doc["end_time"] - (t + 1.25)) < 2e-6
    assert doc["end_time"] >= doc["start_time"]
    assert json.loads(encoder.in_progress_document(seg))["start_time"] == doc["start_time"]


@pytest.mark.parametrize("start, end", [
    (1796425594.25, 1796425594.75),  # one second: the one-format path once it is cached
    (1796425594.999999, 1796425595.000001),  # across a second
    (1796425594.5, None),  # in progress
    (-1.5, 0.5),  # not written from a cached second
])
def test_both_time_paths_write_the_same_text(start, end):
    seg = Segment("svc", ids.trace_id(), start_time=start)
    seg.end_time = end
    general = encoder._times(start, end)
    for _ in range(2):  # the second time with start's second cached
        text = encoder.documents(seg)[0]
        assert general in text
        doc = json.loads(text)
        validate(doc)
        assert abs(doc["start_time"] - start) < 1e-6
        if end is None:
            assert doc["in_progress"] is True
        else:
            assert abs(doc["end_time"] - end) < 1e-6
