"""Per-call benchmark worker: one instrumented call (sqlite3 ``execute``, psycopg ``execute``
against PostgreSQL, an ``http.client`` request to a loopback server, a botocore call answered
by a ``Stubber``) repeated in a loop, bare or under one tracer.

    python bench/calls_worker.py '{"case": "sqlite3", "mode": "xray", "batches": 10, ...}'

Modes:
- ``bare``: no tracer.
- ``xray``: this agent exactly as ``xray-run`` starts it (the runner puts the bootstrap on
  PYTHONPATH), so the library is patched by the agent's import hook; calls run inside a sampled
  segment.
- ``sdk``: aws-xray-sdk's ``patch([library])``, calls inside a segment of ``xray_recorder``.

Calls run ``PER_SEGMENT`` to a segment (a request making that many calls). The cost of opening
and ending the segments is measured in its own interleaved batches (the same segments, no
calls) and subtracted, so a figure is the cost of one call and its subsegment. Figures per call,
in microseconds: ``wall`` (the loop), ``thread`` (CPU time of the calling thread), ``cpu``
(CPU time of the whole process including the flush of queued documents).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time

from benchlib import calibrate, emit_result

PER_SEGMENT = 10

# case -> (module the integration targets, aws-xray-sdk patch name)
CASES = {
    "sqlite3": ("sqlite3", "sqlite3"),
    "psycopg": ("psycopg", "psycopg"),
    "http.client": ("http.client", "httplib"),
    "botocore": ("botocore.client", "botocore"),
}


class NotAvailable(Exception):
    """The measured integration does not exist (yet); reported as such, not as an error."""


# -- the calls ------------------------------------------------------------------------------
def make_call(case, spec):
    """Returns (call, refill, versions): ``call()`` does one operation; ``refill(n)`` prepares
    n more (the botocore stub queues its responses ahead)."""
    if case == "sqlite3":
        import sqlite3

        conn = sqlite3.connect(":memory:")
        cur = conn.cursor()
        cur.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
        cur.execute("INSERT INTO t VALUES (1, 'one')")
        execute = cur.execute
        query = "SELECT name FROM t WHERE id = ?"
        params = (1,)

        def call():
            execute(query, params)

        return call, None, {"sqlite": sqlite3.sqlite_version}
    if case == "psycopg":
        import psycopg

        conn = psycopg.connect(spec["dsn"], autocommit=True)
        cur = conn.cursor()
        execute = cur.execute
        query = "SELECT %s::int"
        params = (1,)

        def call():
            execute(query, params)

        return call, None, {"psycopg": psycopg.__version__,
                            "postgresql": conn.info.server_version}
    if case == "http.client":
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", spec["http_port"], timeout=10)

        def call():
            conn.request("GET", "/ping")
            resp = conn.getresponse()
            resp.read()

        return call, None, {}
    if case == "botocore":
        import botocore
        import botocore.session
        from botocore.stub import Stubber

        session = botocore.session.get_session()
        client = session.create_client(
            "dynamodb", region_name="us-east-1", aws_access_key_id="testing",
            aws_secret_access_key="testing", endpoint_url="http://127.0.0.1:9",
        )
        stubber = Stubber(client)
        stubber.activate()
        response = {"Item": {"id": {"S": "1"}, "name": {"S": "one"}}}
        get_item = client.get_item
        key = {"id": {"S": "1"}}

        def call():
            get_item(TableName="orders", Key=key)

        def refill(n):
            for _ in range(n):
                stubber.add_response("get_item", response)

        return call, refill, {"botocore": botocore.__version__}
    raise ValueError(case)


# -- tracers --------------------------------------------------------------------------------
def xray_setup(case):
    """The agent was started by the bootstrap (as under xray-run); check that it patched the
    library and return (begin, end, flush)."""
    from xray_autoinst import bootstrap, registry
    from xray_autoinst.core.tracer import get_tracer

    target = CASES[case][0]
    names = [name for name, (targets, _p, _d) in registry.INTEGRATIONS.items()
             if target in targets]
    if not names:
        raise NotAvailable(f"no integration in xray_autoinst.registry targets {target!r}")
    states = {n: bootstrap.status.get(n) for n in names}
    if not any(s == "patched" for s in states.values()):
        raise RuntimeError(f"integration {names} not applied after import: {states}")
    tracer = get_tracer()

    def begin():
        return tracer.begin_segment("bench")

    def end(state):
        seg, token = state
        tracer.end_segment(seg, token)

    return begin, end, tracer.emitter.flush, names


def sdk_setup(case):
    from aws_xray_sdk.core import patch, xray_recorder

    patch([CASES[case][1]])
    xray_recorder.configure(service="bench", daemon_address=os.environ["BENCH_DAEMON"],
                            context_missing="LOG_ERROR", plugins=())

    def begin():
        return xray_recorder.begin_segment("bench", sampling=1)

    def end(_state):
        xray_recorder.end_segment()

    return begin, end, _noop


def _noop():
    return None


def run_batch(call, begin, end, segments, per_segment):
    if begin is None:
        for _ in range(segments * per_segment):
            call()
        return
    for _ in range(segments):
        state = begin()
        for _ in range(per_segment):
            call()
        end(state)


def main(spec) -> dict:
    case, mode = spec["case"], spec["mode"]
    versions = {}
    begin = end = None
    flush = _noop
    integration = None
    if mode == "xray":
        # import the library first: the agent's hook patches it on import
        __import__(CASES[case][0])
        begin, end, flush, integration = xray_setup(case)
        from xray_autoinst import __version__

        versions["xray-autoinst"] = __version__
    elif mode == "sdk":
        begin, end, flush = sdk_setup(case)
        from importlib import metadata

        versions["aws-xray-sdk"] = metadata.version("aws-xray-sdk")
    call, refill, lib_versions = make_call(case, spec)
    versions.update(lib_versions)

    def calls(n_segments):
        if refill is not None:
            refill(n_segments * PER_SEGMENT)
        run_batch(call, begin, end, n_segments, PER_SEGMENT)
        flush()

    calls(5)  # warm up (and check it works)
    segments = calibrate(lambda n: calls(n), spec["target_s"], start=2, limit=200_000)
    out = {"wall": [], "thread": [], "cpu": [], "calls_per_batch": segments * PER_SEGMENT,
           "per_segment": PER_SEGMENT}
    pt, tt, pc = time.process_time, time.thread_time, time.perf_counter
    n_calls = segments * PER_SEGMENT
    for i in range(spec["batches"]):
        figures = {}
        order = ("calls", "empty") if i % 2 == 0 else ("empty", "calls")
        for kind in order:
            per = PER_SEGMENT if kind == "calls" else 0
            if refill is not None and per:
                refill(n_calls)
            gc.collect()
            c0, t0, w0 = pt(), tt(), pc()
            if begin is None and not per:
                w1 = pc()
                t1 = tt()
            else:
                run_batch(call, begin, end, segments, per)
                w1, t1 = pc(), tt()
            flush()
            c1 = pt()
            figures[kind] = (w1 - w0, t1 - t0, c1 - c0)
        for j, key in enumerate(("wall", "thread", "cpu")):
            out[key].append((figures["calls"][j] - figures["empty"][j]) / n_calls * 1e6)
    return {"case": case, "mode": mode, "result": out, "versions": versions,
            "integration": integration, "python": sys.version.split()[0]}


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    try:
        result = main(spec)
    except NotAvailable as exc:
        result = {"case": spec["case"], "mode": spec["mode"], "not_available": str(exc)}
    emit_result(result)
