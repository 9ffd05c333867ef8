"""Per-request cost, in process: each tracer's WSGI middleware (and Flask integration) around a
trivial application, measured by ``wsgi_worker.py`` inside that tracer's virtualenv with a bare
baseline in the same process, batch by batch interleaved. Several rounds of worker processes
(the processes of a round run one after the other, in a rotating order)."""

from __future__ import annotations

from benchlib import closed_udp_port, rotate, run_worker, summary, worker_env

# (tracer / virtualenv, variants measured together in one process)
PLAN = [
    ("xray-autoinst", ["bare", "xray-sampled", "xray-unsampled",
                       "flask-bare", "flask-xray-sampled", "flask-xray-unsampled"]),
    ("aws-xray-sdk", ["bare", "sdk-sampled", "sdk-unsampled",
                      "flask-bare", "flask-sdk-sampled", "flask-sdk-unsampled"]),
    ("opentelemetry", ["bare", "otel-sampled", "otel-unsampled",
                       "flask-bare", "flask-otel-sampled", "flask-otel-unsampled"]),
    ("ddtrace", ["bare", "ddtrace-sampled", "flask-bare"]),
    # ddtrace instruments Flask for the whole process: its bare baseline is the process above
    ("ddtrace", ["flask-ddtrace-sampled"]),
]

LABELS = {
    "bare": "bare WSGI app",
    "xray-sampled": "xray-autoinst XRayMiddleware, sampled",
    "xray-unsampled": "xray-autoinst XRayMiddleware, unsampled",
    "sdk-sampled": "aws-xray-sdk minimal middleware, sampled",
    "sdk-unsampled": "aws-xray-sdk minimal middleware, unsampled",
    "otel-sampled": "OpenTelemetry WSGI middleware, sampled",
    "otel-unsampled": "OpenTelemetry WSGI middleware, unsampled (ALWAYS_OFF)",
    "ddtrace-sampled": "ddtrace DDWSGIMiddleware",
    "flask-bare": "bare Flask app",
    "flask-xray-sampled": "Flask + xray-autoinst, sampled",
    "flask-xray-unsampled": "Flask + xray-autoinst, unsampled",
    "flask-sdk-sampled": "Flask + aws-xray-sdk XRayMiddleware, sampled",
    "flask-sdk-unsampled": "Flask + aws-xray-sdk XRayMiddleware, unsampled",
    "flask-otel-sampled": "Flask + OpenTelemetry FlaskInstrumentor, sampled",
    "flask-otel-unsampled": "Flask + OpenTelemetry FlaskInstrumentor, unsampled",
    "flask-ddtrace-sampled": "Flask + ddtrace patch(flask=True)",
}

# the same for ASGI (``asgi_worker.py``): every baseline is in its own process
ASGI_PLAN = [
    ("xray-autoinst", ["bare", "xray-sampled", "xray-unsampled"]),
    ("opentelemetry", ["bare", "otel-sampled", "otel-unsampled"]),
    ("ddtrace", ["bare", "ddtrace-sampled"]),
    # as a server runs requests: one task (and context) each; the bare baseline pays the task
    ("xray-autoinst", ["task-bare", "task-xray-sampled", "task-xray-unsampled"]),
]
ASGI_LABELS = {
    "bare": "bare ASGI app",
    "xray-sampled": "xray-autoinst ASGI XRayMiddleware, sampled",
    "xray-unsampled": "xray-autoinst ASGI XRayMiddleware, unsampled",
    "otel-sampled": "OpenTelemetry ASGI OpenTelemetryMiddleware, sampled",
    "otel-unsampled": "OpenTelemetry ASGI OpenTelemetryMiddleware, unsampled (ALWAYS_OFF)",
    "ddtrace-sampled": "ddtrace ASGI TraceMiddleware",
    "task-bare": "bare ASGI app, a task per request",
    "task-xray-sampled": "xray-autoinst, sampled, a task per request",
    "task-xray-unsampled": "xray-autoinst, unsampled, a task per request",
}


def run_asgi(venvs: dict, rounds: int, batches: int, target_s: float, log=print) -> dict:
    return run(venvs, rounds, batches, target_s, log, plan=ASGI_PLAN, labels=ASGI_LABELS,
               script="asgi_worker.py")


def run(venvs: dict, rounds: int, batches: int, target_s: float, log=print, plan=PLAN,
        labels=LABELS, script="wsgi_worker.py") -> dict:
    plan = [(t, vs) for t, vs in plan if t in venvs]
    daemon = f"127.0.0.1:{closed_udp_port()}"
    env = worker_env({"DD_TRACE_AGENT_URL": "http://" + daemon,
                      "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
                      "DD_REMOTE_CONFIGURATION_ENABLED": "false", "DD_SERVICE": "bench",
                      "DD_TRACE_STARTUP_LOGS": "false"})
    # per (process index, variant): a list of per-round batch lists
    raw = {}
    versions = {}
    for r in range(rounds):
        log(f"  per request ({script}), round {r + 1}/{rounds}")
        for idx in rotate(range(len(plan)), r):
            tracer, vs = plan[idx]
            spec = {"variants": vs, "batches": batches, "target_s": target_s,
                    "daemon": daemon}
            res = run_worker(venvs[tracer].python, script, spec, env=env)
            versions.setdefault(tracer, {}).update(res["versions"])
            for v, rec in res["variants"].items():
                raw.setdefault((idx, v), []).append(rec)
    rows = []
    for idx, (tracer, vs) in enumerate(plan):
        for v in vs:
            recs = raw[(idx, v)]
            row = {"variant": v, "label": labels.get(v, v), "tracer": tracer,
                   "batch_size": recs[0]["batch"]}
            for key in ("wall", "thread", "cpu"):
                row[key + "_us"] = summary([x for rec in recs for x in rec[key]])
            base = next((p + "bare" for p in ("flask-", "task-") if v.startswith(p)), "bare")
            if v != base:
                if (idx, base) in raw:  # same process: differences of interleaved batches
                    brecs = raw[(idx, base)]
                    row["baseline"] = "same process"
                    for key in ("wall", "thread", "cpu"):
                        diffs = [a - b for rec, brec in zip(recs, brecs, strict=False)
                                 for a, b in zip(rec[key], brec[key], strict=False)]
                        row[key + "_overhead_us"] = summary(diffs)
                else:  # the baseline ran in the previous process of the same round
                    bidx = max(i for i in range(idx) if (i, base) in raw
                               and plan[i][0] == tracer)
                    brecs = raw[(bidx, base)]
                    row["baseline"] = "other process, same round"
                    for key in ("wall", "thread", "cpu"):
                        diffs = []
                        for rec, brec in zip(recs, brecs, strict=False):
                            b = summary(brec[key])["median"]
                            diffs += [a - b for a in rec[key]]
                        row[key + "_overhead_us"] = summary(diffs)
                bmed = summary([x for rec in brecs for x in rec["wall"]])["median"]
                row["ratio"] = row["wall_us"]["median"] / bmed
            rows.append(row)
    return {"rounds": rounds, "batches_per_round": batches, "rows": rows, "versions": versions}
