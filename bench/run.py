"""The benchmark suite: this agent side by side with aws-xray-sdk, OpenTelemetry and ddtrace.

    .venv/bin/python bench/run.py            # everything (make bench); builds .bench/venvs/*
    .venv/bin/python bench/run.py --quick    # this agent's own benchmarks, briefly (CI smoke)
    .venv/bin/python bench/run.py --sections startup,per_request

Prints Markdown tables and writes ``.bench/results.json`` (every sample summary, the versions of
everything measured, the machine) and ``.bench/results.md``. Figures are medians with the
interquartile range in brackets; overheads are differences of interleaved runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import e2e  # noqa: E402
import emission  # noqa: E402
import external  # noqa: E402
import percall  # noqa: E402
import perrequest  # noqa: E402
import startup  # noqa: E402
import venvs as venvs_mod  # noqa: E402
from benchlib import ROOT  # noqa: E402

SECTIONS = ("startup", "per_request", "per_request_asgi", "per_call", "emission", "daemon",
            "outbound_http", "sql", "e2e", "e2e_asgi")
# the integrations' own scripts (bench/bench_<name>.py), run as their authors wrote them; in
# --quick mode only when named with --sections (CI's smoke run stays short)
EXTERNAL = ("http_async", "redis_mysql", "async_db", "queues", "lambda", "ui", "logs")
ALL_SECTIONS = SECTIONS + EXTERNAL
PEERS = ("aws-xray-sdk", "opentelemetry", "ddtrace")

FULL = {
    "startup_runs": {"python -c pass": 25, "typical app start": 25},
    "request": {"rounds": 3, "batches": 20, "target_s": 0.015},
    "call": {"rounds": 3, "batches": 16, "target_s": 0.02},
    "emission": {"windows": 7, "window_s": 0.5},
    "e2e": {"rounds": 5, "seconds": 8.0},
}
QUICK = {
    "startup_runs": {"python -c pass": 5, "typical app start": 2},
    "request": {"rounds": 1, "batches": 3, "target_s": 0.005},
    "call": {"rounds": 1, "batches": 3, "target_s": 0.005},
    "emission": {"windows": 2, "window_s": 0.1},
    "e2e": {"rounds": 1, "seconds": 1.0},
}


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_busy(window: float = 3.0):
    """Fraction of the machine's CPU time busy over ``window`` seconds (from /proc/stat)."""
    def read():
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        return vals[3] + vals[4], sum(vals)  # idle + iowait, total

    try:
        i0, t0 = read()
        time.sleep(window)
        i1, t1 = read()
    except OSError:
        return None
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(limit: float, max_wait: float) -> float:
    """Wait (up to ``max_wait`` s) until the machine is at most ``limit`` busy (0..1) while
    this suite is idle: other work on the machine skews every figure."""
    t0 = time.time()
    while time.time() - t0 < max_wait:
        busy = cpu_busy()
        if busy is None or busy <= limit:
            break
    return time.time() - t0


def git_state() -> dict:
    import subprocess

    def git(*a):
        proc = subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT)
        return proc.stdout.strip() if proc.returncode == 0 else None

    dirty = git("status", "--porcelain", "--", "xray_autoinst", "sitecustomize",
                "pyproject.toml")
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "agent_sources_modified": bool(dirty) if dirty is not None else None}


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


# -- formatting -----------------------------------------------------------------------------
def fmt(s, digits=1, signed=False):
    if not s:
        return "-"
    f = "%+.*f" if signed else "%.*f"
    return "%s [%s, %s]" % (f % (digits, s["median"]), "%.*f" % (digits, s["p25"]),
                            "%.*f" % (digits, s["p75"]))


def med(s, digits=1, signed=False):
    if not s:
        return "-"
    return ("%+.*f" if signed else "%.*f") % (digits, s["median"])


def table(headers, rows) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def render(results) -> str:
    parts = []
    meta = results["meta"]
    git = meta.get("git") or {}
    loads = ", ".join(f"{k} {v['cpu_busy_before']:.0%}"
                      for k, v in meta.get("load_average", {}).items()
                      if v.get("cpu_busy_before") is not None)
    parts.append(f"Machine: {meta['machine'].get('cpu', '?')}, {meta['machine']['cpus']} CPUs, "
                 f"Linux {meta['machine']['kernel']}, Python {meta['machine']['python']}. "
                 f"Mode: {'quick' if meta['quick'] else 'full'}. {meta['date']}. "
                 f"Agent at {git.get('commit')}"
                 f"{' (with uncommitted changes)' if git.get('agent_sources_modified') else ''}. "
                 f"CPU busy (other work) just before each section: {loads or '?'}.")
    sec = results["sections"]
    if "startup" in sec and "error" not in sec["startup"]:
        for scenario, data in sec["startup"].items():
            rows = []
            for r in data["rows"]:
                rows.append([r["variant"], fmt(r["wall_ms"]), fmt(r.get("overhead_ms"), 1, True),
                             "%.2fx" % r["ratio"] if "ratio" in r else "-",
                             med(r.get("cpu_overhead_ms"), 1, True),
                             _instructions(r),
                             fmt(r["rss_mib"]), fmt(r.get("overhead_mib"), 1, True)])
            parts.append(f"### Start-up: `{scenario}` (`{data['code']}`), "
                         f"{data['runs']} interleaved runs\n\n" + table(
                             ["variant", "wall ms", "overhead ms (wall)", "ratio",
                              "overhead ms (CPU, user+sys)", "instructions (valgrind)",
                              "peak RSS MiB", "overhead MiB"],
                             rows))
    for name, kind in (("per_request", "WSGI"), ("per_request_asgi", "ASGI")):
        if name not in sec or "error" in sec[name]:
            continue
        data = sec[name]
        ours = {r["variant"].rsplit("-", 1)[-1]: r for r in data["rows"]
                if r["variant"] in ("xray-sampled", "xray-unsampled")}
        rows = []
        for r in data["rows"]:
            row = [r["label"], fmt(r["wall_us"], 2), fmt(r.get("wall_overhead_us"), 2, True),
                   "%.2fx" % r["ratio"] if "ratio" in r else "-",
                   med(r.get("thread_overhead_us"), 2, True),
                   med(r.get("cpu_overhead_us"), 2, True)]
            if kind == "ASGI":
                row.append(_times_ours(r, ours))
            rows.append(row)
        headers = ["variant", "µs/request (wall)", "overhead µs (wall)", "ratio",
                   "overhead µs (request-thread CPU)", "overhead µs (process CPU, incl. sender)"]
        if kind == "ASGI":
            headers.append("overhead (request-thread CPU) ÷ xray-autoinst's")
        parts.append(
            f"### Per request, in process, {kind} ({data['rounds']} rounds x "
            f"{data['batches_per_round']} interleaved batches)\n\n"
            + ("`wall`: the request loop's wall time. `request-thread CPU`: CPU time of the "
               "request thread only (the request path). `process CPU`: CPU of every thread over "
               "the batch plus flushing what was queued: the full cost, background sending "
               "included. Overheads are over the bare application of the same process.\n\n"
               if kind == "WSGI" else
               "A trivial ASGI app awaited directly, one request after the other on one event "
               "loop (no server, no socket); `task-` rows: a task per request, as servers run "
               "them. Columns as for WSGI; the last compares a request-thread CPU overhead "
               "with this agent's at the same sampling (unsampled for ALWAYS_OFF).\n\n")
            + table(headers, rows))
    if "per_call" in sec and "error" not in sec["per_call"]:
        data = sec["per_call"]
        rows = []
        for r in data["rows"]:
            if "skipped" in r:
                rows.append([r["case"], r["mode"], "skipped: " + r["skipped"], "", "", "", ""])
                continue
            rows.append([r["case"], r["mode"], fmt(r["wall_us"], 2),
                         fmt(r.get("wall_overhead_us"), 2, True),
                         "%.2fx" % r["ratio"] if "ratio" in r else "-",
                         med(r.get("thread_overhead_us"), 2, True),
                         med(r.get("cpu_overhead_us"), 2, True)])
        parts.append(
            f"### Per call ({data['rounds']} rounds x {data['batches_per_round']} batches; "
            "calls 10 to a sampled segment, the segments' own cost subtracted)\n\n"
            + table(["call", "mode", "µs/call (wall)", "overhead µs (wall)", "ratio",
                     "overhead µs (calling-thread CPU)", "overhead µs (process CPU, incl. sender)"],
                    rows))
    if "emission" in sec and "error" not in sec["emission"]:
        data = sec["emission"]
        rows = []
        for name, r in data["results"].items():
            rows.append([name, r["document_bytes"], fmt(r["encode+send"], 0),
                         med(r["encode only"], 0), med(r["send only"], 0)])
        sink = data.get("sink") or {}
        parts.append(
            "### Emission: documents per second (`encoder.documents` + "
            "`Emitter.send_document`, one thread, to a UDP sink on loopback)\n\n"
            + table(["document", "bytes", "encode+send docs/s", "encode only /s", "send only /s"],
                    rows)
            + f"\n\nSink received {sink.get('datagrams', '?')} datagrams "
              f"({sink.get('malformed', '?')} malformed); pinned apart: {data.get('pinned')}.")
    if "daemon" in sec:
        parts.append("### Local daemon (bench/bench_daemon.py)\n\n" + _external(sec["daemon"]))
    for name, title in (("outbound_http", "Outbound HTTP (bench/bench_outbound_http.py)"),
                        ("sql", "SQL (bench/bench_sql.py)"),
                        *((n, f"{n} (bench/{external.SCRIPTS[n]})") for n in EXTERNAL)):
        if name in sec:
            parts.append(f"### {title}\n\n" + _external(sec[name]))
    for name in ("e2e", "e2e_asgi"):
        if name not in sec or "error" in sec[name]:
            continue
        data = sec[name]
        rows = []
        for r in data["rows"]:
            rows.append([r["variant"], fmt(r["rps"], 0),
                         "%.3f" % r["ratio"]["median"] if "ratio" in r else "-",
                         med(r.get("added_us_per_request"), 0, True),
                         fmt(r.get("server_cpu_us_per_request"), 0),
                         med(r.get("cpu_added_us_per_request"), 0, True),
                         med(r.get("system_added_us_per_request"), 0, True),
                         "%.3f" % r["cpu_capacity_ratio"]["median"]
                         if r.get("cpu_capacity_ratio") else "-",
                         med(r["latency_p50_ms"], 2), med(r["latency_p99_ms"], 2),
                         "%.3f" % r["documents_per_request"]
                         if r.get("documents_per_request") is not None else "-"])
        if data.get("server") == "uvicorn":
            server = (f"uvicorn, one process ({data.get('flavour', '?')}), trivial ASGI app")
        else:
            server = f"gunicorn, {data['workers']} sync workers, trivial app"
        parts.append(
            f"### End to end: {server}, "
            f"{data['load_generator']} with {data['connections']} connections, "
            f"{data['rounds']} x {data['seconds']:g} s per variant, UDP sink; "
            f"server and load generator pinned apart: {data['pinned']}\n\n"
            + table(["variant", "requests/s", "ratio to bare",
                     "µs added per request (1/rate, one server core)",
                     "server CPU µs per request", "server CPU µs added per request",
                     "of which system (kernel) µs", "capacity ratio (bare CPU ÷ CPU)",
                     "p50 ms", "p99 ms", "documents received per request"], rows)
            + "\n\nEach tracer is compared with the bare server of its own virtualenv, round "
              "by round. The capacity ratio is the rate a saturated server would keep relative "
              "to bare, from its CPU per request; the requests/s ratio is the load generator's "
              "when it cannot saturate the server."
            + (" " + E2E_SETUP if any(r.get("virtualenv", "xray-autoinst") != "xray-autoinst"
                                      for r in data["rows"]) else ""))
    for name, data in sec.items():
        if isinstance(data, dict) and "error" in data and name not in (
                "daemon", "outbound_http", "sql", *EXTERNAL):
            parts.append(f"### {name}: FAILED\n\n```\n{data['error'][-2000:]}\n```")
    if results.get("versions"):
        rows = [[name, ", ".join(f"{d} {v}" for d, v in vers.items())]
                for name, vers in results["versions"].items()]
        parts.append("### Versions (per virtualenv)\n\n" + table(["virtualenv", "packages"], rows))
    if results.get("targets"):
        rows = [[t["target"], t["measured"], t["verdict"]] for t in results["targets"]]
        parts.append("### Targets (reported, not asserted)\n\n"
                     + table(["target", "measured", "verdict"], rows))
    return "\n\n".join(parts) + "\n"


E2E_SETUP = (
    "`xray-run` serves the plain app (its gunicorn/uvicorn hooks trace it), documents to the "
    "UDP sink. aws-xray-sdk: `patch_all()` and a minimal WSGI middleware on `xray_recorder` "
    "(the SDK has none for plain WSGI, and nothing for ASGI: not run under uvicorn), "
    "`LocalSampler` rules rate 1 / 0, documents to the UDP sink. OpenTelemetry: "
    "`opentelemetry-instrument` with the X-Ray id generator and propagator, sampler "
    "`always_on` / `always_off`, its WSGI/ASGI middleware around the app (it instruments no "
    "plain app by itself) and a batch span processor whose exporter drops the spans (no "
    "encoding or sending: a lower bound). ddtrace: `ddtrace-run`, its WSGI/ASGI middleware "
    "around the app, `DD_TRACE_SAMPLING_RULES` rate 1 / 0, agent URL a closed TCP port, "
    "telemetry and remote configuration off.")


def _times_ours(row, ours) -> str:
    """``row``'s overhead as a multiple of this agent's at the same sampling."""
    if "xray-" in row["variant"] or "thread_overhead_us" not in row:
        return "-"
    mine = ours.get("unsampled" if row["variant"].endswith("unsampled") else "sampled")
    if not mine or mine["thread_overhead_us"]["median"] <= 0:
        return "-"
    return "%.1fx" % (row["thread_overhead_us"]["median"] / mine["thread_overhead_us"]["median"])


def _instructions(row) -> str:
    n = row.get("instructions")
    if n is None:
        return "-"
    text = "%.1f M" % (n / 1e6)
    if row.get("instructions_overhead_pct") is not None:
        text += " (%+.1f%%)" % row["instructions_overhead_pct"]
    return text


def _external(data) -> str:
    if "skipped" in data:
        return "skipped: " + data["skipped"]
    text = f"`{data['command']}`\n\n```\n{data['stdout'].rstrip()}\n```"
    if data.get("returncode"):
        text += f"\n\nFAILED ({data['returncode']}):\n```\n{data.get('error', '')[-2000:]}\n```"
    return text


# -- targets --------------------------------------------------------------------------------
def targets(sec) -> list:
    out = []

    def add(target, value, ok, unit):
        if value is None:
            out.append({"target": target, "measured": "not measured", "verdict": "-"})
        else:
            out.append({"target": target, "measured": f"{value:.2f} {unit}",
                        "verdict": "met" if ok(value) else "MISSED"})

    def startup_row(scenario, variant):
        for r in sec.get("startup", {}).get(scenario, {}).get("rows", []):
            if r["variant"] == variant:
                return r
        return None

    r = startup_row("python -c pass", "xray-run")
    add("xray-run python -c pass <= +10 ms", r and r["overhead_ms"]["median"],
        lambda v: v <= 10, "ms")
    r = startup_row("python -c pass", "bootstrap alone (PYTHONPATH)")
    add("bootstrap alone <= +2 ms", r and r["overhead_ms"]["median"], lambda v: v <= 2, "ms")
    add("bootstrap alone <= +1 MiB", r and r["overhead_mib"]["median"], lambda v: v <= 1, "MiB")
    r = startup_row("typical app start", "xray-run")
    add("typical app start (xray-run) <= +20 ms", r and r["overhead_ms"]["median"],
        lambda v: v <= 20, "ms")
    bare = startup_row("typical app start", "bare")
    if r and bare and r.get("instructions_overhead_pct") is not None:
        # wall time is noisy on a shared machine; instructions are not
        add("typical app start (xray-run) <= +20 ms, from instructions x bare median wall",
            r["instructions_overhead_pct"] / 100 * bare["wall_ms"]["median"],
            lambda v: v <= 20, "ms")
    add("typical app start (xray-run) <= +4 MiB", r and r["overhead_mib"]["median"],
        lambda v: v <= 4, "MiB")
    rows = {r["variant"]: r for r in sec.get("per_request", {}).get("rows", [])}
    for variant, limit in (("xray-sampled", 6.0), ("xray-unsampled", 1.0)):
        r = rows.get(variant)
        kind = "sampled" if variant == "xray-sampled" else "unsampled"
        add(f"{kind} request <= {limit:g} µs on the request path (wall)",
            r and r["wall_overhead_us"]["median"], lambda v, lim=limit: v <= lim, "µs")
        add(f"{kind} request <= {limit:g} µs (request-thread CPU)",
            r and r["thread_overhead_us"]["median"], lambda v, lim=limit: v <= lim, "µs")
    rows = {r["variant"]: r for r in sec.get("per_request_asgi", {}).get("rows", [])}
    for variant, limit in (("xray-sampled", 8.0), ("xray-unsampled", 1.5)):
        r = rows.get(variant)
        kind = "sampled" if variant == "xray-sampled" else "unsampled"
        add(f"ASGI {kind} request <= {limit:g} µs on the request path (wall)",
            r and r["wall_overhead_us"]["median"], lambda v, lim=limit: v <= lim, "µs")
        add(f"ASGI {kind} request <= {limit:g} µs (request-thread CPU)",
            r and r["thread_overhead_us"]["median"], lambda v, lim=limit: v <= lim, "µs")
    mine, otel = rows.get("xray-sampled"), rows.get("otel-sampled")
    for key, clock in (("wall_overhead_us", "wall"), ("thread_overhead_us", "request-thread CPU")):
        add(f"ASGI sampled: OpenTelemetry's overhead >= 5x ours ({clock})",
            mine and otel and mine[key]["median"] > 0
            and otel[key]["median"] / mine[key]["median"] or None, lambda v: v >= 5, "x")
    rows = {r["variant"]: r for r in sec.get("e2e", {}).get("rows", [])}
    for variant, limit, cpu in (("xray-run", 0.92, 20.0), ("xray-run, unsampled", 0.97, 5.0)):
        r = rows.get(variant)
        add(f"gunicorn under {variant}: requests/s >= {limit:g} x bare",
            r and "ratio" in r and r["ratio"]["median"], lambda v, lim=limit: v >= lim, "x bare")
        add(f"gunicorn under {variant}: server CPU <= +{cpu:g} µs per request",
            r["cpu_added_us_per_request"]["median"]
            if r and r.get("cpu_added_us_per_request") else None,
            lambda v, lim=cpu: v <= lim, "µs")
    rows = {r["variant"]: r for r in sec.get("e2e_asgi", {}).get("rows", [])}
    for variant, limit in (("xray-run", 0.9), ("xray-run, unsampled", 0.97)):
        r = rows.get(variant)
        add(f"uvicorn under {variant}: requests/s >= {limit:g} x bare",
            r and "ratio" in r and r["ratio"]["median"], lambda v, lim=limit: v >= lim, "x bare")
        add(f"uvicorn under {variant}: capacity (from server CPU) >= {limit:g} x bare",
            r and r.get("cpu_capacity_ratio") and r["cpu_capacity_ratio"]["median"],
            lambda v, lim=limit: v >= lim, "x bare")
    calls = {(r["case"], r["mode"]): r for r in sec.get("per_call", {}).get("rows", [])}
    for case, limit, what in (("sqlite3", 3.0, "SQL subsegment (sqlite3)"),
                              ("psycopg", 3.0, "SQL subsegment (psycopg)"),
                              ("http.client", 10.0, "http.client call")):
        r = calls.get((case, "xray"))
        value = r["wall_overhead_us"]["median"] if r and "wall_overhead_us" in r else None
        add(f"{what} <= {limit:g} µs (wall)", value, lambda v, lim=limit: v <= lim, "µs")
    em = sec.get("emission", {}).get("results", {}).get("bare segment")
    add("emission >= 80000 bare documents/s", em and em["encode+send"]["median"],
        lambda v: v >= 80000, "docs/s")
    d = sec.get("daemon", {}).get("data")
    add("daemon >= 20000 documents/s with no loss (paced)",
        d and d.get("max_pace_without_loss"), lambda v: v >= 20000,
        "docs/s (highest lossless pace)")
    return out


# -- main -----------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="this agent's own benchmarks only, briefly; builds no virtualenv")
    p.add_argument("--sections", default=None,
                   help="comma-separated subset of: " + ", ".join(ALL_SECTIONS)
                   + " (default: all; with --quick, all but " + ", ".join(EXTERNAL) + ")")
    p.add_argument("--out", default=os.path.join(ROOT, ".bench", "results.json"))
    p.add_argument("--markdown", default=None, help="default: --out with .md")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="FRACTION",
                   help="before each section, wait (at most 10 min) until the other processes "
                        "on the machine use at most FRACTION of its CPU (e.g. 0.1)")
    p.add_argument("--rounds", type=int, default=None,
                   help="override the rounds of the per-request, per-call and end-to-end sections")
    p.add_argument("--e2e-seconds", type=float, default=None,
                   help="override the load duration of each end-to-end run")
    args = p.parse_args(argv)
    if args.sections is None:
        args.sections = ",".join(SECTIONS if args.quick else ALL_SECTIONS)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(ALL_SECTIONS)
    if unknown:
        p.error(f"unknown sections: {sorted(unknown)}")
    cfg = {k: dict(v) for k, v in (QUICK if args.quick else FULL).items()}
    for key in ("request", "call", "e2e"):
        if args.rounds:
            cfg[key]["rounds"] = args.rounds
    if args.e2e_seconds:
        cfg["e2e"]["seconds"] = args.e2e_seconds
    started = time.time()
    args.out = os.path.abspath(args.out)
    if args.markdown:
        args.markdown = os.path.abspath(args.markdown)
    # run from an empty directory: a child's sys.path[0] must not be the source checkout
    neutral = os.path.join(ROOT, ".bench", "cwd")
    os.makedirs(neutral, exist_ok=True)
    os.chdir(neutral)

    if args.quick:
        ours = venvs_mod.current()
        envs = {"xray-autoinst": ours}
    else:
        log("preparing virtualenvs under .bench/venvs (cached)")
        envs = {name: venvs_mod.ensure(name, log) for name in ("xray-autoinst", *PEERS)}
        ours = envs["xray-autoinst"]
    results = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "quick": args.quick, "command": " ".join(["bench/run.py", *(argv or sys.argv[1:])]),
            "machine": venvs_mod.interpreter_facts(), "settings": cfg,
            "load_generator": "wrk" if shutil.which("wrk") else "bench/loadgen.py",
            "taskset": bool(shutil.which("taskset")),
            "git": git_state(), "load_average": {},
        },
        "versions": {name: v.versions() for name, v in envs.items()},
        "sections": {},
    }
    sec = results["sections"]

    def attempt(name, fn):
        if name not in sections:
            return
        if args.wait_quiet:
            waited = wait_quiet(args.wait_quiet, 600)
            if waited > 4:
                log(f"  waited {waited:.0f} s for the machine to be quiet")
        busy = cpu_busy(0.25)
        shown = "?" if busy is None else f"{busy:.0%}"
        log(f"[{name}] load average {loadavg()}, CPU busy before: {shown}")
        before = loadavg()
        t0 = time.time()
        try:
            sec[name] = fn()
        except Exception as exc:  # noqa: BLE001 - report and go on with the other sections
            import traceback

            sec[name] = {"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}
            log(f"  FAILED: {type(exc).__name__}: {exc}")
        results["meta"]["load_average"][name] = {"before": before, "after": loadavg(),
                                                 "cpu_busy_before": busy}
        log(f"  ({time.time() - t0:.0f} s)")

    attempt("startup", lambda: startup.run(envs, cfg["startup_runs"], log,
                                           warmups=1 if args.quick else 2,
                                           count_instructions=not args.quick))
    attempt("per_request", lambda: perrequest.run(envs, log=log, **cfg["request"]))
    attempt("per_request_asgi", lambda: perrequest.run_asgi(envs, log=log, **cfg["request"]))
    call_venvs = {"xray": ours}
    modes = ["xray"]
    if not args.quick:
        call_venvs["sdk"] = envs["aws-xray-sdk"]
        modes.append("sdk")
    attempt("per_call", lambda: percall.run(call_venvs, startup.launcher_environ(ours), modes,
                                            log=log, **cfg["call"]))
    attempt("emission", lambda: emission.run(ours, log=log, **cfg["emission"]))
    for name in ("daemon", "outbound_http", "sql", *EXTERNAL):
        attempt(name, lambda name=name: external.run(name, args.quick, log))
    attempt("e2e", lambda: e2e.run(envs, log=log, **cfg["e2e"]))
    attempt("e2e_asgi", lambda: e2e.run_asgi(envs, log=log, **cfg["e2e"]))

    results["targets"] = targets(sec)
    results["meta"]["seconds"] = round(time.time() - started, 1)
    text = render(results)
    sys.stdout.write(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    md = args.markdown or os.path.splitext(args.out)[0] + ".md"
    with open(md, "w") as f:
        f.write(text)
    log(f"wrote {args.out} and {md} ({results['meta']['seconds']:.0f} s)")
    failed = [n for n, d in sec.items() if isinstance(d, dict) and (
        "error" in d and n not in ("daemon", "outbound_http", "sql", *EXTERNAL)
        or d.get("returncode"))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
