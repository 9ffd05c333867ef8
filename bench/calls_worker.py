"""Per-call benchmark worker: one instrumented call (sqlite3 ``execute``, psycopg ``execute``
against PostgreSQL, an ``http.client`` request to a loopback server, a botocore call answered
by a ``Stubber``) repeated in a loop, bare or under one tracer.

    python bench/calls_worker.py '{"case": "sqlite3", "mode": "xray", "batches": 10, ...}'

Modes:
- ``xray``: bare and this agent in one process, batch by batch interleaved. The agent's tracer
  is configured from the environment as under ``xray-run``; before each batch the integration
  the agent's registry names for the library is applied (``patch()``) or removed
  (``unpatch()``, its exact mirror), and each state uses its own objects (connection, client)
  created in that state, so a bare batch runs exactly the uninstrumented library.
- ``sdk``: aws-xray-sdk's ``patch([library])``, calls inside a segment of ``xray_recorder``
  (the SDK cannot unpatch: its bare baseline is the ``xray`` process of the same round).

- ``count``: one state only (``variant``: ``bare``, ``traced`` with the finished segments
  dropped -- the calling thread's work -- or ``encoded``, each segment also encoded into its
  datagrams on the calling thread -- what the sender adds), ``calls`` calls after a warm-up,
  for ``bench/percall.py --instructions`` to count under callgrind (the difference between
  ``calls`` and 0 calls, so start-up and imports cancel out). Every variant runs its calls in
  sampled segments, so the segments' own cost cancels too. http.client talks to an in-memory
  socket there (client CPU only, no server whose work would be counted in another process).

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

from benchlib import calibrate, emit_result, rotate

PER_SEGMENT = 10

# case -> (module the integration targets, aws-xray-sdk patch name)
CASES = {
    "sqlite3": ("sqlite3", "sqlite3"),
    "psycopg": ("psycopg", "psycopg"),
    "http.client": ("http.client", "httplib"),
    "botocore": ("botocore.client", "botocore"),
    "botocore-wire": ("botocore.client", "botocore"),
}
# botocore cases: a call costs ~50 times a sqlite3 one, so they run fewer calls
BOTOCORE = ("botocore", "botocore-wire")


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
        from botocore.stub import Stubber

        client = _dynamodb_client()
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
    if case == "botocore-wire":
        import botocore

        client = _dynamodb_client()
        answer = _WireAnswer()
        client.meta.events.register("before-send", answer)
        get_item = client.get_item
        key = {"id": {"S": "1"}}

        def call():
            get_item(TableName="orders", Key=key)

        call.answer = answer
        return call, None, {"botocore": botocore.__version__}
    raise ValueError(case)


def _dynamodb_client():
    import botocore.session

    session = botocore.session.get_session()
    return session.create_client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing", endpoint_url="http://127.0.0.1:9",
    )


# what DynamoDB answers to get_item (JSON 1.0), byte for byte but for the ids and the date
_WIRE_BODY = b'{"Item":{"id":{"S":"1"},"name":{"S":"one"}}}'


class _WireBody:
    """The raw response botocore reads the body from (``AWSResponse.raw.stream()``)."""

    __slots__ = ("body",)

    def __init__(self, body):
        self.body = body

    def stream(self, **_kwargs):
        yield self.body


class _WireAnswer:
    """A ``before-send`` handler registered after the agent's: the request has been built,
    signed and handed to every ``before-send`` handler; it gets the canned HTTP response
    DynamoDB would send (status 200, ``x-amzn-RequestId``, ``x-amz-crc32`` checked by botocore)
    instead of going on the wire, which botocore then parses as usual. ``last`` keeps the last
    request sent (for the tests)."""

    def __init__(self):
        import zlib

        from botocore.awsrequest import AWSResponse
        from urllib3 import HTTPHeaderDict  # what botocore's URLLib3Session hands on

        self.response, self.header_dict = AWSResponse, HTTPHeaderDict
        self.headers = {
            "Server": "Server", "Date": "Sat, 05 Dec 2026 00:00:00 GMT",
            "Content-Type": "application/x-amz-json-1.0",
            "Content-Length": str(len(_WIRE_BODY)), "Connection": "keep-alive",
            "x-amzn-RequestId": "Q3VH2D4T9N1M8K7J6H5G4F3E2DVV4KQNSO5AEMVJF66Q9ASUAAJG",
            "x-amz-crc32": str(zlib.crc32(_WIRE_BODY)),
        }
        self.last = None

    def __call__(self, request, **_kwargs):
        self.last = request
        return self.response(request.url, 200, self.header_dict(self.headers),
                             _WireBody(_WIRE_BODY))


# -- tracers ------------------------------------------------------------------------------
def xray_setup(case):
    """The agent's integration for ``case`` (from its registry) and its tracer. Returns
    (patch, unpatch, begin, end, flush, names)."""
    import importlib

    from xray_autoinst import registry
    from xray_autoinst.core.tracer import get_tracer

    target = CASES[case][0]
    names = [name for name, integration in registry.INTEGRATIONS.items()
             if target in integration.targets]
    if not names:
        raise NotAvailable(f"no integration in xray_autoinst.registry targets {target!r}")
    modules = [importlib.import_module(registry.INTEGRATIONS[n].patcher) for n in names]
    tracer = get_tracer()

    def patch():
        for m in modules:
            m.patch()

    def unpatch():
        for m in modules:
            m.unpatch()

    def begin():
        return tracer.begin_segment("bench")

    def end(state):
        seg, token = state
        tracer.end_segment(seg, token)

    return patch, unpatch, begin, end, tracer.emitter.flush, names


def sdk_setup(case):
    from aws_xray_sdk.core import patch, xray_recorder

    patch([CASES[case][1]])
    xray_recorder.configure(service="bench", daemon_address=os.environ["BENCH_DAEMON"],
                            context_missing="LOG_ERROR", plugins=())

    def begin():
        return xray_recorder.begin_segment("bench", sampling=1)

    def end(_state):
        xray_recorder.end_segment()

    return begin, end


def _noop(*_a):
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


class Variant:
    """One way of making the call: its objects, its segments, how to enter its state."""

    def __init__(self, name, call, refill, begin=None, end=None, flush=_noop, enter=_noop):
        self.name, self.call, self.refill = name, call, refill
        self.begin, self.end, self.flush, self.enter = begin, end, flush, enter


def main(spec) -> dict:
    case, mode = spec["case"], spec["mode"]
    versions = {}
    integration = None
    __import__(CASES[case][0])
    if mode == "xray":
        patch, unpatch, begin, end, flush, integration = xray_setup(case)
        from xray_autoinst import __version__

        versions["xray-autoinst"] = __version__
        unpatch()
        call, refill, lib_versions = make_call(case, spec)
        variants = [Variant("bare", call, refill, enter=unpatch)]
        patch()
        call, refill, _ = make_call(case, spec)
        variants.append(Variant("xray", call, refill, begin, end, flush, enter=patch))
    elif mode == "sdk":
        begin, end = sdk_setup(case)
        from importlib import metadata

        versions["aws-xray-sdk"] = metadata.version("aws-xray-sdk")
        call, refill, lib_versions = make_call(case, spec)
        variants = [Variant("sdk", call, refill, begin, end)]
    else:
        raise ValueError(mode)
    versions.update(lib_versions)

    def batch(v, n_segments, per_segment=PER_SEGMENT):
        if v.refill is not None and per_segment:
            v.refill(n_segments * per_segment)
        run_batch(v.call, v.begin, v.end, n_segments, per_segment)

    sizes = {}
    for v in variants:
        v.enter()
        batch(v, 5)  # warm up (and check it works)
        v.flush()
        sizes[v.name] = calibrate(lambda n, v=v: (batch(v, n), v.flush()), spec["target_s"],
                                  start=2, limit=200_000)
    out = {v.name: {"wall": [], "thread": [], "cpu": [],
                    "calls_per_batch": sizes[v.name] * PER_SEGMENT, "per_segment": PER_SEGMENT}
           for v in variants}
    pt, tt, pc = time.process_time, time.thread_time, time.perf_counter
    for i in range(spec["batches"]):
        for v in rotate(variants, i):
            v.enter()
            segments = sizes[v.name]
            n_calls = segments * PER_SEGMENT
            figures = {}
            for kind in (("calls", "empty") if i % 2 == 0 else ("empty", "calls")):
                per = PER_SEGMENT if kind == "calls" else 0
                if v.refill is not None and per:
                    v.refill(n_calls)
                gc.collect()
                c0, t0, w0 = pt(), tt(), pc()
                if v.begin is not None or per:
                    run_batch(v.call, v.begin, v.end, segments, per)
                w1, t1 = pc(), tt()
                v.flush()
                c1 = pt()
                figures[kind] = (w1 - w0, t1 - t0, c1 - c0)
            for j, key in enumerate(("wall", "thread", "cpu")):
                out[v.name][key].append(
                    (figures["calls"][j] - figures["empty"][j]) / n_calls * 1e6)
    return {"case": case, "mode": mode, "variants": out, "versions": versions,
            "integration": integration, "python": sys.version.split()[0]}


# -- instruction counts ---------------------------------------------------------------------
_CANNED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


class _CannedSocket:
    """A connected socket that swallows the request and answers a fixed response."""

    def sendall(self, data):
        pass

    def makefile(self, mode):
        import io

        return io.BytesIO(_CANNED)

    def settimeout(self, timeout):
        pass

    def close(self):
        pass


class _CountingEmitter:
    """Drops finished segments, or encodes them into datagrams first (``encode``); ``last``
    keeps the last one's documents when ``keep`` (a check run, never counted)."""

    def __init__(self, encode, keep=False):
        self.encode, self.keep, self.last = encode, keep, None

    def submit(self, entity):
        if self.keep:
            from xray_autoinst.core import encoder

            self.last = encoder.documents(entity)
        if self.encode:
            from xray_autoinst.core import encoder

            for doc in encoder.documents(entity):
                encoder.datagram(doc)

    def send_document(self, doc):
        return True

    def flush(self, timeout=0):
        pass


def count(spec) -> dict | None:
    """The body callgrind counts (``count`` mode): nothing is printed. With ``check`` (the
    tests, never counted), what the calls did: the last segment's documents, and for
    botocore-wire the headers of the last request botocore sent."""
    from xray_autoinst import config
    from xray_autoinst.core import tracer as tracer_mod

    case, variant, calls = spec["case"], spec["variant"], spec["calls"]
    __import__(CASES[case][0])
    patch, unpatch, _b, _e, _f, _names = xray_setup(case)
    tracer = tracer_mod.install(config.from_env({
        "XRAY_SAMPLING": "local", "XRAY_SAMPLING_RULES": spec["rules"],
        "XRAY_SERVICE_NAME": "bench"}),
        emitter=_CountingEmitter(variant == "encoded", keep=spec.get("check", False)))
    (unpatch if variant == "bare" else patch)()
    if case == "http.client":  # in memory: the client's own work only
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", 9, timeout=10)
        conn.sock = _CannedSocket()

        def call():
            conn.request("GET", "/items/3?page=2")
            conn.getresponse().read()

        refill = None
    else:
        call, refill, _v = make_call(case, spec)
    # the same warm-up whatever ``calls`` is: first-call work (lazy imports, caches, plans,
    # the handlers' lookups) falls in both runs that are subtracted
    warm = 50 if case in BOTOCORE else 300
    for n in (warm, calls):
        if refill is not None:
            refill(n)
        for _ in range(n // PER_SEGMENT):
            seg, token = tracer.begin_segment("bench")
            for _ in range(PER_SEGMENT):
                call()
            tracer.end_segment(seg, token)
    if not spec.get("check"):
        return None
    out = {"documents": tracer.emitter.last}
    answer = getattr(call, "answer", None)
    if answer is not None and answer.last is not None:
        out["request_headers"] = {k: v if isinstance(v, str) else v.decode()
                                  for k, v in answer.last.headers.items()}
    return out


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    if spec["mode"] == "count":
        checked = count(spec)
        if checked is not None:
            emit_result(checked)
        sys.exit(0)
    try:
        result = main(spec)
    except NotAvailable as exc:
        result = {"case": spec["case"], "mode": spec["mode"], "not_available": str(exc)}
    emit_result(result)
