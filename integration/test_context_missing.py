"""Calls outside a request: ``xray-run python batch.py`` where the batch script makes SQL calls
with no web request open, for each XRAY_CONTEXT_MISSING mode (and the standard
AWS_XRAY_CONTEXT_MISSING values), asserting on the documents the loopback daemon receives and
on the agent's stderr."""

import subprocess
import threading
import time

import pytest
from xray_testing import agent_env, validate, xray_run

BATCH = r"""
import sqlite3
import sys
import threading

conn = sqlite3.connect(":memory:", check_same_thread=False)
conn.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, payload TEXT)")
for i in range(3):
    conn.execute("INSERT INTO jobs (payload) VALUES (?)", ("job-secret-%d" % i,))


def worker():
    conn.execute("UPDATE jobs SET payload = 'done' WHERE id = 1")


t = threading.Thread(target=worker)
t.start()
t.join()
print(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])
try:
    conn.execute("SELECT * FROM missing")
except sqlite3.OperationalError as exc:
    print("caught", type(exc).__name__)
sys.exit(3)
"""
N_CALLS = 7  # CREATE, 3 INSERT, UPDATE (in a thread), SELECT, failing SELECT


def run_batch(daemon, tmp_path, **env):
    script = tmp_path / "batch.py"
    script.write_text(BATCH)
    proc = subprocess.run(xray_run("python", str(script)), cwd=tmp_path,
                          env=agent_env(daemon, **env), capture_output=True, text=True,
                          timeout=60)
    # the program's own behaviour is unchanged whatever the mode
    assert proc.stdout.split() == ["3", "caught", "OperationalError"], proc.stderr
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def quiet(daemon, seconds=0.5):
    """Nothing more arrives (the process has exited: anything it sent is in flight)."""
    time.sleep(seconds)
    return list(daemon.documents)


@pytest.mark.parametrize("env", [
    {},
    {"XRAY_CONTEXT_MISSING": "ignore"},
    {"AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR"},
])
def test_ignore_records_and_logs_nothing(daemon, tmp_path, env):
    proc = run_batch(daemon, tmp_path, **env)
    assert quiet(daemon) == []
    assert proc.stderr == ""


@pytest.mark.parametrize("env", [
    {"XRAY_CONTEXT_MISSING": "log"},
    {"AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR"},
    {"AWS_XRAY_CONTEXT_MISSING": "RUNTIME_ERROR"},  # never raises into the application
])
def test_log_writes_one_line_and_records_nothing(daemon, tmp_path, env):
    proc = run_batch(daemon, tmp_path, **env)
    assert quiet(daemon) == []
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr  # seven calls, one line (at most one a minute)
    assert "outside any request" in lines[0]
    assert lines[0].startswith("xray-autoinst: WARNING:")


def test_log_line_is_repeated_at_most_once_a_minute():
    from xray_autoinst import log as _log
    from xray_autoinst.config import Config
    from xray_autoinst.core.tracer import Tracer

    class NoEmitter:
        def submit(self, e):
            raise AssertionError("nothing is sent in log mode")

        send_document = submit

    t = Tracer(Config(context_missing="log"), NoEmitter())
    _log._last.pop("context-missing", None)
    seen = []
    logger = _log.get()
    original = logger.log
    logger.log = lambda level, msg, *a, **k: seen.append(msg % a)
    try:
        for _ in range(100):
            assert t.begin_subsegment("db", "remote") is None
    finally:
        logger.log = original
    assert len(seen) == 1 and "db" in seen[0]


def test_call_makes_one_small_trace_per_call(daemon, tmp_path):
    run_batch(daemon, tmp_path, XRAY_CONTEXT_MISSING="call")
    docs = daemon.wait(N_CALLS, timeout=10)
    time.sleep(0.3)
    docs = list(daemon.documents)
    assert len(docs) == N_CALLS, docs
    queries = []
    for doc in docs:
        validate(doc)
        assert doc.get("type") is None  # a segment of its own
        assert doc["name"] == "batch"
        [sub] = doc["subsegments"]
        assert sub["name"] == ":memory:"
        assert sub["namespace"] == "remote"
        assert sub["sql"]["database_type"] == "sqlite"
        assert doc["start_time"] <= sub["start_time"] <= sub["end_time"] <= doc["end_time"]
        queries.append(sub["sql"]["sanitized_query"])
        if "missing" in sub["sql"]["sanitized_query"]:
            assert sub["fault"] is True
            assert sub["cause"]["exceptions"][0]["type"] == "OperationalError"
    assert len({d["trace_id"] for d in docs}) == N_CALLS
    assert sorted(queries) == sorted([
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, payload TEXT)",
        *["INSERT INTO jobs (payload) VALUES (?)"] * 3,
        "UPDATE jobs SET payload = ? WHERE id = ?",
        "SELECT count(*) FROM jobs",
        "SELECT * FROM missing",
    ])
    assert "job-secret" not in str(docs)


def test_process_makes_one_segment_for_the_run(daemon, tmp_path):
    run_batch(daemon, tmp_path, XRAY_CONTEXT_MISSING="process")
    daemon.wait(N_CALLS + 2, timeout=10)
    time.sleep(0.3)
    docs = list(daemon.documents)
    for doc in docs:
        validate(doc)
    segments = [d for d in docs if d.get("type") != "subsegment"]
    subs = [d for d in docs if d.get("type") == "subsegment"]
    # announced in progress at the first call, complete at exit
    assert [bool(s.get("in_progress")) for s in segments] == [True, False], segments
    opened, final = segments
    assert opened["id"] == final["id"] and opened["trace_id"] == final["trace_id"]
    assert final["name"] == "batch"
    # every statement streamed as its own document under that segment, the worker's too
    assert len(subs) == N_CALLS
    for sub in subs:
        assert sub["parent_id"] == final["id"]
        assert sub["trace_id"] == final["trace_id"]
        assert sub["name"] == ":memory:"
        assert final["start_time"] <= sub["start_time"] <= sub["end_time"] <= final["end_time"]
    assert "UPDATE jobs SET payload = ? WHERE id = ?" in {
        s["sql"]["sanitized_query"] for s in subs}
    assert sum(1 for s in subs if s.get("fault")) == 1
    assert "job-secret" not in str(docs)


def test_process_mode_in_process_threads_share_the_segment():
    """In-process check of the core: calls from several threads outside any request all land
    in one process segment, and shutdown sends it once."""
    from xray_testing import CollectingEmitter

    from xray_autoinst.config import Config
    from xray_autoinst.core.tracer import Tracer, current_entity

    emitter = CollectingEmitter()
    t = Tracer(Config(context_missing="process"), emitter)
    token = current_entity.set(None)
    try:
        def work():
            for _ in range(5):
                t.end_subsegment(t.begin_subsegment("db", "remote"))

        threads = [threading.Thread(target=work) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        t.shutdown()
        # a call after shutdown is not recorded (nothing could send it any more)
        assert t.begin_subsegment("late", "remote") is None
    finally:
        current_entity.reset(token)
    docs = emitter.documents
    segs = [d for d in docs if d.get("type") != "subsegment"]
    assert [bool(s.get("in_progress")) for s in segs] == [True, False]
    assert len({s["id"] for s in segs}) == 1
    assert len([d for d in docs if d.get("type") == "subsegment"]) == 20
