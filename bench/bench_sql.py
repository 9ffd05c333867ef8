"""Per-call overhead of the SQL integrations: the same statement bare and instrumented.

    .venv/bin/python bench/bench_sql.py [--quick] [--json]

In-process. For each driver, rounds of K statements alternate (rotated) between:

  sampled       inside sampled request segments of 10 statements: one subsegment per
                statement; each segment is ended and encoded to JSON on the calling thread,
                so the encoding is counted (the worst case: normally the emitter's thread)
  sampled-path  the same with the encoding left out: the cost on the request's own path
  unsampled     inside unsampled requests
  outside       no segment at all (XRAY_CONTEXT_MISSING=ignore)

each run with the driver unpatched (bare) and patched, back to back. The medians of per-call
times are printed with the paired overhead (patched - bare, median of the differences of
interleaved rounds) and the ratio. sqlite3 uses ``:memory:``; psycopg 3
and psycopg2 use the local PostgreSQL at 127.0.0.1:5432 (skipped when it is not running), where
the round trip dominates and the overhead is the same few microseconds in a larger, noisier
total. Also: the sanitizer itself, cached and uncached.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from xray_autoinst import config as _config  # noqa: E402
from xray_autoinst.core import encoder  # noqa: E402
from xray_autoinst.core import tracer as _tracer_mod  # noqa: E402

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
QUERY_SQLITE = "SELECT id, name FROM items WHERE id = ?"
QUERY_PG = "SELECT %s::int AS id, 'name' AS name"


class EncodingEmitter:
    """Encodes what it is given (on the calling thread) and drops it: no socket."""

    def __init__(self):
        self.documents = 0

    def submit(self, entity):
        self.documents += len(encoder.documents(entity))

    def send_document(self, doc):
        self.documents += 1
        return True

    def flush(self, timeout=0):
        pass


class NullEmitter(EncodingEmitter):
    """Drops what it is given: the cost left on the request's thread when the emitter's own
    thread does the encoding."""

    def submit(self, entity):
        self.documents += 1


def make_tracer(rate):
    rules = '{"version": 2, "default": {"fixed_target": 0, "rate": %s}}' % rate
    cfg = _config.from_env({"XRAY_SAMPLING_RULES": rules, "XRAY_SAMPLING": "local"})
    return _tracer_mod.install(cfg, EncodingEmitter())


def postgres_up():
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


# -- drivers ------------------------------------------------------------------------------------
class Sqlite3:
    name = "sqlite3 cursor.execute (:memory:)"

    def __init__(self):
        import sqlite3

        from xray_autoinst.contrib import db_sqlite3

        self.patcher = db_sqlite3
        self.bare = self._open(sqlite3)
        db_sqlite3.patch()
        self.traced = self._open(sqlite3)
        db_sqlite3.unpatch()

    @staticmethod
    def _open(sqlite3):
        conn = sqlite3.connect(":memory:")
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO items (name) VALUES (?)", [("x",)] * 10)
        return conn, conn.cursor()

    def call(self, traced):
        _conn, cur = self.traced if traced else self.bare

        def run():
            cur.execute(QUERY_SQLITE, (3,))
            cur.fetchall()

        return run

    def close(self):
        self.bare[0].close()
        self.traced[0].close()


class Sqlite3Conn(Sqlite3):
    name = "sqlite3 conn.execute (:memory:)"

    def call(self, traced):
        conn, _cur = self.traced if traced else self.bare

        def run():
            conn.execute(QUERY_SQLITE, (3,)).fetchall()

        return run


class Psycopg:
    name = "psycopg 3 cursor.execute (local PostgreSQL)"

    def __init__(self):
        import psycopg

        from xray_autoinst.contrib import db_psycopg

        self.patcher = db_psycopg
        self.conn = psycopg.connect(DSN, autocommit=True)
        self.cur = self.conn.cursor()

    def call(self, traced):
        # psycopg 3 is patched on its classes: the same connection either way
        cur = self.cur

        def run():
            cur.execute(QUERY_PG, (3,))
            cur.fetchall()

        return run

    def close(self):
        self.conn.close()


class Psycopg2:
    name = "psycopg2 cursor.execute (local PostgreSQL)"

    def __init__(self):
        import psycopg2

        from xray_autoinst.contrib import db_psycopg2

        self.patcher = db_psycopg2
        self.bare = psycopg2.connect(DSN)
        db_psycopg2.patch()
        self.traced = psycopg2.connect(DSN)
        db_psycopg2.unpatch()
        for c in (self.bare, self.traced):
            c.autocommit = True
        self.bare_cur = self.bare.cursor()
        self.traced_cur = self.traced.cursor()

    def call(self, traced):
        cur = self.traced_cur if traced else self.bare_cur

        def run():
            cur.execute(QUERY_PG, (3,))
            cur.fetchall()

        return run

    def close(self):
        self.bare.close()
        self.traced.close()


# -- measuring ------------------------------------------------------------------------------------
PER_SEGMENT = 10  # statements per request segment, as a request would make
# the calling thread's CPU time by default: the agent's cost is CPU on the caller's thread, and
# CPU time is far less disturbed than wall time by other processes on a busy machine (for
# PostgreSQL it also leaves out the wait for the server); --clock wall for wall time
CLOCK = time.thread_time


def round_time(run, k, tracer, context):
    """Seconds per call over ``k`` calls made in segments of PER_SEGMENT calls: ``context`` is
    "sampled" or "unsampled" (a request segment opened and ended around each group, so bare
    and traced rounds pay the same segment cost) or None (outside any segment)."""
    begin, end = tracer.begin_segment, tracer.end_segment
    t0 = CLOCK()
    for _ in range(k // PER_SEGMENT):
        if context is not None:
            seg, token = begin("bench")
        for _ in range(PER_SEGMENT):
            run()
        if context is not None:
            end(seg, token)  # the emitter is handed the segment (encodes it, or not)
    return (CLOCK() - t0) / k


# variant -> (context, emitter encodes); each is run patched and unpatched ("bare")
VARIANTS = {
    "sampled": ("sampled", True),
    "sampled-path": ("sampled", False),
    "unsampled": ("unsampled", True),
    "outside": (None, True),
}


def bench_driver(driver, rounds, k):
    tracers = {}

    def tracer_for(context, encodes):
        key = (context == "unsampled", encodes)
        if key not in tracers:
            t = make_tracer(0.0 if key[0] else 1.0)
            if not encodes:
                t.emitter = NullEmitter()
            tracers[key] = (t.config, t.emitter)
        cfg, emitter = tracers[key]
        return _tracer_mod.install(cfg, emitter)

    configs = [(v, patched) for v in VARIANTS for patched in (False, True)]
    times = {c: [] for c in configs}
    runs = {False: driver.call(False), True: driver.call(True)}
    warm = max(2, rounds // 10)
    for i in range(rounds + warm):
        # interleaved, each pair bare/patched back to back, the start rotated every round
        for variant, patched in configs[2 * (i % 4):] + configs[:2 * (i % 4)]:
            context, encodes = VARIANTS[variant]
            t = tracer_for(context, encodes)
            if patched:
                driver.patcher.patch()
            try:
                dt = round_time(runs[patched], k, t, context)
            finally:
                if patched:
                    driver.patcher.unpatch()
            if i >= warm:
                times[(variant, patched)].append(dt)
    driver.close()
    out = {"name": driver.name, "rounds": rounds, "calls_per_round": k}
    out["bare_us"] = statistics.median(times[("outside", False)]) * 1e6
    for v in VARIANTS:
        bare, traced = times[(v, False)], times[(v, True)]
        diffs = [a - b for a, b in zip(traced, bare, strict=True)]
        out[v + "_bare_us"] = statistics.median(bare) * 1e6
        out[v + "_us"] = statistics.median(traced) * 1e6
        out[v + "_overhead_us"] = statistics.median(diffs) * 1e6
        out[v + "_ratio"] = statistics.median(traced) / statistics.median(bare)
    return out


def bench_sanitizer(n):
    from xray_autoinst.contrib import _sql_sanitize as _sql

    q = ("SELECT u.id, u.name, o.total FROM users u JOIN orders o ON o.user_id = u.id "
         "WHERE u.email = %s AND o.status IN ('paid', 'shipped') ORDER BY o.created_at DESC "
         "LIMIT 20")
    _sql.sanitize(q)
    t0 = time.perf_counter()
    for _ in range(n):
        _sql.sanitize(q)
    cached = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(n // 10):
        _sql._sanitize(q)
    uncached = (time.perf_counter() - t0) / (n // 10)
    return {"name": "sanitizer (%d-char query)" % len(q), "cached_us": cached * 1e6,
            "uncached_us": uncached * 1e6}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="cpu: the thread's CPU time (default); wall: elapsed time")
    args = ap.parse_args(argv)
    global CLOCK
    CLOCK = time.thread_time if args.clock == "cpu" else time.perf_counter
    local_rounds, local_k = (10, 200) if args.quick else (61, 1000)
    pg_rounds, pg_k = (5, 50) if args.quick else (31, 200)

    drivers = [(Sqlite3, local_rounds, local_k), (Sqlite3Conn, local_rounds, local_k)]
    skipped = []
    if postgres_up():
        drivers += [(Psycopg, pg_rounds, pg_k), (Psycopg2, pg_rounds, pg_k)]
    else:
        skipped.append("psycopg/psycopg2: no PostgreSQL on 127.0.0.1:5432")
    results = []
    for cls, rounds, k in drivers:
        try:
            results.append(bench_driver(cls(), rounds, k))
        except ImportError as exc:
            skipped.append("%s: %s" % (cls.name, exc))
    san = bench_sanitizer(2000 if args.quick else 100000)
    if args.json:
        print(json.dumps({"clock": args.clock, "drivers": results, "sanitizer": san,
                          "skipped": skipped}, indent=1))
        return 0
    print("SQL per-call overhead (median of %s; microseconds of %s per statement)"
          % ("quick rounds" if args.quick else "interleaved rounds",
             "the thread's CPU time" if args.clock == "cpu" else "wall time"))
    for r in results:
        print("\n%s  [%d rounds x %d calls]" % (r["name"], r["rounds"], r["calls_per_round"]))
        print("  %-12s %9s %9s %10s %7s" % ("", "bare", "traced", "overhead", "ratio"))
        for v in VARIANTS:
            print("  %-12s %9.2f %9.2f %+10.2f %7.3f" % (
                v, r[v + "_bare_us"], r[v + "_us"], r[v + "_overhead_us"], r[v + "_ratio"]))
    print("\n%s: cached %.2f us, uncached %.2f us" % (san["name"], san["cached_us"],
                                                     san["uncached_us"]))
    for s in skipped:
        print("skipped:", s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
