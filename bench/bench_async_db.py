"""Per-call overhead of the async integrations: asyncpg and aiobotocore, bare, patched but
untraced, and traced, beside the alternatives installed in the same environment.

    .venv/bin/python bench/bench_async_db.py [--quick] [--out results.json]

In-process, on one asyncio event loop. Each round makes K calls (inside request segments of
10 calls for the traced variants, so a request's segment cost is shared as it would be), and
rounds of every variant are interleaved (the starting variant rotated each round). The time
is the calling thread's CPU time (``time.thread_time``): the agent's cost is CPU on the
loop's thread, and CPU time is far less disturbed than wall time on a busy machine; it leaves
out PostgreSQL's own work (another process) and the local AWS-shaped endpoint's (another
thread). Variants:

  bare              the library unpatched, no segment
  bare-in-segment   unpatched inside our request segments (what the traced rounds compare to)
  ours-untraced     patched, outside any request (XRAY_CONTEXT_MISSING=ignore)
  ours-traced       patched, in sampled segments: one subsegment per call, handed to an
                    emitter that drops it (its encoding happens on the emitter's thread)
  otel-traced       opentelemetry-instrumentation-asyncpg with the SDK, a parent span per 10
                    calls, spans batched to an exporter that drops them
  otel-untraced     the same with no parent span (OpenTelemetry then makes root spans)
  xraysdk-traced    aws-xray-sdk's aiobotocore patch, a segment per 10 calls, its emitter
                    serializing each segment on the calling thread (what its UDP emitter does)
                    and dropping it

Every variant's wrappers are installed by swapping the classes' attributes between rounds
(the state each patcher leaves is captured once), so bare and patched rounds alternate with
no reload. Alternatives that are not installed are reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from xray_autoinst import config as _config  # noqa: E402
from xray_autoinst.core import tracer as _tracer_mod  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/test"
PER_SEGMENT = 10
CLOCK = time.thread_time


class NullEmitter:
    def __init__(self):
        self.count = 0

    def submit(self, entity):
        self.count += 1

    def send_document(self, doc):
        return True

    def flush(self, timeout=0):
        pass


def our_tracer():
    rules = '{"version": 2, "default": {"fixed_target": 0, "rate": 1.0}}'
    cfg = _config.from_env({"XRAY_SAMPLING_RULES": rules, "XRAY_SAMPLING": "local"})
    return _tracer_mod.install(cfg, NullEmitter())


# -- swapping installed wrappers ------------------------------------------------------------------
def capture(classes):
    return {(cls, name): value for cls in classes for name, value in list(vars(cls).items())
            if not name.startswith("__") or name in ("__anext__", "__aiter__")}


def install(state):
    for (cls, name), value in state.items():
        if cls.__dict__.get(name) is not value:
            setattr(cls, name, value)


# -- the libraries ---------------------------------------------------------------------------------
class AsyncpgCase:
    name = "asyncpg conn.fetchval (local PostgreSQL)"

    async def setup(self):
        import asyncpg
        from asyncpg import connection, cursor, prepared_stmt, transaction

        from xray_autoinst.contrib import db_asyncpg

        classes = (connection.Connection, prepared_stmt.PreparedStatement,
                   transaction.Transaction, cursor.Cursor, cursor.CursorIterator)
        self.states = {"bare": capture(classes)}
        db_asyncpg.patch()
        self.states["ours"] = capture(classes)
        db_asyncpg.unpatch()
        self.skipped = []
        self.otel = None
        try:
            from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import (
                BatchSpanProcessor,
                SpanExporter,
                SpanExportResult,
            )

            class Drop(SpanExporter):
                def export(self, spans):
                    return SpanExportResult.SUCCESS

            provider = TracerProvider()
            provider.add_span_processor(BatchSpanProcessor(Drop()))
            inst = AsyncPGInstrumentor()
            inst.instrument(tracer_provider=provider)
            self.states["otel"] = capture(classes)
            inst.uninstrument()
            install(self.states["bare"])
            self.otel = provider.get_tracer("bench")
            self.otel_instrumentor = inst
        except ImportError as exc:
            self.skipped.append("opentelemetry-instrumentation-asyncpg: %s" % exc)
        self.conn = await asyncpg.connect(PG)

    def variants(self):
        out = ["bare", "bare-in-segment", "ours-untraced", "ours-traced"]
        if self.otel is not None:
            out += ["otel-untraced", "otel-traced"]
        return out

    async def call(self):
        await self.conn.fetchval("SELECT $1::int", 1)

    def isolated(self):
        """kind -> an async callable running only that instrumentation's wrapper around a
        stub of the driver call (no I/O)."""
        from xray_autoinst.contrib import db_asyncpg

        conn, args = self.conn, ("SELECT $1::int", 1)

        async def stub(*a, **k):
            return 1

        out = {"bare": lambda: stub(*args),
               "ours": lambda: db_asyncpg._traced_query(stub, conn, args, {})}
        if self.otel is not None:
            inst = self.otel_instrumentor
            out["otel"] = lambda: inst._do_execute(stub, conn, args, {})
        return out

    async def close(self):
        install(self.states["bare"])
        await self.conn.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("x-amzn-RequestId", "bench")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class AiobotocoreCase:
    name = "aiobotocore dynamodb.get_item (local AWS-shaped endpoint)"

    async def setup(self):
        from aiobotocore import client, endpoint
        from aiobotocore.session import get_session

        from xray_autoinst.contrib import aws_aiobotocore

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        classes = (client.AioBaseClient, endpoint.AioEndpoint)
        self.states = {"bare": capture(classes)}
        aws_aiobotocore.patch()
        self.states["ours"] = capture(classes)
        aws_aiobotocore.unpatch()
        self.states["ours"][(client.AioBaseClient, "_xray_autoinst_events")] = False
        self.states["bare"][(client.AioBaseClient, "_xray_autoinst_events")] = False
        self.skipped = []
        self.xray = None
        try:
            import logging

            import aiobotocore.client as aio_client_mod
            from aws_xray_sdk.core import xray_recorder
            from aws_xray_sdk.core.async_context import AsyncContext
            from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter
            from aws_xray_sdk.ext.aiobotocore.patch import patch as sdk_patch

            # its recorder warns on every call outside a segment, whatever context_missing says
            logging.getLogger("aws_xray_sdk").setLevel(logging.CRITICAL)

            class Serialize(UDPEmitter):
                def send_entity(self, entity):
                    entity.serialize()

            xray_recorder.configure(service="bench", sampling=False,
                                    context=AsyncContext(loop=asyncio.get_running_loop()),
                                    emitter=Serialize(), context_missing="IGNORE_ERROR",
                                    plugins=())
            sdk_patch()
            self.states["xraysdk"] = capture(classes)
            install(self.states["bare"])
            del aio_client_mod._xray_enabled
            self.xray = xray_recorder
        except ImportError as exc:
            self.skipped.append("aws-xray-sdk: %s" % exc)
        self.ctx = get_session().create_client(
            "dynamodb", endpoint_url="http://127.0.0.1:%d" % self.server.server_port,
            region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
        self.ddb = await self.ctx.__aenter__()

    def variants(self):
        out = ["bare", "bare-in-segment", "ours-untraced", "ours-traced"]
        if self.xray is not None:
            out += ["xraysdk-untraced", "xraysdk-traced"]
        return out

    async def call(self):
        await self.ddb.get_item(TableName="t", Key={"id": {"S": "k"}})

    def isolated(self):
        """kind -> an async callable: that instrumentation's wrapper around a stub of
        ``_make_api_call`` that runs its header injection once, as one attempt would."""
        from xray_autoinst.contrib import aws_aiobotocore, aws_botocore

        ddb = self.ddb
        args = ("GetItem", {"TableName": "t", "Key": {"id": {"S": "k"}}})
        response = {"ResponseMetadata": {"RequestId": "r", "HTTPStatusCode": 200,
                                          "HTTPHeaders": {"content-length": "2"},
                                          "RetryAttempts": 0}}

        class Request:
            url = "http://127.0.0.1/"

            def __init__(self):
                self.headers = {}

        async def bare(*a, **k):
            return response

        async def ours_stub(*a, **k):
            aws_botocore._inject_header(request=Request())
            return response

        aws_botocore._state["aio"] = True
        out = {"bare": lambda: bare(*args),
               "ours": lambda: aws_aiobotocore._traced_make_api_call(ours_stub, ddb, args, {})}
        if self.xray is not None:
            from aws_xray_sdk.ext.aiobotocore.patch import _xray_traced_aiobotocore
            from aws_xray_sdk.ext.boto_utils import inject_header

            async def sdk_stub(*a, **k):
                inject_header(lambda r: r, None, (Request(),), {})
                return response

            out["xraysdk"] = lambda: _xray_traced_aiobotocore(sdk_stub, ddb, args, {})
        return out

    async def close(self):
        install(self.states["bare"])
        await self.ctx.__aexit__(None, None, None)
        self.server.shutdown()


# -- measuring ------------------------------------------------------------------------------------
async def round_time(case, variant, k, tracer):
    kind, _, mode = variant.partition("-")
    state = {"bare": "bare", "ours": "ours", "otel": "otel", "xraysdk": "xraysdk"}[kind]
    install(case.states[state])
    in_segment = mode in ("traced", "in-segment")
    call = case.call
    t0 = CLOCK()
    for _ in range(k // PER_SEGMENT):
        if not in_segment:
            for _ in range(PER_SEGMENT):
                await call()
        elif kind in ("bare", "ours"):
            seg, token = tracer.begin_segment("bench")
            for _ in range(PER_SEGMENT):
                await call()
            tracer.end_segment(seg, token)
        elif kind == "otel":
            with case.otel.start_as_current_span("bench"):
                for _ in range(PER_SEGMENT):
                    await call()
        else:  # xraysdk
            case.xray.begin_segment("bench")
            for _ in range(PER_SEGMENT):
                await call()
            case.xray.end_segment()
    return (CLOCK() - t0) / k


async def isolated_round(case, calls, variant, k, tracer):
    kind, _, mode = variant.partition("-")
    call = calls[kind]
    in_segment = mode in ("traced", "in-segment")
    t0 = CLOCK()
    for _ in range(k // PER_SEGMENT):
        if not in_segment:
            for _ in range(PER_SEGMENT):
                await call()
        elif kind in ("bare", "ours"):
            seg, token = tracer.begin_segment("bench")
            for _ in range(PER_SEGMENT):
                await call()
            tracer.end_segment(seg, token)
        elif kind == "otel":
            with case.otel.start_as_current_span("bench"):
                for _ in range(PER_SEGMENT):
                    await call()
        else:
            case.xray.begin_segment("bench")
            for _ in range(PER_SEGMENT):
                await call()
            case.xray.end_segment()
    return (CLOCK() - t0) / k


def summarize(times, variants):
    out = {}
    for v in variants:
        base = "bare-in-segment" if v.endswith("-traced") else "bare"
        diffs = [a - b for a, b in zip(times[v], times[base], strict=True)]
        out[v] = {"median_us": statistics.median(times[v]) * 1e6,
                  "overhead_us": statistics.median(diffs) * 1e6 if v != base else 0.0,
                  "against": base}
    return out


async def bench_case(case, rounds, k):
    await case.setup()
    tracer = our_tracer()
    variants = case.variants()
    times = {v: [] for v in variants}
    warm = 2
    try:
        for i in range(rounds + warm):
            for v in variants[i % len(variants):] + variants[:i % len(variants)]:
                dt = await round_time(case, v, k, tracer)
                if i >= warm:
                    times[v].append(dt)
        install(case.states["bare"])
        calls = case.isolated()
        iso = {v: [] for v in variants}
        for i in range(rounds * 3 + warm):
            for v in variants[i % len(variants):] + variants[:i % len(variants)]:
                dt = await isolated_round(case, calls, v, k * 10, tracer)
                if i >= warm:
                    iso[v].append(dt)
    finally:
        await case.close()
    return {"name": case.name, "rounds": rounds, "calls_per_round": k,
            "skipped": case.skipped, "variants": summarize(times, variants),
            "isolated": {"rounds": rounds * 3, "calls_per_round": k * 10,
                         "variants": summarize(iso, variants)}}


def postgres_up():
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def table(title, v, rounds, k, skipped=()):
    lines = ["### %s (%d rounds x %d calls, CPU us per call)" % (title, rounds, k), "",
             "| variant | median | overhead | ratio vs bare | overhead vs ours |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, r in v.items():
        bare = v[r["against"]]["median_us"]
        ours_key = "ours-traced" if name.endswith("-traced") else "ours-untraced"
        ours = v.get(ours_key, {}).get("overhead_us")
        rel = ("%.1fx" % (r["overhead_us"] / ours)) if ours and ours > 0 and name.split(
            "-")[0] not in ("bare", "ours") else ""
        lines.append("| %s | %.2f | %+.2f | %.3f | %s |" % (
            name, r["median_us"], r["overhead_us"], r["median_us"] / bare, rel))
    for s in skipped:
        lines.append("\nskipped: " + s)
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    ap.add_argument("--out", help="write the results as JSON to this path")
    args = ap.parse_args(argv)
    rounds, k = (3, 50) if args.quick else (9, 100)
    cases, skipped = [], []
    if postgres_up():
        cases.append(AsyncpgCase())
    else:
        skipped.append("asyncpg: no PostgreSQL on 127.0.0.1:5432")
    cases.append(AiobotocoreCase())
    results = []
    for case in cases:
        try:
            results.append(asyncio.run(bench_case(case, rounds, k)))
        except ImportError as exc:
            skipped.append("%s: %s" % (case.name, exc))
    print("## Async database and AWS clients: per-call overhead (medians, the loop thread's "
          "CPU time)\n")
    for r in results:
        print(table(r["name"], r["variants"], r["rounds"], r["calls_per_round"],
                    r["skipped"]) + "\n")
        iso = r["isolated"]
        print(table(r["name"].split(" (")[0] + ": the wrappers alone, around a stub (no I/O)",
                    iso["variants"], iso["rounds"], iso["calls_per_round"]) + "\n")
    for s in skipped:
        print("skipped:", s)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"clock": "thread_time", "results": results, "skipped": skipped}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
