"""Log correlation: what the ``logging`` integration adds to each record created, outside a
trace and inside a sampled one (the record factory only; formatting and handlers excluded).

    .venv/bin/python bench/bench_logs.py [--quick] [--out PATH]

Interleaved batches of record creation (the path every ``logger.info(...)`` that passes the
level check takes), the bare factory against the agent's; medians of per-record CPU time."""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time


class _Null:
    def submit(self, entity):
        pass

    def send_document(self, doc):
        return True

    def flush(self, timeout=0):
        pass


def _batch(factory, n):
    t0 = time.thread_time_ns()
    for _ in range(n):
        factory("bench", logging.INFO, __file__, 1, "message %s", (1,), None)
    return (time.thread_time_ns() - t0) / n / 1000.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    ap.add_argument("--out", help="write the results as JSON to this file")
    args = ap.parse_args(argv)
    rounds, n = (5, 2000) if args.quick else (41, 20000)

    from xray_autoinst import config
    from xray_autoinst.contrib import log_logging
    from xray_autoinst.core import tracer as tracer_mod

    t = tracer_mod.install(config.from_env({
        "XRAY_SAMPLING_RULES": '{"version": 2, "default": {"fixed_target": 0, "rate": 1.0}}',
        "XRAY_RESOURCE_DETECTION": "false"}), emitter=_Null())
    bare = logging.getLogRecordFactory()
    log_logging.patch()
    agent = logging.getLogRecordFactory()
    samples = {"bare": [], "agent, outside a trace": [], "agent, in a sampled request": []}
    seg, token = t.begin_segment("bench")
    tracer_mod.current_entity.reset(token)
    for _ in range(rounds):
        samples["bare"].append(_batch(bare, n))
        samples["agent, outside a trace"].append(_batch(agent, n))
        token = tracer_mod.current_entity.set(seg)
        samples["agent, in a sampled request"].append(_batch(agent, n))
        tracer_mod.current_entity.reset(token)
    log_logging.unpatch()
    base = statistics.median(samples["bare"])
    rows = []
    for name, values in samples.items():
        med = statistics.median(values)
        rows.append({"variant": name, "median_us": round(med, 3),
                     "added_us": round(med - base, 3)})
    print("| record creation | µs per record (CPU) | added |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['median_us']:.3f} | {r['added_us']:+.3f} |")
    print(f"\n{rounds} interleaved rounds of {n} records; target: ≤ 0.3 µs added per record.")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rows": rows, "rounds": rounds, "records": n}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
