"""Per-request benchmark worker for ASGI: a trivial ASGI 3 application called directly (no
server, no socket) in a loop, bare and behind each tracer's ASGI middleware, batch by batch
with the variants interleaved. Runs inside the virtualenv of the tracer it measures.

    python bench/asgi_worker.py '{"variants": ["bare", "xray-sampled"], "batches": 10, ...}'

A batch is one coroutine awaiting the application ``n`` times, one request after the other, run
on an asyncio event loop (the loop's own cost is paid once per batch, not per request). Each
request gets a fresh scope, as a server builds one per request. Variants named ``task-...`` run
each request in a task of its own instead, as servers do (a task has its own context). The
figures per request are those of ``wsgi_worker.py``: ``wall``, ``thread`` (request-thread CPU)
and ``cpu`` (process CPU of every thread, plus flushing what the tracer queued).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time

from benchlib import RULES_SAMPLED, RULES_UNSAMPLED, calibrate, emit_result, rotate

SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 50000),
    "scheme": "http",
    "method": "GET",
    "root_path": "",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
    "headers": [(b"host", b"localhost:8000"), (b"user-agent", b"bench/1.0"),
                (b"accept", b"*/*")],
    "state": {},
}
START = {"type": "http.response.start", "status": 200,
         "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]}
BODY = {"type": "http.response.body", "body": b"ok", "more_body": False}
REQUEST = {"type": "http.request", "body": b"", "more_body": False}


async def bare_app(scope, receive, send):
    await receive()
    await send(dict(START))
    await send(dict(BODY))


async def _receive():
    return REQUEST


async def _send(message):
    return None


def serve(app, n, loop):
    """What an ASGI server does per request, minus the socket and the task."""

    async def batch():
        template = SCOPE
        receive, send = _receive, _send
        for _ in range(n):
            await app(template.copy(), receive, send)

    loop.run_until_complete(batch())


def serve_tasks(app, n, loop):
    """The same, each request in a task of its own (its own context), as servers run them."""

    async def batch():
        template = SCOPE
        receive, send = _receive, _send
        task = loop.create_task
        for _ in range(n):
            await task(app(template.copy(), receive, send))

    loop.run_until_complete(batch())


# -- variants ---------------------------------------------------------------------------------
# Each builder returns (asgi_app, flush), as in wsgi_worker.py.
VERSIONS = {}


def _xray_tracers(daemon):
    cache = _xray_tracers.__dict__
    if "sampled" not in cache:
        from xray_autoinst import __version__, config
        from xray_autoinst.core import tracer as tracer_mod

        VERSIONS["xray-autoinst"] = __version__
        base = {"AWS_XRAY_DAEMON_ADDRESS": daemon, "XRAY_SERVICE_NAME": "bench",
                "XRAY_SAMPLING": "local"}
        cache["sampled"] = tracer_mod.install(
            config.from_env(dict(base, XRAY_SAMPLING_RULES=RULES_SAMPLED)))
        cache["unsampled"] = tracer_mod.Tracer(
            config.from_env(dict(base, XRAY_SAMPLING_RULES=RULES_UNSAMPLED)))
    return cache["sampled"], cache["unsampled"]


def _xray(app, daemon, sampled):
    from xray_autoinst.asgi import XRayMiddleware

    s, u = _xray_tracers(daemon)
    tracer = s if sampled else u
    return XRayMiddleware(app, tracer=tracer), tracer.emitter.flush


def _otel_providers():
    cache = _otel_providers.__dict__
    if "sampled" not in cache:
        from opentelemetry import propagate, trace
        from opentelemetry.propagators.aws import AwsXRayPropagator
        from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

        class DroppingExporter(SpanExporter):
            def export(self, spans):
                return SpanExportResult.SUCCESS

            def shutdown(self):
                pass

        VERSIONS.update({d: _dist(d) for d in (
            "opentelemetry-sdk", "opentelemetry-instrumentation-asgi",
            "opentelemetry-sdk-extension-aws", "opentelemetry-propagator-aws-xray")})
        propagate.set_global_textmap(AwsXRayPropagator())
        providers = {}
        for key, sampler in (("sampled", ALWAYS_ON), ("unsampled", ALWAYS_OFF)):
            provider = TracerProvider(sampler=sampler, id_generator=AwsXRayIdGenerator())
            provider.add_span_processor(BatchSpanProcessor(DroppingExporter()))
            providers[key] = provider
        trace.set_tracer_provider(providers["sampled"])
        cache.update(providers)
    return cache["sampled"], cache["unsampled"]


def _otel(app, daemon, sampled):
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    s, u = _otel_providers()
    provider = s if sampled else u
    return OpenTelemetryMiddleware(app, tracer_provider=provider), provider.force_flush


def _ddtrace(app, daemon, sampled):
    import ddtrace

    VERSIONS["ddtrace"] = ddtrace.__version__
    try:
        from ddtrace.contrib.asgi import TraceMiddleware
    except ImportError:  # newer releases keep it only here
        from ddtrace.contrib.internal.asgi.middleware import TraceMiddleware
    return TraceMiddleware(app), _noop


def _noop():
    return None


def _dist(name):
    try:
        from importlib import metadata

        return metadata.version(name)
    except Exception:  # noqa: BLE001
        return None


BUILDERS = {"xray": _xray, "otel": _otel, "ddtrace": _ddtrace}


def build(variant, daemon):
    """``[task-]bare`` or ``[task-]<tracer>[-sampled|-unsampled]`` (``task-``: a task per
    request)."""
    variant = variant.removeprefix("task-")
    if variant == "bare":
        return bare_app, _noop
    tracer, _, mode = variant.partition("-")
    return BUILDERS[tracer](bare_app, daemon, mode != "unsampled")


class _Recorder:
    """Checks once that a variant answers as the bare application does."""

    def __init__(self):
        self.messages = []

    async def send(self, message):
        self.messages.append(message)


def check(app, loop):
    rec = _Recorder()
    loop.run_until_complete(app(SCOPE.copy(), _receive, rec.send))
    kinds = [m["type"] for m in rec.messages]
    if kinds != ["http.response.start", "http.response.body"] or \
            rec.messages[1].get("body") != b"ok":
        raise RuntimeError(f"unexpected response: {rec.messages!r}")


def main(spec) -> dict:
    variants = spec["variants"]
    batches = spec["batches"]
    target = spec["target_s"]
    daemon = spec["daemon"]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    apps = {v: build(v, daemon) for v in variants}
    runner = {v: serve_tasks if v.startswith("task-") else serve for v in variants}
    sizes = {}
    for v, (app, flush) in apps.items():
        check(app, loop)
        runner[v](app, 50, loop)
        flush()
        sizes[v] = calibrate(lambda n, app=app, v=v: runner[v](app, n, loop), target)
        flush()
    out = {v: {"wall": [], "thread": [], "cpu": [], "batch": sizes[v]} for v in variants}
    pt, tt, pc = time.process_time, time.thread_time, time.perf_counter
    for i in range(batches):
        for v in rotate(variants, i):
            app, flush = apps[v]
            n = sizes[v]
            gc.collect()
            c0, t0, w0 = pt(), tt(), pc()
            runner[v](app, n, loop)
            w1, t1 = pc(), tt()
            flush()
            c1 = pt()
            rec = out[v]
            rec["wall"].append((w1 - w0) / n * 1e6)
            rec["thread"].append((t1 - t0) / n * 1e6)
            rec["cpu"].append((c1 - c0) / n * 1e6)
    loop.close()
    return {"variants": out, "versions": VERSIONS, "python": sys.version.split()[0],
            "pid": os.getpid()}


if __name__ == "__main__":
    emit_result(main(json.loads(sys.argv[1])))
