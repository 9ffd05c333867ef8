"""AWS Lambda: cold start and per-invocation overhead of the layer.

    .venv/bin/python bench/bench_lambda.py [--quick] [--out PATH] [--no-otel] [--no-instructions]

Cold start: from spawning the runtime's start command to the Runtime API receiving the first
invocation's response -- the real ``awslambdaric`` (installed with ``pip --target`` like
Lambda's ``/var/runtime``), a plain interpreter (no virtualenv; pyenv's 3.12.1 when present),
a trivial handler, a loopback stand-in for the Runtime API (``tests/lambda_testing.py``) and a
UDP sink at ``AWS_XRAY_DAEMON_ADDRESS``. Variants, interleaved (rotated) run after run:

  bare             python -m awslambdaric app.handler
  layer            /opt/xray-run python -m awslambdaric ...   (the built layer), Sampled=1
  layer-unsampled  the same with Sampled=0
  opentelemetry    OpenTelemetry's SDK + opentelemetry-instrumentation-aws-lambda from PyPI,
                   loaded the way opentelemetry-instrument does (its sitecustomize on
                   PYTHONPATH; _HANDLER names the handler), X-Ray ids and propagator, no
                   exporter: a lower bound of the ADOT/OTel layers (which also run
                   opentelemetry-instrument in an extra interpreter and a collector)

Instructions: one run of each variant under valgrind's callgrind, from the start command to
the runtime's exit after one invocation (deterministic; not with --quick).

Per invocation (the thread's CPU time, system time included, so the send is in): in process,
``awslambdaric.bootstrap.handle_event_request`` (unmarshal, the handler, marshal, post) with
the Runtime API's C client replaced by a no-op, bare and patched, in interleaved rounds;
sampled invocations send their document to a local UDP sink from the invocation's thread (the
flush before the post is included). Also, not with --quick, the instructions executed per
invocation (callgrind: a worker running 2000 invocations minus one running none; user space
only, so the send's system call is not in).

The medians are printed as a Markdown table with the differences against bare.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from lambda_testing import PollingDaemon, RuntimeAPI  # noqa: E402

WORK = ROOT / ".bench" / "lambda"
PYENV_312 = Path.home() / ".pyenv" / "versions" / "3.12.1" / "bin" / "python"
HANDLER = "def handler(event, context):\n    return {'ok': True}\n"
TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=%s"
OTEL = ["opentelemetry-distro", "opentelemetry-instrumentation-aws-lambda",
        "opentelemetry-propagator-aws-xray", "opentelemetry-sdk-extension-aws"]


def log(msg):
    sys.stderr.write(msg + "\n")


def plain_python():
    if PYENV_312.exists():
        return str(PYENV_312)
    if sys.base_prefix != sys.prefix:
        return str(Path(sys.base_prefix) / "bin" / ("python%d.%d" % sys.version_info[:2]))
    return sys.executable


def version_of(python):
    return subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def pip_target(dest, version, packages):
    if (dest / ".done").exists():
        return True
    shutil.rmtree(dest, ignore_errors=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--target", str(dest), "--only-binary=:all:", "--implementation", "cp",
         "--python-version", version, "--platform", "manylinux2014_x86_64", *packages],
        capture_output=True, text=True)
    if proc.returncode != 0:
        log("pip failed for %s: %s" % (packages, proc.stderr[-300:]))
        return False
    (dest / ".done").write_text("\n".join(packages))
    return True


def build_layer(python, version):
    opt = WORK / "opt"
    shutil.rmtree(opt, ignore_errors=True)
    layer = WORK / "layer.zip"
    env = dict(os.environ, PATH=f"{Path(python).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-m", "xray_autoinst", "lambda-layer", "-o", str(layer),
                    "--python", version], check=True, env=env, capture_output=True)
    with zipfile.ZipFile(layer) as zf:
        for info in zf.infolist():
            path = zf.extract(info, opt)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(path, mode)
    return opt


def variants_for(python, runtime, task, opt, otel, sink_address):
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": str(runtime),
            "LAMBDA_TASK_ROOT": str(task),
            "AWS_XRAY_DAEMON_ADDRESS": sink_address, "AWS_LAMBDA_FUNCTION_NAME": "bench-fn",
            "_HANDLER": "app.handler"}
    cmd = [python, "-m", "awslambdaric", "app.handler"]
    variants = {
        "bare": (cmd, base, "1"),
        "layer": ([str(opt / "xray-run"), *cmd], base, "1"),
        "layer-unsampled": ([str(opt / "xray-run"), *cmd], base, "0"),
    }
    if otel is not None:
        auto = otel / "opentelemetry" / "instrumentation" / "auto_instrumentation"
        env = dict(base, PYTHONPATH=os.pathsep.join([str(auto), str(otel), str(runtime),
                                                     str(task)]),
                   OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                   OTEL_LOGS_EXPORTER="none", OTEL_PROPAGATORS="xray",
                   OTEL_PYTHON_ID_GENERATOR="xray", OTEL_SERVICE_NAME="bench-fn")
        variants["opentelemetry"] = (cmd, env, "1")
    return variants


def cold_start(python, runtime, task, opt, otel, runs, quick):
    sink = PollingDaemon()
    variants = variants_for(python, runtime, task, opt, otel, sink.address)
    times = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    docs = {name: 0 for name in variants}
    names = list(variants)
    n = 0
    for i in range(runs + 1):  # the first round warms the page cache, not counted
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            argv, env, sampled = variants[name]
            n += 1
            rid = "cold-%d" % n
            # a Runtime API of its own per run: the killed runtime's pending "next" request
            # must not take the next run's invocation
            api = RuntimeAPI(on_post=sink.drain)
            api.invoke(rid, {}, TRACE % sampled)
            before = len(sink.drain())
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv, cwd=str(task),
                                    env=dict(env, AWS_LAMBDA_RUNTIME_API=api.address),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            result = api.wait(rid, timeout=60)
            proc.kill()
            err = proc.stderr.read()
            proc.stderr.close()
            # CPU time of the runtime process (it idles in "next" once it has answered): less
            # sensitive than wall time to other jobs on the machine
            _, _status, usage = os.wait4(proc.pid, 0)
            proc.returncode = _status
            api.close()
            if result["kind"] != "response":
                raise SystemExit("%s failed: %s %s" % (name, result["body"], err[-500:]))
            if i:
                times[name].append((result["at"] - t0) * 1000.0)
                cpu[name].append((usage.ru_utime + usage.ru_stime) * 1000.0)
                docs[name] = len(result["seen"]) - before
    sink.close()
    return times, cpu, docs


def instructions(python, runtime, task, opt, otel):
    """Instructions executed from the start command to the runtime's exit after one
    invocation (valgrind's callgrind, following the wrapper's exec): deterministic where wall
    and CPU times on a shared machine are not. None without valgrind."""
    import re

    if shutil.which("valgrind") is None:
        return None
    sink = PollingDaemon()
    out = {}
    variants = variants_for(python, runtime, task, opt, otel, sink.address)
    for name, (argv, env, sampled) in variants.items():
        api = RuntimeAPI(on_post=sink.drain)
        api.invoke("ins", {}, TRACE % sampled)
        api.stop()
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
             "--trace-children=yes", *argv], cwd=str(task),
            env=dict(env, AWS_LAMBDA_RUNTIME_API=api.address), capture_output=True, text=True,
            timeout=900)
        api.close()
        counts = [int(m.replace(",", "")) for m in
                  re.findall(r"I\s+refs:\s+([\d,]+)", proc.stderr)]
        if "ins" not in api.results or not counts:
            log("instructions: %s failed: %s" % (name, proc.stderr[-300:]))
            continue
        out[name] = sum(counts)
    sink.close()
    return out


def per_invocation(rounds, per_round, only=None):
    """µs per handle_event_request, bare and patched (sampled / unsampled). ``only``: run
    just that variant's rounds (the instruction-count worker)."""
    from awslambdaric import bootstrap, lambda_runtime_client

    from xray_autoinst import config as _config
    from xray_autoinst.contrib import lambda_awslambdaric as mod
    from xray_autoinst.core import tracer as _tracer_mod

    class Rapid:
        def post_invocation_result(self, *a):
            pass

        def post_error(self, *a):
            pass

    lambda_runtime_client.runtime_client = Rapid()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    port = sink.getsockname()[1]
    cfg = _config.from_env({"AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:%d" % port,
                            "AWS_LAMBDA_FUNCTION_NAME": "bench-fn"})
    _tracer_mod.install(cfg)
    client = lambda_runtime_client.LambdaRuntimeClient("127.0.0.1:9")
    sinklog = bootstrap.StandardLogSink()

    def handler(event, context):
        return {"ok": True}

    body = b'{"key": "value", "n": 1}'

    def batch():
        hei = bootstrap.handle_event_request
        # the thread's CPU time (user + system, so the send is in): other jobs on the machine
        # preempting this one do not count, as they would in wall time
        t0 = time.thread_time()
        for _ in range(per_round):
            hei(client, handler, "req", body, "application/json", None, None,
                "arn:aws:lambda:us-east-1:123456789012:function:bench-fn", "9999999999999",
                None, sinklog)
        return (time.thread_time() - t0) / per_round * 1e6

    def drain():
        sink.setblocking(False)
        try:
            while True:
                sink.recv(70000)
        except BlockingIOError:
            pass

    res = {"bare": [], "sampled": [], "unsampled": []}
    for r in range(rounds):
        for name in (["bare", "sampled", "unsampled"] * 2)[r % 3:][:3]:
            if only is not None and name != only:
                continue
            if name == "bare":
                mod.unpatch()
            else:
                mod.patch()
                os.environ["_X_AMZN_TRACE_ID"] = TRACE % ("1" if name == "sampled" else "0")
            res[name].append(batch())
            drain()
    mod.unpatch()
    return res


def per_invocation_instructions(n=2000):
    """Instructions per invocation (valgrind): a worker runs ``n`` invocations of a variant
    in process, minus the same worker running none."""
    import re

    if shutil.which("valgrind") is None:
        return None
    out = {}
    for name in ("bare", "sampled", "unsampled"):
        counts = []
        for k in (0, n):
            proc = subprocess.run(
                ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                 sys.executable, __file__, "--_worker", name, str(k)],
                capture_output=True, text=True, timeout=900)
            found = re.findall(r"I\s+refs:\s+([\d,]+)", proc.stderr)
            if proc.returncode != 0 or not found:
                log("per-invocation instructions: %s failed: %s" % (name, proc.stderr[-300:]))
                return None
            counts.append(int(found[-1].replace(",", "")))
        out[name] = (counts[1] - counts[0]) / n
    return out


def fmt(ms):
    return "%.1f" % ms


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--no-otel", action="store_true")
    ap.add_argument("--no-instructions", action="store_true",
                    help="skip the instruction counts (valgrind; skipped with --quick too)")
    ap.add_argument("--_worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._worker:
        name, n = args._worker[0], int(args._worker[1])
        if n:
            per_invocation(1, n, only=name)
        return 0
    runs = 5 if args.quick else 20
    WORK.mkdir(parents=True, exist_ok=True)
    python = plain_python()
    version = version_of(python)
    runtime = WORK / ("runtime-" + version)
    if not pip_target(runtime, version, ["awslambdaric"]):
        raise SystemExit("cannot install awslambdaric for Python %s" % version)
    otel = None
    otel_note = "not measured (--no-otel)"
    if not args.no_otel:
        otel = WORK / ("otel-" + version)
        if not pip_target(otel, version, OTEL):
            otel, otel_note = None, "not measured: could not be installed from PyPI"
    task = WORK / "task"
    task.mkdir(exist_ok=True)
    (task / "app.py").write_text(HANDLER)
    opt = build_layer(python, version)
    log("cold start: %d interleaved runs per variant (Python %s)" % (runs, version))
    times, cpu, docs = cold_start(python, runtime, task, opt, otel, runs, args.quick)
    ins = None
    if not args.quick and not args.no_instructions:
        log("instructions (valgrind), one run per variant")
        ins = instructions(python, runtime, task, opt, otel)
    log("per invocation, in process")
    per = per_invocation(7 if args.quick else 21, 300 if args.quick else 2000)
    per_ins = None
    if not args.quick and not args.no_instructions:
        log("per invocation, instructions (valgrind)")
        per_ins = per_invocation_instructions()

    bare = statistics.median(times["bare"])
    rows = []
    out = {"python": version, "runs": runs, "cold_start_ms": {}, "per_invocation_us": {}}
    cpu_bare = statistics.median(cpu["bare"])
    for name, values in times.items():
        med = statistics.median(values)
        paired = statistics.median(v - b for v, b in zip(values, times["bare"], strict=True))
        cmed = statistics.median(cpu[name])
        out["cold_start_ms"][name] = {"median": med, "paired_overhead": paired,
                                      "cpu_median": cmed, "cpu_added": cmed - cpu_bare,
                                      "documents": docs[name], "n": len(values)}
        rows.append("| %s | %s ms | %.2f× | %+.1f ms | %s ms | %+.1f ms | %d |" % (
            name, fmt(med), med / bare, paired, fmt(cmed), cmed - cpu_bare, docs[name]))
    print("### Lambda cold start (spawn → first response posted), Python %s, median of %d"
          % (version, runs))
    print()
    print("| variant | cold start (wall) | vs bare | added (paired) | CPU | CPU added "
          "| documents |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    if otel is None:
        print("\nOpenTelemetry: %s." % otel_note)
    print()
    if ins and "bare" in ins:
        out["cold_start_instructions"] = ins
        print("### Cold start, instructions executed (valgrind callgrind, start to exit after "
              "one invocation)")
        print()
        print("| variant | instructions | vs bare | added |")
        print("| --- | --- | --- | --- |")
        for name, n in ins.items():
            print("| %s | %.1f M | %.2f× | %+.1f M |" % (
                name, n / 1e6, n / ins["bare"], (n - ins["bare"]) / 1e6))
        print()
    print("### Per invocation, in process (handle_event_request, post stubbed; thread CPU time)")
    print()
    print("| variant | per invocation | added |")
    print("| --- | --- | --- |")
    for name, values in per.items():
        med = statistics.median(values)
        paired = statistics.median(v - b for v, b in zip(values, per["bare"], strict=True))
        out["per_invocation_us"][name] = {"median": med, "paired_overhead": paired}
        print("| %s | %.1f µs | %+.1f µs |" % (name, med, paired if name != "bare" else 0.0))
    if per_ins:
        out["per_invocation_instructions"] = per_ins
        print()
        print("| variant | instructions per invocation | added |")
        print("| --- | --- | --- |")
        for name, n in per_ins.items():
            print("| %s | %.0f | %+.0f |" % (name, n, n - per_ins["bare"]))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
