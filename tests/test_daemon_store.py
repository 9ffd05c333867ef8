"""The SQLite trace store: merging documents, summaries and filters, eviction, reading."""

import json
import os
import sqlite3

import pytest

from xray_autoinst.daemon.protocol import decode, encode
from xray_autoinst.daemon.store import Store, StoreMissing, status_matches

T0 = 1_700_000_000.0


def tid(n: int, sec: float = T0) -> str:
    return f"1-{int(sec):08x}-{n:024x}"


def doc(trace, ident, start, end=None, **extra):
    d = {"name": extra.pop("name", "web"), "id": ident, "trace_id": trace, "start_time": start}
    if end is None:
        d["in_progress"] = True
    else:
        d["end_time"] = end
    d.update(extra)
    return d


def rows(*docs, received=None):
    out = []
    for i, d in enumerate(docs):
        reason, row = decode(encode(d), received if received is not None else T0 + i)
        assert reason is None, (reason, d)
        out.append(row)
    return out


@pytest.fixture
def store(tmp_path):
    s = Store.open_writer(str(tmp_path / "sub" / "traces.db"))
    yield s
    s.close()


def test_creates_private_file_and_dirs(tmp_path):
    path = tmp_path / "a" / "b" / "traces.db"
    s = Store.open_writer(str(path))
    s.close()
    assert path.exists()
    assert (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700


def test_reader_of_missing_store(tmp_path):
    with pytest.raises(StoreMissing):
        Store.open_reader(str(tmp_path / "nope.db"))


def test_in_progress_replaced_by_complete_never_the_reverse(store):
    t = tid(1)
    store.write(rows(doc(t, "a" * 16, T0)))
    assert json.loads(json.dumps(store.documents(t)))[0]["in_progress"] is True
    store.write(rows(doc(t, "a" * 16, T0, T0 + 2, http={"response": {"status": 201}})))
    store.write(rows(doc(t, "a" * 16, T0)))  # a late in_progress copy
    docs = store.documents(t)
    assert len(docs) == 1 and docs[0]["end_time"] == T0 + 2
    (summary,) = store.summaries()
    assert summary["status"] == 201 and summary["in_progress"] is False
    assert summary["duration"] == pytest.approx(2.0)


def test_summary_root_service_flags_and_counts(store):
    t = tid(2)
    store.write(rows(
        doc(t, "1" * 16, T0, T0 + 1, name="front", http={
            "request": {"method": "GET", "url": "http://x/a"}, "response": {"status": 200}}),
        doc(t, "2" * 16, T0 + 0.1, T0 + 0.3, name="back", parent_id="9" * 16,
            fault=True),
        doc(t, "3" * 16, T0 + 0.2, T0 + 0.25, name="sub", type="subsegment",
            parent_id="1" * 16, throttle=True, error=True),
    ))
    (s,) = store.summaries()
    assert s["trace_id"] == t
    assert (s["service"], s["method"], s["url"], s["status"]) == ("front", "GET", "http://x/a", 200)
    assert (s["segments"], s["documents"]) == (2, 3)
    assert (s["fault"], s["error"], s["throttle"]) == (True, True, True)
    assert s["services"] == ["front", "back"]
    assert s["start_time"] == T0 and s["end_time"] == T0 + 1


def test_root_when_every_segment_has_a_parent(store):
    # a trace that started upstream (a load balancer): the earliest segment is the root
    t = tid(3)
    store.write(rows(doc(t, "2" * 16, T0 + 1, T0 + 2, name="late", parent_id="8" * 16),
                     doc(t, "1" * 16, T0, T0 + 3, name="early", parent_id="7" * 16)))
    assert store.summaries()[0]["service"] == "early"


def fill(store):
    specs = [  # (n, start offset, duration, service, status)
        (1, 0, 0.1, "api", 200),
        (2, 10, 2.0, "api", 500),
        (3, 20, 0.5, "worker", 404),
        (4, 30, 1.5, "api-v2", 503),
    ]
    for n, off, dur, name, status in specs:
        store.write(rows(doc(tid(n, T0 + off), f"{n:016x}", T0 + off, T0 + off + dur,
                             name=name, http={"response": {"status": status}})))


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, [4, 3, 2, 1]),
        ({"limit": 2}, [4, 3]),
        ({"service": "api"}, [2, 1]),
        ({"service": "api*"}, [4, 2, 1]),
        ({"status": "500"}, [2]),
        ({"status": "5xx"}, [4, 2]),
        ({"status": "4XX"}, [3]),
        ({"min_duration": 1.0}, [4, 2]),
        ({"since": T0 + 15}, [4, 3]),
        ({"service": "api*", "status": "5xx", "min_duration": 1.8}, [2]),
    ],
)
def test_summaries_filters(store, kwargs, expected):
    fill(store)
    got = [int(s["trace_id"][-4:], 16) for s in store.summaries(**kwargs)]
    assert got == expected


@pytest.mark.parametrize(
    "status, wanted, ok",
    [(500, "500", True), (500, "5xx", True), (599, "5XX", True), (404, "5xx", False),
     (None, "200", False), (200, "abc", False), (200, " 200 ", True)],
)
def test_status_matches(status, wanted, ok):
    assert status_matches(status, wanted) is ok


def test_eviction_by_count_drops_the_oldest(tmp_path):
    s = Store.open_writer(str(tmp_path / "t.db"), max_traces=5)
    for n in range(12):
        s.write(rows(doc(tid(n), f"{n:016x}", T0 + n, T0 + n + 1),
                     doc(tid(n), f"{n + 100:016x}", T0 + n, T0 + n + 1, type="subsegment",
                         parent_id=f"{n:016x}")))
    assert s.evict() == 7
    assert s.count_traces() == 5 and s.count_documents() == 10
    assert sorted(s.trace_ids()) == [tid(n) for n in range(7, 12)]
    assert s.evict() == 0
    s.close()


def test_eviction_by_size(tmp_path):
    s = Store.open_writer(str(tmp_path / "t.db"), max_traces=100_000, max_bytes=2 * 1024 * 1024)
    pad = "x" * 8000
    for n in range(600):  # about 5 MB of documents
        s.write(rows(doc(tid(n), f"{n:016x}", T0 + n, T0 + n + 1, metadata={"default": {
            "pad": pad}})))
    dropped = s.evict()
    assert dropped > 0
    assert s.size_bytes() <= 2 * 1024 * 1024
    kept = s.trace_ids()
    assert tid(599) in kept and tid(0) not in kept  # the newest stay
    s.close()


def test_resolve_trace_id(store):
    a, b = "1-6553f100-aaaa00000000000000000001", "1-6553f100-aaaa00000000000000000002"
    store.write(rows(doc(a, "1" * 16, T0, T0 + 1), doc(b, "2" * 16, T0 + 5, T0 + 6)))
    assert store.resolve_trace_id(a) == [a]
    assert store.resolve_trace_id("6553f100-aaaa00000000000000000001") == [a]  # no "1-"
    assert store.resolve_trace_id("1-6553f100-aaaa0000000000000000000") == [a, b]
    assert store.resolve_trace_id("latest") == [b]
    assert store.resolve_trace_id("1-ffffffff") == []


def test_reader_sees_writes_while_the_writer_is_open(tmp_path):
    path = str(tmp_path / "t.db")
    w = Store.open_writer(path)
    r = Store.open_reader(path)
    assert r.summaries() == []
    w.write(rows(doc(tid(1), "1" * 16, T0, T0 + 1)))
    assert [s["trace_id"] for s in r.summaries()] == [tid(1)]
    assert os.path.exists(path + "-wal")  # WAL mode: readers never block the writer
    r.close_reader()
    w.close()


def test_write_batch_is_atomic(store):
    good = rows(doc(tid(1), "1" * 16, T0, T0 + 1))[0]
    bad = good[:3] + (None,) + good[4:]  # kind is NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        store.write([good, bad])
    assert store.count_documents() == 0
    store.write([good])
    assert store.count_documents() == 1


def test_empty_store_views(tmp_path):
    path = tmp_path / "t.db"
    path.write_bytes(b"")  # created but never written by a daemon
    r = Store.open_reader(str(path))
    assert r.summaries() == [] and r.trace_ids() == [] and r.resolve_trace_id("latest") == []
    assert r.documents("x") == [] and r.count_traces() == 0
    r.close_reader()

