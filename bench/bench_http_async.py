"""Per-request overhead of the httpx and aiohttp client integrations, against the bare call and
side by side with aws-xray-sdk and OpenTelemetry on the same calls, in one run.

    .venv/bin/python bench/bench_http_async.py            # full run (a few minutes)
    .venv/bin/python bench/bench_http_async.py --quick    # well under a minute (no venv built)
    .venv/bin/python bench/bench_http_async.py --out .bench/http_async.json
    .venv/bin/python bench/bench_http_async.py --no-otel  # skip building OpenTelemetry's venv

Cases, each a GET with keep-alive to a loopback responder in another process that answers a
fixed response (no Python HTTP parsing on the server side, so the client dominates), cycling
over 20 URLs: httpx ``Client.get``, httpx ``AsyncClient.get``, aiohttp ``session.get`` + read.

Each (tracer, case) runs in a worker process of its own. Variants, interleaved in rounds
(rotated) so drift hits all alike, each figure the median over rounds of a batch's mean
per-call time, the overhead the median of per-round differences against bare:

- xray-autoinst (this interpreter): bare (unpatched), patched with no request open, traced
  (inside sampled segments of 10 calls each, the segment's own cost included);
- aws-xray-sdk 2.15 (this interpreter): a plain client (bare), an instrumented one with no
  segment open (context missing ignored), instrumented inside sampled segments -- httpx
  through ``aws_xray_sdk.ext.httpx``'s instrumented clients, aiohttp through its
  ``aws_xray_trace_config()`` (aws-xray-sdk does not patch sessions it did not create);
- OpenTelemetry (its own venv, ``.bench/venvs/opentelemetry-http-async``): a plain client,
  an instrumented one (``HTTPXClientInstrumentor.instrument_client``, aiohttp-client's
  ``create_trace_config``) under an always-off sampler, and under always-on inside a parent
  span of 10 calls, with the X-Ray propagator and id generator.

Emitters and exporters are null ones (ours encodes and sends on a background thread, off the
request path; aws-xray-sdk's null emitter skips even the encoding it would do on the request
path, so its figure is, if anything, flattering). Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

PER_SEGMENT = 10
CASES = ("httpx sync, in-memory", "httpx async, in-memory", "httpx sync", "httpx async",
         "aiohttp")
CANNED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


def _canned_backends():
    """httpcore network backends whose connections answer every request with CANNED: the
    httpx exchange with no network at all, so only client-side CPU is measured."""
    import httpcore

    class Stream(httpcore.NetworkStream):
        def __init__(self):
            self._pending = b""

        def write(self, buffer, timeout=None):
            self._pending = CANNED

        def read(self, max_bytes, timeout=None):
            data, self._pending = self._pending, b""
            return data

        def close(self):
            pass

        def get_extra_info(self, info):
            return None

    class AsyncStream(httpcore.AsyncNetworkStream):
        def __init__(self):
            self._pending = b""

        async def write(self, buffer, timeout=None):
            self._pending = CANNED

        async def read(self, max_bytes, timeout=None):
            data, self._pending = self._pending, b""
            return data

        async def aclose(self):
            pass

        def get_extra_info(self, info):
            return None

    class Backend(httpcore.NetworkBackend):
        def connect_tcp(self, host, port, timeout=None, local_address=None,
                        socket_options=None):
            return Stream()

    class AsyncBackend(httpcore.AsyncNetworkBackend):
        async def connect_tcp(self, host, port, timeout=None, local_address=None,
                              socket_options=None):
            return AsyncStream()

    return Backend, AsyncBackend
VARIANTS = ("bare", "patched, no trace", "traced")
PATHS = ["/items/%d?page=2" % i for i in range(20)]


# -- the worker: one tracer, one case --------------------------------------------------------
class _Setup:
    """What a tracer provides for a case: ``client(variant)`` and ``trace()`` (a context for a
    traced segment of PER_SEGMENT calls), plus ``switch(variant)`` before a batch."""

    def switch(self, variant):
        pass

    def on_loop(self):
        pass


def _xray_autoinst(case):
    from contextlib import contextmanager

    from xray_autoinst import config
    from xray_autoinst.contrib import http_aiohttp, http_httpx
    from xray_autoinst.core import tracer as tracer_mod

    class Null:
        def submit(self, entity):
            pass

        def send_document(self, doc):
            return True

        def flush(self, timeout=0):
            pass

    t = tracer_mod.install(config.from_env({
        "XRAY_SAMPLING_RULES": '{"version": 2, "default": {"fixed_target": 0, "rate": 1.0}}',
        "XRAY_SERVICE_NAME": "bench"}), emitter=Null())
    mod = http_aiohttp if case == "aiohttp" else http_httpx
    s = _Setup()

    def switch(variant):
        mod.patch() if variant != "bare" else mod.unpatch()

    @contextmanager
    def trace():
        seg, token = t.begin_segment("bench")
        try:
            yield
        finally:
            t.end_segment(seg, token)

    s.switch = switch
    s.trace = trace
    s.same_client = True  # one client for all variants: patching switches
    return s


def _aws_xray_sdk(case):
    from contextlib import contextmanager

    from aws_xray_sdk.core import xray_recorder

    class Null:
        def send_entity(self, entity):
            pass

        def set_daemon_address(self, address):
            pass

        @property
        def ip(self):
            return "127.0.0.1"

        @property
        def port(self):
            return 2000

    xray_recorder.configure(sampling=False, context_missing="IGNORE_ERROR", emitter=Null(),
                            service="bench")
    s = _Setup()

    def on_loop():
        """Async cases: the SDK's task-local context, bound to the running loop."""
        from aws_xray_sdk.core.async_context import AsyncContext

        xray_recorder.configure(context=AsyncContext(loop=asyncio.get_running_loop()))

    s.on_loop = on_loop

    @contextmanager
    def trace():
        xray_recorder.begin_segment("bench")
        try:
            yield
        finally:
            xray_recorder.end_segment()

    s.trace = trace
    s.same_client = False
    if case == "aiohttp":
        from aws_xray_sdk.ext.aiohttp.client import aws_xray_trace_config

        s.trace_configs = lambda: [aws_xray_trace_config()]
    else:
        import importlib

        sdk_httpx = importlib.import_module("aws_xray_sdk.ext.httpx.patch")
        s.sync_class, s.async_class = sdk_httpx._InstrumentedClient, \
            sdk_httpx._InstrumentedAsyncClient
    return s


def _opentelemetry(case):
    from contextlib import contextmanager

    from opentelemetry import propagate
    from opentelemetry import trace as ot
    from opentelemetry.propagators.aws import AwsXRayPropagator
    from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

    propagate.set_global_textmap(AwsXRayPropagator())
    providers = {}
    for key, sampler in (("traced", ALWAYS_ON), ("patched, no trace", ALWAYS_OFF)):
        p = TracerProvider(sampler=sampler, id_generator=AwsXRayIdGenerator())
        p.add_span_processor(SpanProcessor())  # does nothing with ended spans
        providers[key] = p
    ot.set_tracer_provider(providers["traced"])
    parent = providers["traced"].get_tracer("bench")
    s = _Setup()

    @contextmanager
    def trace():
        with parent.start_as_current_span("bench"):
            yield

    s.trace = trace
    s.same_client = False
    s.providers = providers
    if case == "aiohttp":
        from opentelemetry.instrumentation.aiohttp_client import create_trace_config

        s.trace_configs_for = lambda v: [create_trace_config(tracer_provider=providers[v])]
    else:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        s.instrument = lambda client, v: HTTPXClientInstrumentor.instrument_client(
            client, tracer_provider=providers[v])
    return s


SETUPS = {"xray-autoinst": _xray_autoinst, "aws-xray-sdk": _aws_xray_sdk,
          "opentelemetry": _opentelemetry}


def _clients(tracer, case, setup, base):
    """{variant: client or session} (async ones are created inside the loop by the caller)."""
    import httpx

    def make(variant):
        if case.startswith("httpx"):
            sync = "async" not in case
            transport = httpx.HTTPTransport() if sync else httpx.AsyncHTTPTransport()
            if "in-memory" in case:
                import httpcore

                backend, abackend = _canned_backends()
                transport._pool = (httpcore.ConnectionPool(network_backend=backend()) if sync
                                   else httpcore.AsyncConnectionPool(network_backend=abackend()))
            cls = httpx.Client if sync else httpx.AsyncClient
            if tracer == "aws-xray-sdk" and variant != "bare":
                cls = setup.sync_class if sync else setup.async_class
            c = cls(base_url=base, transport=transport)
        else:
            import aiohttp

            configs = []
            if tracer == "aws-xray-sdk" and variant != "bare":
                configs = setup.trace_configs()
            elif tracer == "opentelemetry" and variant != "bare":
                configs = setup.trace_configs_for(variant)
            c = aiohttp.ClientSession(base, trace_configs=configs or None)
        if tracer == "opentelemetry" and variant != "bare" and case != "aiohttp":
            setup.instrument(c, variant)
        return c

    if setup.same_client:
        one = make("bare")
        return {v: one for v in VARIANTS}
    return {v: make(v) for v in VARIANTS}


def worker(tracer, case, port, rounds, n):
    setup = SETUPS[tracer](case)
    base = f"http://127.0.0.1:{port}"
    samples = {v: [] for v in VARIANTS}
    is_async = "async" in case or case == "aiohttp"

    if not is_async:
        clients = _clients(tracer, case, setup, base)

        def run_batch(variant, count):
            client = clients[variant]
            get = client.get
            c0 = time.thread_time()
            t0 = time.perf_counter()
            if variant == "traced":
                for i in range(0, count, PER_SEGMENT):
                    with setup.trace():
                        for j in range(PER_SEGMENT):
                            get(PATHS[(i + j) % 20])
            else:
                for i in range(count):
                    get(PATHS[i % 20])
            return (time.perf_counter() - t0) / count, (time.thread_time() - c0) / count

        _rounds(setup, run_batch, samples, rounds, n)
        return _summary(samples)

    async def main():
        setup.on_loop()
        clients = _clients(tracer, case, setup, base)

        async def call(client, path):
            if case == "aiohttp":
                async with client.get(path) as r:
                    await r.read()
            else:
                await client.get(path)

        async def run_batch(variant, count):
            client = clients[variant]
            c0 = time.thread_time()
            t0 = time.perf_counter()
            if variant == "traced":
                for i in range(0, count, PER_SEGMENT):
                    with setup.trace():
                        for j in range(PER_SEGMENT):
                            await call(client, PATHS[(i + j) % 20])
            else:
                for i in range(count):
                    await call(client, PATHS[i % 20])
            return (time.perf_counter() - t0) / count, (time.thread_time() - c0) / count

        await _arounds(setup, run_batch, samples, rounds, n)
        for c in set(clients.values()):
            await (c.close() if case == "aiohttp" else c.aclose())

    asyncio.run(main())
    return _summary(samples)


def count_child(tracer, case, variant, port, n):
    """Run ``n`` calls of one variant after a warm-up: the body callgrind counts."""
    setup = SETUPS[tracer](case)
    base = f"http://127.0.0.1:{port}"
    setup.switch(variant)

    def plan(count):
        if variant == "traced":
            return [(True, i) for i in range(0, count, PER_SEGMENT)]
        return [(False, i) for i in range(count)]

    if "async" not in case:
        client = _clients(tracer, case, setup, base)[variant]
        for count in (50, n):
            for traced, i in plan(count):
                if traced:
                    with setup.trace():
                        for j in range(PER_SEGMENT):
                            client.get(PATHS[(i + j) % 20])
                else:
                    client.get(PATHS[i % 20])
        return

    async def main():
        setup.on_loop()
        client = _clients(tracer, case, setup, base)[variant]
        for count in (50, n):
            for traced, i in plan(count):
                if traced:
                    with setup.trace():
                        for j in range(PER_SEGMENT):
                            await client.get(PATHS[(i + j) % 20])
                else:
                    await client.get(PATHS[i % 20])

    asyncio.run(main())


def instructions(pythons, n=300, log=print, cases=("httpx sync, in-memory",)):
    """Instructions per call (callgrind, PYTHONHASHSEED=0) for the in-memory httpx case: runs
    with ``n`` and 0 timed calls, the difference divided by ``n``. Deterministic: unaffected by
    other load on the machine. None without valgrind."""
    import re
    import shutil

    if not shutil.which("valgrind"):
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XRAY_", "AWS_XRAY_"))}
    env["PYTHONHASHSEED"] = "0"

    def count(python, tracer, case, variant, calls):
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", python,
             os.path.abspath(__file__), "--_count", tracer, case, variant, "0", str(calls)],
            capture_output=True, text=True, env=env, timeout=1800, cwd=ROOT)
        found = re.search(r"Collected : (\d+)", proc.stderr)
        if proc.returncode != 0 or not found:
            raise RuntimeError(proc.stderr[-2000:])
        return int(found.group(1))

    rows = []
    for case in cases:
        for tracer, python in pythons.items():
            per = {v: (count(python, tracer, case, v, n) - count(python, tracer, case, v, 0))
                   / n for v in VARIANTS}
            rows.append({"case": case, "tracer": tracer, **per})
            log(f"  counted {tracer} / {case}")
    return rows


def _order(r):
    return VARIANTS[r % 3:] + VARIANTS[: r % 3]


def _rounds(setup, run_batch, samples, rounds, n):
    for v in VARIANTS:  # warm every path
        setup.switch(v)
        run_batch(v, 50)
    for r in range(rounds):
        for v in _order(r):
            setup.switch(v)
            run_batch(v, 20)  # (re)patching resets specialised code: untimed calls first
            samples[v].append(run_batch(v, n))


async def _arounds(setup, run_batch, samples, rounds, n):
    for v in VARIANTS:
        setup.switch(v)
        await run_batch(v, 50)
    for r in range(rounds):
        for v in _order(r):
            setup.switch(v)
            await run_batch(v, 20)
            samples[v].append(await run_batch(v, n))


def _summary(samples):
    """{variant: {wall_us, cpu_us, wall_overhead_us, cpu_overhead_us}}"""
    bare = samples["bare"]
    out = {}
    for v in VARIANTS:
        mine = samples[v]
        entry = out[v] = {}
        for i, clock in enumerate(("wall", "cpu")):
            entry[clock + "_us"] = statistics.median(m[i] for m in mine) * 1e6
            if v != "bare":
                entry[clock + "_overhead_us"] = statistics.median(
                    [(a[i] - b[i]) * 1e6 for a, b in zip(mine, bare, strict=True)])
    return out


def _versions():
    import importlib.metadata as md

    found = {}
    for dist in ("httpx", "httpcore", "aiohttp", "aws-xray-sdk", "opentelemetry-sdk",
                 "opentelemetry-instrumentation-httpx",
                 "opentelemetry-instrumentation-aiohttp-client"):
        try:
            found[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return found


# -- the driver --------------------------------------------------------------------------------
def _run_worker(python, tracer, case, port, rounds, n):
    from benchlib import parse_result

    proc = subprocess.run(
        [python, os.path.abspath(__file__), "--_worker", tracer, case, str(port), str(rounds),
         str(n)], capture_output=True, text=True, timeout=900, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("XRAY_", "AWS_XRAY_"))})
    result = parse_result(proc.stdout)
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"{tracer} / {case} failed:\n{proc.stderr[-3000:]}")
    return result


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_count"]:
        count_child(argv[1], argv[2], argv[3], int(argv[4]), int(argv[5]))
        return 0
    if argv[:1] == ["--_worker"]:
        from benchlib import emit_result

        tracer, case, port, rounds, n = argv[1], argv[2], int(argv[3]), int(argv[4]), \
            int(argv[5])
        emit_result({"result": worker(tracer, case, port, rounds, n), "versions": _versions()})
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smoke run, well under a minute")
    p.add_argument("--out", help="also write the results as JSON here")
    p.add_argument("--no-otel", action="store_true", help="skip OpenTelemetry (no venv built)")
    p.add_argument("--instructions", action="store_true",
                   help="also count instructions per in-memory httpx call (callgrind; minutes)")
    args = p.parse_args(argv)
    rounds, n = (5, 100) if args.quick else (21, 500)

    from bench_outbound_http import start_responder

    pythons = {"xray-autoinst": sys.executable}
    missing = {}
    try:
        import aws_xray_sdk  # noqa: F401

        pythons["aws-xray-sdk"] = sys.executable
    except ImportError:
        missing["aws-xray-sdk"] = "not installed in this interpreter"
    otel_stamp = os.path.join(ROOT, ".bench", "venvs", "opentelemetry-http-async",
                              ".bench-stamp.json")
    if args.no_otel:
        missing["opentelemetry"] = "skipped (--no-otel)"
    elif args.quick and not os.path.exists(otel_stamp):
        missing["opentelemetry"] = "skipped: --quick builds no virtualenv (a full run does)"
    else:
        try:
            import venvs

            pythons["opentelemetry"] = venvs.ensure(
                "opentelemetry-http-async", log=lambda m: print(m, file=sys.stderr)).python
        except Exception as exc:  # noqa: BLE001 - a peer that cannot be installed is reported
            missing["opentelemetry"] = f"its venv could not be built: {exc}"[:300]

    responder, port = start_responder('{"ok": true}')
    results, versions = {}, {}
    try:
        for case in CASES:
            for tracer, python in pythons.items():
                got = _run_worker(python, tracer, case, port, rounds, n)
                results.setdefault(case, {})[tracer] = got["result"]
                versions[tracer] = got["versions"]
                print(f"  measured {tracer} / {case}", file=sys.stderr, flush=True)
    finally:
        responder.terminate()
        responder.wait(10)

    print(f"httpx and aiohttp clients, per request (keep-alive, loopback): medians of {rounds} "
          f"interleaved rounds of {n} calls, overhead = median of per-round differences "
          f"against the same tracer's bare run. Python {sys.version.split()[0]}"
          f"{', --quick' if args.quick else ''}.\n")
    head = ("case", "tracer", "clock", "bare µs", "patched, no trace µs", "overhead µs",
            "traced µs", "overhead µs", "traced/bare", "traced overhead vs ours")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case, by_tracer in results.items():
        for clock in ("cpu", "wall"):
            ours = by_tracer.get("xray-autoinst", {}).get("traced", {}).get(
                clock + "_overhead_us")
            for tracer, r in by_tracer.items():
                b, u, t = r["bare"], r["patched, no trace"], r["traced"]
                if tracer == "xray-autoinst":
                    vs = "1"
                elif ours and ours > 0:
                    vs = f"{t[clock + '_overhead_us'] / ours:.1f}x"
                else:
                    vs = "-"
                lines.append(
                    f"| {case} | {tracer} | {'thread CPU' if clock == 'cpu' else 'wall'} | "
                    f"{b[clock + '_us']:.1f} | {u[clock + '_us']:.1f} | "
                    f"{u[clock + '_overhead_us']:+.2f} | {t[clock + '_us']:.1f} | "
                    f"{t[clock + '_overhead_us']:+.2f} | "
                    f"{t[clock + '_us'] / b[clock + '_us']:.3f} | {vs} |")
    print("\n".join(lines))
    counted = instructions(pythons, log=lambda m: print(m, file=sys.stderr)) \
        if args.instructions else None
    if counted:
        print("\nInstructions per call (callgrind; deterministic, so unaffected by other load "
              "on the machine; httpx on an in-memory network backend):\n")
        print("| case | tracer | bare | patched, no trace | overhead | traced | overhead | "
              "traced overhead vs ours |")
        print("|---|---|---|---|---|---|---|---|")
        ours = {r["case"]: r["traced"] - r["bare"] for r in counted
                if r["tracer"] == "xray-autoinst"}
        for r in counted:
            b, u, t = r["bare"], r["patched, no trace"], r["traced"]
            vs = f"{(t - b) / ours[r['case']]:.1f}x" if ours.get(r["case"], 0) > 0 else "-"
            print(f"| {r['case']} | {r['tracer']} | {b:,.0f} | {u:,.0f} | {u - b:+,.0f} | "
                  f"{t:,.0f} | {t - b:+,.0f} | {vs} |")
    for tracer, why in missing.items():
        print(f"\n{tracer}: not measured, {why}.")
    print("\nVersions: " + json.dumps(versions))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"quick": args.quick, "rounds": rounds, "calls_per_batch": n,
                       "python": sys.version.split()[0], "results": results,
                       "versions": versions, "not_measured": missing,
                       "instructions": counted}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
