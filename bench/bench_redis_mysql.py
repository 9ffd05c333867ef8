"""Per-call overhead of the Redis and MySQL integrations, beside aws-xray-sdk's PyMySQL patch and
OpenTelemetry's redis and PyMySQL instrumentations, in one run.

    .venv/bin/python bench/bench_redis_mysql.py [--quick] [--out PATH] [--clock cpu|wall]

Cases: a Redis ``GET`` (redis-py, the local Redis on 127.0.0.1:6379) and a PyMySQL
``cursor.execute("SELECT 1")`` + ``fetchall()`` (the local MariaDB on 127.0.0.1:3306). Each
tracer runs in a process of its own (``--worker``). In it, rounds of K calls alternate, rotated,
between the variants, each measured bare (not instrumented) and instrumented back to back:

  sampled        in sampled requests of 10 calls; the finished segment is encoded to JSON on
                 the calling thread (this agent and aws-xray-sdk; the worst case)
  sampled-path   the same with the emitter dropping the segment: the cost on the request's path
  unsampled      in unsampled requests
  outside        no request at all: patched but untraced

The overhead is the median of the paired differences (instrumented - bare) of interleaved
rounds, in microseconds of the calling thread's CPU time by default (far less disturbed by
other processes than wall time; it also leaves the server's work out). The round trip itself is
the bare figure. Peers: aws-xray-sdk (has no redis patch) runs in this interpreter when it is
installed; OpenTelemetry runs in ``.bench/venvs/otel-redis-mysql`` (built on first use, not in
``--quick``). Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULT = "BENCH-REDIS-MYSQL "
PER_SEGMENT = 10
VARIANTS = ("sampled", "sampled-path", "unsampled", "outside")
CLOCK = time.thread_time
OTEL_VENV = os.path.join(ROOT, ".bench", "venvs", "otel-redis-mysql")
OTEL_PACKAGES = ["opentelemetry-sdk", "opentelemetry-instrumentation-redis",
                 "opentelemetry-instrumentation-pymysql", "redis", "PyMySQL"]
TRACED_TARGET = 5.0  # microseconds per call (issue 11)
UNTRACED_TARGET = 0.5


def service_up(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# -- the calls ----------------------------------------------------------------------------------
def redis_client():
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    client.set("bench-key", "v" * 16)
    return client


def redis_call(client):
    get = client.get

    def run():
        get("bench-key")

    return run


def mysql_conn():
    import pymysql

    return pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test",
                           autocommit=True)


def mysql_call(conn):
    cur = conn.cursor()

    def run():
        cur.execute("SELECT 1")
        cur.fetchall()

    return run


# -- tracers (each in its own worker process) -----------------------------------------------------
class XrayAutoinst:
    """This agent: patch()/unpatch() toggled around the instrumented rounds."""

    name = "xray-autoinst"

    def __init__(self):
        sys.path.insert(0, ROOT)
        from xray_autoinst import config
        from xray_autoinst.core import encoder
        from xray_autoinst.core import tracer as tracer_mod

        class Emitter:
            def __init__(self, encode):
                self.encode = encode

            def submit(self, entity):
                if self.encode:
                    encoder.documents(entity)

            def send_document(self, doc):
                return True

            def flush(self, timeout=0):
                pass

        rules = '{"version": 2, "default": {"fixed_target": 0, "rate": %s}}'
        self.tracers = {}
        for variant in VARIANTS:
            rate = "0.0" if variant == "unsampled" else "1.0"
            cfg = config.from_env({"XRAY_SAMPLING_RULES": rules % rate,
                                   "XRAY_SAMPLING": "local"})
            self.tracers[variant] = (cfg, Emitter(variant == "sampled"))
        self.mod = tracer_mod
        self.install("outside")

    def version(self):
        from xray_autoinst import __version__

        return __version__

    def install(self, variant):
        cfg, emitter = self.tracers[variant]
        return self.mod.install(cfg, emitter)

    def setup(self, case):
        from xray_autoinst.contrib import db_pymysql, db_redis

        self.patcher = db_redis if case == "redis" else db_pymysql
        target = redis_client() if case == "redis" else mysql_conn()
        call = redis_call if case == "redis" else mysql_call
        return call(target), call(target)  # patched on the classes: one object serves both

    def patch(self):
        self.patcher.patch()

    def unpatch(self):
        self.patcher.unpatch()

    def request(self, variant):
        t = self.install(variant)
        if variant == "outside":
            return None
        return t.begin_segment("bench")

    def end(self, variant, handle):
        if handle is not None:
            self.mod.tracer.end_segment(*handle)


class AwsXraySdk:
    """aws-xray-sdk 2.x: its pymysql patch wraps ``pymysql.connect`` (a proxy connection made
    while patched); it has no redis patch."""

    name = "aws-xray-sdk"
    cases = ("pymysql",)

    def __init__(self):
        import logging

        from aws_xray_sdk.core import xray_recorder
        from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter

        logging.getLogger("aws_xray_sdk").setLevel(logging.CRITICAL)

        class Emitter(UDPEmitter):
            encode = True

            def send_entity(self, entity):
                if self.encode:
                    entity.serialize()

        self.emitter = Emitter()
        xray_recorder.configure(sampling=False, context_missing="IGNORE_ERROR", plugins=(),
                                emitter=self.emitter, service="bench")
        self.recorder = xray_recorder

    def version(self):
        from importlib.metadata import version

        return version("aws-xray-sdk")

    def setup(self, case):
        from aws_xray_sdk.ext.pymysql import patch, unpatch

        bare = mysql_call(mysql_conn())
        patch()
        traced = mysql_call(mysql_conn())
        unpatch()
        return bare, traced

    def patch(self):
        pass

    def unpatch(self):
        pass

    def request(self, variant):
        if variant == "outside":
            return None
        self.emitter.encode = variant == "sampled"
        return self.recorder.begin_segment("bench", sampling=0 if variant == "unsampled" else 1)

    def end(self, variant, handle):
        if handle is not None:
            self.recorder.end_segment()


class OpenTelemetry:
    """OpenTelemetry SDK, ParentBased(ALWAYS_OFF) so that calls outside a request are not
    recorded; a request is a remote parent context, sampled or not; spans end through a
    SimpleSpanProcessor into an exporter that drops them (so sampled = sampled-path)."""

    name = "opentelemetry"

    def __init__(self):
        from opentelemetry import context, trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

        class Drop(SpanExporter):
            def export(self, spans):
                from opentelemetry.sdk.trace.export import SpanExportResult

                return SpanExportResult.SUCCESS

        self.provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
        self.provider.add_span_processor(SimpleSpanProcessor(Drop()))
        self.trace = trace
        self.context = context
        self.parents = {}
        for variant, flags in (("sampled", 1), ("sampled-path", 1), ("unsampled", 0)):
            sc = trace.SpanContext(0x1234, 0x5678, is_remote=True,
                                   trace_flags=trace.TraceFlags(flags))
            self.parents[variant] = trace.set_span_in_context(trace.NonRecordingSpan(sc))

    def version(self):
        from importlib.metadata import version

        return version("opentelemetry-sdk")

    def setup(self, case):
        if case == "redis":
            from opentelemetry.instrumentation.redis import RedisInstrumentor

            self.instrumentor = RedisInstrumentor()
            client = redis_client()
            return redis_call(client), redis_call(client)
        from opentelemetry.instrumentation.pymysql import PyMySQLInstrumentor

        self.instrumentor = None
        bare = mysql_call(mysql_conn())
        inst = PyMySQLInstrumentor()
        inst.instrument(tracer_provider=self.provider)
        traced = mysql_call(mysql_conn())
        inst.uninstrument()
        return bare, traced

    def patch(self):
        if self.instrumentor is not None:
            self.instrumentor.instrument(tracer_provider=self.provider)

    def unpatch(self):
        if self.instrumentor is not None:
            self.instrumentor.uninstrument()

    def request(self, variant):
        if variant == "outside":
            return None
        return self.context.attach(self.parents[variant])

    def end(self, variant, handle):
        if handle is not None:
            self.context.detach(handle)


class _StubPool:
    connection_kwargs = {"host": "127.0.0.1", "port": 6379, "db": 0}


class StubRedis:
    """The shape our wrapper reads (``connection_pool.connection_kwargs``), with no I/O."""

    connection_pool = _StubPool()

    def execute_command(self, *args, **options):
        return None


class _StubConn:
    host, port, user, db, unix_socket = "127.0.0.1", 3306, b"root", b"test", None
    server_version, server_status = "5.5.5-10.11.19-MariaDB", 0


class StubCursor:
    connection = _StubConn()

    def execute(self, query, args=None):
        return 1


def instrumentation_alone(rounds, k):
    """This agent's wrappers around stand-ins that do nothing: the instrumentation's own cost,
    without the noise of a round trip (same variants, same pairing)."""
    ours = XrayAutoinst()
    from xray_autoinst.contrib import db_pymysql, db_redis
    from xray_autoinst.core import wrapping

    cases = {
        "redis": (StubRedis, "execute_command", db_redis._traced_execute_command,
                  lambda o: (lambda: o.execute_command("GET", "k"))),
        "pymysql": (StubCursor, "execute", db_pymysql._traced_execute,
                    lambda o: (lambda: o.execute("SELECT 1"))),
    }
    out = []
    for case, (cls, attr, wrapper, make) in cases.items():
        obj = cls()
        run = make(obj)

        ours.patch = functools.partial(wrapping.wrap, cls, attr, wrapper)
        ours.unpatch = functools.partial(wrapping.unwrap, cls, attr)
        out.append(_measure(ours, case + " (stub, no I/O)", run, run, rounds, k))
    return out


TRACERS = {"xray-autoinst": XrayAutoinst, "aws-xray-sdk": AwsXraySdk,
           "opentelemetry": OpenTelemetry}


def round_time(tracer, variant, run, k):
    t0 = CLOCK()
    for _ in range(k // PER_SEGMENT):
        handle = tracer.request(variant)
        for _ in range(PER_SEGMENT):
            run()
        tracer.end(variant, handle)
    return (CLOCK() - t0) / k


def worker(name, case, rounds, k):
    if case == "stub":
        for res in instrumentation_alone(rounds, k):
            print(RESULT + json.dumps(res), flush=True)
        return
    tracer = TRACERS[name]()
    bare_run, traced_run = tracer.setup(case)
    print(RESULT + json.dumps(_measure(tracer, case, bare_run, traced_run, rounds, k)),
          flush=True)


def _measure(tracer, case, bare_run, traced_run, rounds, k):
    configs = [(v, patched) for v in VARIANTS for patched in (False, True)]
    times = {c: [] for c in configs}
    warm = max(2, rounds // 10)
    for i in range(rounds + warm):
        shift = 2 * (i % len(VARIANTS))
        for variant, patched in configs[shift:] + configs[:shift]:
            if patched:
                tracer.patch()
            try:
                dt = round_time(tracer, variant, traced_run if patched else bare_run, k)
            finally:
                if patched:
                    tracer.unpatch()
            if i >= warm:
                times[(variant, patched)].append(dt)
    out = {"tracer": tracer.name, "version": tracer.version(), "case": case, "rounds": rounds,
           "calls_per_round": k}
    for v in VARIANTS:
        bare, traced = times[(v, False)], times[(v, True)]
        out[v] = {
            "bare_us": statistics.median(bare) * 1e6,
            "us": statistics.median(traced) * 1e6,
            "overhead_us": statistics.median(a - b for a, b in zip(traced, bare, strict=True))
            * 1e6,
        }
    return out


# -- the runner ---------------------------------------------------------------------------------
def otel_python(quick, log):
    python = os.path.join(OTEL_VENV, "bin", "python")
    stamp = os.path.join(OTEL_VENV, ".bench-stamp.json")
    want = json.dumps(OTEL_PACKAGES)
    if os.path.exists(python) and os.path.exists(stamp) and open(stamp).read() == want:
        return python, None
    if quick:
        return None, "OpenTelemetry: not measured in --quick (its virtualenv is not built)"
    log("building %s (pip install %s)" % (OTEL_VENV, " ".join(OTEL_PACKAGES)))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", OTEL_VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *OTEL_PACKAGES], check=True, capture_output=True, text=True)
    except (subprocess.CalledProcessError, OSError) as exc:
        return None, "OpenTelemetry: could not build its virtualenv (%s)" % exc
    with open(stamp, "w") as f:
        f.write(want)
    return python, None


def has_module(python, module):
    code = "import importlib.util,sys; sys.exit(importlib.util.find_spec(%r) is None)" % module
    return subprocess.run([python, "-c", code], capture_output=True).returncode == 0


def run_worker(python, name, case, rounds, k, clock):
    cmd = [python, os.path.abspath(__file__), "--worker", name, "--case", case,
           "--rounds", str(rounds), "--calls", str(k), "--clock", clock]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XRAY_", "AWS_XRAY", "OTEL_"))}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    found = [json.loads(line[len(RESULT):]) for line in proc.stdout.splitlines()
             if line.startswith(RESULT)]
    if found:
        return found, None
    return None, "%s %s failed: %s" % (name, case, (proc.stderr or proc.stdout)[-800:])


def table(results):
    lines = []
    titles = {
        "redis": "Redis GET (redis-py, local Redis)",
        "pymysql": "PyMySQL execute('SELECT 1') + fetchall (local MariaDB)",
        "redis (stub, no I/O)": "The Redis wrapper alone (a stand-in client that does nothing)",
        "pymysql (stub, no I/O)": "The PyMySQL wrapper alone (a stand-in cursor)",
    }
    for case, title in titles.items():
        rows = [r for r in results if r["case"] == case]
        if not rows:
            continue
        ours = next((r for r in rows if r["tracer"] == "xray-autoinst"), None)
        lines.append("\n### %s\n" % title)
        lines.append("| tracer | bare µs | sampled +µs | sampled-path +µs | unsampled +µs | "
                     "outside +µs | sampled-path vs xray-autoinst |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            ratio = ""
            if ours is not None and r is not ours and ours["sampled-path"]["overhead_us"] > 0:
                ratio = "%.1f×" % (r["sampled-path"]["overhead_us"]
                                   / ours["sampled-path"]["overhead_us"])
            lines.append("| %s %s | %.2f | %+.2f | %+.2f | %+.2f | %+.2f | %s |" % (
                r["tracer"], r["version"], r["outside"]["bare_us"],
                r["sampled"]["overhead_us"], r["sampled-path"]["overhead_us"],
                r["unsampled"]["overhead_us"], r["outside"]["overhead_us"], ratio))
        if ours is not None:
            lines.append("\nxray-autoinst ratio to bare: sampled %.3f, outside %.3f; targets: "
                         "traced ≤ %.1f µs, patched-but-untraced ≤ %.1f µs" % (
                             ours["sampled"]["us"] / ours["sampled"]["bare_us"],
                             ours["outside"]["us"] / ours["outside"]["bare_us"],
                             TRACED_TARGET, UNTRACED_TARGET))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short smoke run, no peer venv built")
    ap.add_argument("--out", help="write the results as JSON to this file")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--calls", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    global CLOCK
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter
    if args.worker:
        worker(args.worker, args.case, args.rounds, args.calls)
        return 0

    def log(msg):
        print(msg, file=sys.stderr)

    rounds, k = (5, 100) if args.quick else (21, 500)
    skipped = []
    cases = []
    for case, port, what in (("redis", 6379, "Redis"), ("pymysql", 3306, "MariaDB")):
        if service_up(port):
            cases.append(case)
        else:
            skipped.append("%s: %s not reachable on 127.0.0.1:%d" % (case, what, port))
    peers = [("xray-autoinst", sys.executable)]
    if has_module(sys.executable, "aws_xray_sdk"):
        peers.append(("aws-xray-sdk", sys.executable))
    else:
        skipped.append("aws-xray-sdk: not installed in this interpreter")
    python, why = otel_python(args.quick, log)
    if python:
        peers.append(("opentelemetry", python))
    else:
        skipped.append(why)
    results = []
    for case in cases:
        for name, py in peers:
            if case not in getattr(TRACERS[name], "cases", ("redis", "pymysql")):
                continue
            log("measuring %s %s" % (name, case))
            res, err = run_worker(py, name, case, rounds, k, args.clock)
            if res:
                results += res
            else:
                skipped.append(err)
    log("measuring xray-autoinst's instrumentation alone")
    res, err = run_worker(sys.executable, "xray-autoinst", "stub", rounds * 2, k * 10,
                          args.clock)
    if res:
        results += res
    else:
        skipped.append(err)
    skipped.append("aws-xray-sdk: no redis integration exists")
    clock = "the calling thread's CPU time" if args.clock == "cpu" else "wall time"
    print("## Redis and MySQL per-call overhead (%s; medians of %d interleaved rounds x %d "
          "calls; +µs = instrumented - bare, paired)" % (clock, rounds, k))
    print(table(results))
    for s in skipped:
        print("\nnot measured: " + s)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"quick": args.quick, "clock": args.clock, "results": results,
                       "skipped": skipped}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
