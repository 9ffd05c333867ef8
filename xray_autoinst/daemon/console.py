"""The browser console's data: the answers of its JSON API, read from one trace store.

``Console`` answers ``/api/traces`` (summaries that match the filters of ``TraceFilter``, newest
first, with the total count and a latency histogram), ``/api/traces/ID`` (one merged trace),
``/api/map`` (the service map of a time range) and ``/api/status``; ``ui.py`` serves them over
HTTP. Query parameters and answers are bounded (``BadRequest`` says which parameter is not).

Two caches keep the answers fast on a store of 10,000 traces: one summary per trace and one
service map contribution per trace, each refreshed when the trace's ``last_seen`` changes.
"""

from __future__ import annotations

import bisect
import fnmatch
import json
import logging
import math
import os
import re
import sqlite3
import threading
import time

from xray_autoinst.daemon import servicemap
from xray_autoinst.daemon import store as store_mod
from xray_autoinst.daemon.tree import merged_trace

log = logging.getLogger("xray_autoinst.daemon")

MAX_TEXT = 256  # characters of one filter value
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000  # summaries in one answer
MAP_MAX_TRACES = 10_000  # traces behind one map
MAP_MAX_NODES = 300  # the busiest nodes of a map; the others are counted, not sent
HISTOGRAM_BINS = 40
COLD_BATCH = 200  # more changed traces than this: one scan of the documents table
FULL_REFRESH_S = 60.0  # read every traces row at least this often (not only the new ones)


class BadRequest(ValueError):
    """A query parameter is out of bounds; the message says which."""


# -- query parameters ------------------------------------------------------------------------
def _text(params: dict, name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    value = values[-1].strip()
    if len(value) > MAX_TEXT:
        raise BadRequest(f"{name}: at most {MAX_TEXT} characters")
    return value or None


def _number(params: dict, name: str, low: float = 0.0, high: float = 1e12) -> float | None:
    value = _text(params, name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise BadRequest(f"{name}: not a number") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise BadRequest(f"{name}: out of range")
    return number


def _limit(params: dict, default: int, high: int) -> int:
    value = _number(params, "limit", 1, high)
    return default if value is None else int(value)


MARKS = ("fault", "error", "throttle", "ok", "in_progress")


class TraceFilter:
    """The trace list's filters, from the query string (all optional, all combined)."""

    def __init__(self, params: dict):
        self.service = _text(params, "service")  # * wildcards
        self.status = _text(params, "status")  # 500 or 5xx
        if self.status is not None and not (
            len(self.status) == 3 and self.status[0] in "12345"
            and (self.status[1:].isdigit() or self.status[1:].lower() == "xx")
        ):
            raise BadRequest("status: a code like 500 or a class like 5xx")
        self.mark = _text(params, "mark")
        if self.mark is not None and self.mark not in MARKS:
            raise BadRequest("mark: one of " + ", ".join(MARKS))
        self.q = (_text(params, "q") or "").lower() or None  # URL or route substring
        self.trace = _text(params, "trace")  # trace id substring
        self.min = _number(params, "min")  # seconds
        self.max = _number(params, "max")
        self.since = _number(params, "since")  # epoch seconds
        self.until = _number(params, "until")
        self.node = _text(params, "node")  # a service map node id

        self._tests = self._compile()

    def _compile(self) -> list:
        """The filters as a list of predicates, cheapest first (run over 10,000 summaries)."""
        tests = []
        since, until, low, high = self.since, self.until, self.min, self.max
        if since is not None:
            tests.append(lambda s: s["start_time"] >= since)
        if until is not None:
            tests.append(lambda s: s["start_time"] <= until)
        if low is not None:
            tests.append(lambda s: s["duration"] is not None and s["duration"] >= low)
        if high is not None:
            tests.append(lambda s: s["duration"] is not None and s["duration"] <= high)
        if self.mark == "ok":
            tests.append(lambda s: not (s["fault"] or s["error"] or s["throttle"]))
        elif self.mark is not None:
            mark = self.mark
            tests.append(lambda s: s[mark])
        if self.status is not None:
            wanted = self.status
            tests.append(lambda s: store_mod.status_matches(s["status"], wanted))
        if self.trace is not None:
            part = self.trace.lower()
            tests.append(lambda s: part in s["trace_id"].lower())
        if self.q is not None:
            q = self.q
            tests.append(lambda s: q in _request_text(s))
        if self.service is not None:
            match = re.compile(fnmatch.translate(self.service)).match
            tests.append(lambda s: any(match(name) for name in s["services"]))
        return tests

    def matches(self, s: dict) -> bool:
        for test in self._tests:
            if not test(s):
                return False
        return True

    def select(self, summaries: list[dict]) -> list[dict]:
        tests = self._tests
        if not tests:
            return list(summaries)
        if len(tests) == 1:
            return [s for s in summaries if tests[0](s)]
        return [s for s in summaries if all(test(s) for test in tests)]


def _newest_first(summary: dict) -> float:
    return -summary["start_time"]


def _request_text(s: dict) -> str:
    text = s.get("_request")
    if text is None:
        text = s["_request"] = f"{s.get('method') or ''} {s.get('url') or ''}".lower()
    return text


# -- the console's data ----------------------------------------------------------------------
class Console:
    """Answers the API from one store. Thread-safe (one lock around the connection)."""

    def __init__(self, store_path: str):
        self.store_path = store_path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._summaries: dict[str, tuple[float, dict]] = {}  # trace_id -> (last_seen, summary)
        self._order: list[dict] = []  # summaries, newest first
        self._services: list[str] = []  # every service name, sorted
        self._data_version = None  # the store's PRAGMA data_version at the last refresh
        self._max_seen: float | None = None  # the largest last_seen read
        self._last_full = 0.0  # monotonic time of the last reading of every traces row
        self._memo: dict[tuple, dict] = {}  # answers since the store last changed
        self._contrib: dict[str, tuple[float, tuple]] = {}  # trace_id -> (last_seen, reduced)
        self._totals = servicemap.MapTotals()  # the map of the traces last asked for
        self._in_totals: dict[str, tuple] = {}  # trace_id -> the reduced contribution added

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> sqlite3.Connection | None:
        if self._conn is None:
            if not os.path.exists(self.store_path):
                return None
            conn = store_mod._connect(self.store_path)
            has = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'traces'"
            ).fetchone()[0]
            if not has:
                conn.close()
                return None
            self._conn = conn
        return self._conn

    def _refresh(self, conn: sqlite3.Connection) -> None:
        """Bring the summary cache up to date with the store (one snapshot).

        A changed store is read from its ``traces`` rows seen since the last refresh
        (``last_seen``); a count that does not add up (evictions) or a minute gone by reads
        every row again."""
        # data_version changes when another connection (the daemon's writer) commits: an idle
        # store costs one pragma a poll
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        cache = self._summaries
        full = self._max_seen is None or time.monotonic() - self._last_full > FULL_REFRESH_S
        conn.execute("BEGIN")
        try:
            count = conn.execute("SELECT count(*) FROM traces").fetchone()[0]
            changed = []
            if not full:
                rows = conn.execute(
                    "SELECT trace_id, last_seen, start_time, end_time FROM traces "
                    "WHERE last_seen >= ?", (self._max_seen,),
                ).fetchall()
                changed = [r for r in rows if (cache.get(r[0]) or (None,))[0] != r[1]]
                new = sum(1 for r in changed if r[0] not in cache)
                full = len(cache) + new != count
            if full:
                rows = conn.execute(
                    "SELECT trace_id, last_seen, start_time, end_time FROM traces"
                ).fetchall()
                changed = [r for r in rows if (cache.get(r[0]) or (None,))[0] != r[1]]
            docs: dict[str, list] = {}
            if len(changed) > COLD_BATCH:
                for row in conn.execute(
                    f"SELECT trace_id, {store_mod.SUMMARY_COLUMNS} FROM documents"
                ):
                    docs.setdefault(row[0], []).append(row[1:])
            else:
                for r in changed:
                    docs[r[0]] = conn.execute(
                        f"SELECT {store_mod.SUMMARY_COLUMNS} FROM documents WHERE trace_id = ?",
                        (r[0],),
                    ).fetchall()
        finally:
            conn.execute("COMMIT")
        if rows:
            top = max(r[1] for r in rows)
            self._max_seen = top if self._max_seen is None else max(self._max_seen, top)
        elif self._max_seen is None:
            self._max_seen = 0.0
        replaced = []
        added = []
        for trace_id, last_seen, start, end in changed:
            summary = store_mod.summary_of(trace_id, start, end, docs.get(trace_id) or [])
            if summary is not None:
                old = cache.get(trace_id)
                if old is not None:
                    replaced.append(old[1])
                cache[trace_id] = (last_seen, summary)
                added.append(summary)
        removed = False
        if full:
            self._last_full = time.monotonic()
            if len(cache) != count:
                live = {r[0] for r in rows}
                for trace_id in [t for t in cache if t not in live]:
                    del cache[trace_id]
                    self._contrib.pop(trace_id, None)
                    removed = True
        if not (added or removed):
            self._data_version = version
            return
        if removed or len(added) > 64:
            self._order = sorted(
                (v[1] for v in cache.values()), key=lambda s: s["start_time"], reverse=True
            )
            self._services = sorted({name for s in self._order for name in s["services"]})
        else:  # a few: out with their old versions, in at their place
            order = self._order
            for old in replaced:
                at = bisect.bisect_left(order, -old["start_time"], key=_newest_first)
                while at < len(order) and order[at] is not old:
                    at += 1
                if at < len(order):
                    del order[at]
            names = set(self._services)
            for summary in added:
                bisect.insort(order, summary, key=_newest_first)
                names.update(summary["services"])
            if len(names) != len(self._services):
                self._services = sorted(names)
        self._memo.clear()
        self._data_version = version

    def _sync_totals(self, summaries: list[dict], contribs: list[tuple]) -> dict:
        totals, members = self._totals, self._in_totals
        live = set()
        for s, reduced in zip(summaries, contribs, strict=True):
            trace_id = s["trace_id"]
            live.add(trace_id)
            old = members.get(trace_id)
            if old is not reduced:
                if old is not None:
                    totals.add(old, -1)
                totals.add(reduced)
                members[trace_id] = reduced
        for trace_id in [t for t in members if t not in live]:
            totals.add(members.pop(trace_id), -1)
        return totals.graph()

    def _contributions(self, conn: sqlite3.Connection, summaries: list[dict]) -> list[tuple]:
        """The service map contributions of these traces (cached per trace)."""
        cache = self._contrib
        versions = self._summaries
        missing = [
            s["trace_id"] for s in summaries
            if (cache.get(s["trace_id"]) or (None,))[0] != versions[s["trace_id"]][0]
        ]
        if missing:
            bodies: dict[str, list] = {}
            if len(missing) > COLD_BATCH:
                wanted = set(missing)
                for trace_id, body in conn.execute(
                    "SELECT trace_id, body FROM documents ORDER BY start_time, rowid"
                ):
                    if trace_id in wanted:
                        bodies.setdefault(trace_id, []).append(body)
            else:
                for trace_id in missing:
                    bodies[trace_id] = [b for (b,) in conn.execute(
                        "SELECT body FROM documents WHERE trace_id = ? ORDER BY start_time, rowid",
                        (trace_id,),
                    )]
            for trace_id in missing:
                docs = []
                for body in bodies.get(trace_id, ()):
                    try:
                        doc = json.loads(body)
                    except ValueError:
                        continue
                    if isinstance(doc, dict):
                        docs.append(doc)
                merged = merged_trace(trace_id, docs, copy_input=False)  # parsed just now
                reduced = servicemap.reduce_contribution(servicemap.map_contribution(merged))
                cache[trace_id] = (versions[trace_id][0], reduced)
        return [cache[s["trace_id"]][1] for s in summaries]

    def warm(self) -> None:
        """Fill the caches (the trace list's, then the map's)."""
        try:
            self.traces({})
            self.graph({})
        except Exception:  # the first request will say what is wrong
            log.debug("ui: warming the caches failed", exc_info=True)

    # -- the API -------------------------------------------------------------------------------
    def status(self) -> dict:
        with self._lock:
            conn = self._connection()
            count = 0
            if conn is not None:
                count = conn.execute("SELECT count(*) FROM traces").fetchone()[0]
        return {"store": self.store_path, "store_exists": conn is not None, "traces": count}

    def _remember(self, key: tuple, answer: dict) -> dict:
        if len(self._memo) >= 32:
            self._memo.clear()
        self._memo[key] = answer
        return answer

    def traces(self, params: dict) -> dict:
        filt = TraceFilter(params)
        limit = _limit(params, DEFAULT_LIMIT, MAX_LIMIT)
        key = ("traces", tuple(sorted((k, tuple(v)) for k, v in params.items())))
        with self._lock:
            conn = self._connection()
            if conn is None:
                return {"store_exists": False, "total": 0, "store_traces": 0, "traces": [],
                        "histogram": _histogram([]), "services": []}
            self._refresh(conn)
            if key in self._memo:
                return self._memo[key]
            return self._remember(key, self._traces(conn, filt, limit))

    def _traces(self, conn, filt: TraceFilter, limit: int) -> dict:
        matching = filt.select(self._order)
        if filt.node is not None:
            contribs = self._contributions(conn, matching)
            matching = [
                s for s, (nodes, _) in zip(matching, contribs, strict=True)
                if filt.node in nodes
            ]
        services = self._services
        store_traces = len(self._order)
        return {
            "store_exists": True,
            "total": len(matching),
            "store_traces": store_traces,
            "traces": [
                {k: s.get(k) for k in store_mod.TRACE_JSON_KEYS} for s in matching[:limit]
            ],
            "histogram": _histogram([s["duration"] for s in matching]),
            "services": services[:500],
        }

    def trace(self, text: str) -> dict | None:
        with self._lock:
            conn = self._connection()
            if conn is None:
                return None
            reader = store_mod.Store(conn, self.store_path, max_traces=0, max_bytes=0)
            matches = reader.resolve_trace_id(text)
            if len(matches) != 1:
                return None
            documents = reader.documents(matches[0])
        merged = merged_trace(matches[0], documents, copy_input=False)  # parsed just now
        merged["documents"] = len(documents)
        return merged

    def graph(self, params: dict) -> dict:
        since = _number(params, "since")
        until = _number(params, "until")
        service = _text(params, "service")
        limit = _limit(params, MAP_MAX_TRACES, MAP_MAX_TRACES)
        key = ("map", since, until, service, limit)
        with self._lock:
            conn = self._connection()
            if conn is None:
                return {"traces": 0, "nodes": [], "edges": [], "store_exists": False}
            self._refresh(conn)
            if key in self._memo:
                return self._memo[key]
            chosen = []
            for s in self._order:
                if since is not None and s["start_time"] < since:
                    continue
                if until is not None and s["start_time"] > until:
                    continue
                chosen.append(s)
                if len(chosen) >= limit:
                    break
            contribs = self._contributions(conn, chosen)
            # running totals, moved to the traces chosen: the next poll of the same view
            # (a new trace or two, a range that slid by a few seconds) costs what changed
            graph = self._sync_totals(chosen, contribs)
            if service is not None:
                graph = servicemap.focus_map(graph, service)
            graph = _bounded(graph, MAP_MAX_NODES)
            graph["store_exists"] = True
            return self._remember(key, graph)


def _bounded(graph: dict, most: int) -> dict:
    """At most ``most`` nodes (the client and the busiest others) and the edges among them."""
    nodes = graph["nodes"]
    if len(nodes) <= most:
        return {**graph, "nodes_left_out": 0}
    ranked = sorted(nodes, key=lambda n: (n["id"] != "client", -n["requests"], n["id"]))
    kept = ranked[:most]
    ids = {n["id"] for n in kept}
    edges = [e for e in graph["edges"] if e["source"] in ids and e["target"] in ids]
    return {**graph, "nodes": kept, "edges": edges, "nodes_left_out": len(nodes) - most}


def _histogram(durations: list) -> dict:
    """Counts of durations in HISTOGRAM_BINS equal bins from 0 to the largest one."""
    values = [d for d in durations if d is not None]
    if not values:
        return {"bins": [], "in_progress": len(durations)}
    top = max(values)
    low = min(values)
    if top <= low:
        low, top = max(0.0, low - 0.0005), low + 0.0005
    low = 0.0 if low < (top - low) else low  # start at 0 unless all are far from it
    width = (top - low) / HISTOGRAM_BINS
    counts = [0] * HISTOGRAM_BINS
    for d in values:
        counts[min(HISTOGRAM_BINS - 1, max(0, int((d - low) / width)))] += 1
    bins = [
        {"lo": low + i * width, "hi": low + (i + 1) * width, "count": c}
        for i, c in enumerate(counts)
    ]
    return {"bins": bins, "in_progress": len(durations) - len(values)}
