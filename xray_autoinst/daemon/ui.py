"""``xray-autoinst ui``: a read-only X-Ray console in the browser, over the local trace store.

The standard library's ``http.server`` serves the page (plain JavaScript modules and CSS shipped
in ``ui_static/``) and a small JSON API (documented in docs/console.md):

- ``GET /api/traces``: summaries of the traces that match the filters, newest first, with the
  total count and a latency histogram of all of them;
- ``GET /api/traces/ID``: one trace, its documents merged into one tree;
- ``GET /api/map``: the service map of the traces in a time range;
- ``GET /api/status``: the store and its size.

Everything is read-only (GET and HEAD only). Query strings and answers are bounded. The page
is served with a Content-Security-Policy that allows only its own scripts and styles, and the
page builds its DOM with ``textContent``: text from traces is never markup. Bound to loopback,
requests whose ``Host`` is not a loopback name are refused (DNS rebinding).

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from xray_autoinst.daemon import store as store_mod
from xray_autoinst.daemon import views
from xray_autoinst.daemon.tree import merged_trace

log = logging.getLogger("xray_autoinst.daemon")

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ui_static")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
DEFAULT_PORT = 2001
MAX_QUERY = 4096  # characters of query string
MAX_TEXT = 256  # characters of one filter value
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000  # summaries in one answer
MAP_MAX_TRACES = 10_000  # traces behind one map
MAP_MAX_NODES = 300  # the busiest nodes of a map; the others are counted, not sent
HISTOGRAM_BINS = 40
COLD_BATCH = 200  # more changed traces than this: one scan of the documents table
FULL_REFRESH_S = 60.0  # read every traces row at least this often (not only the new ones)
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


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
        self._totals = views.MapTotals()  # the map of the traces last asked for
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
                reduced = views.reduce_contribution(views.map_contribution(merged))
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
                {k: s.get(k) for k in views.TRACE_JSON_KEYS} for s in matching[:limit]
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
                graph = views.focus_map(graph, service)
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


# -- HTTP ------------------------------------------------------------------------------------
def _static_files() -> dict[str, str]:
    out = {}
    try:
        names = os.listdir(STATIC_DIR)
    except OSError:
        return out
    for name in names:
        ext = os.path.splitext(name)[1]
        if ext in CONTENT_TYPES:
            out[name] = os.path.join(STATIC_DIR, name)
    return out


class _Handler(BaseHTTPRequestHandler):
    server_version = "xray-autoinst-ui"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the console polls
        log.debug("ui: " + fmt, *args)

    def _host_allowed(self) -> bool:
        if not self.server.loopback_only:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        if host.startswith("["):
            name = host[: host.find("]") + 1] if "]" in host else host
        else:
            name = host.rsplit(":", 1)[0] if ":" in host else host
        return name in LOOPBACK_NAMES

    def _send(self, status: int, body: bytes, content_type: str, extra=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value) -> None:
        body = json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def do_GET(self):  # noqa: N802
        try:
            self._get()
        except BadRequest as exc:
            self._error(400, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # never a stack trace to the browser; once in the log
            log.exception("ui: %s failed", self.path[:200])
            try:
                self._error(500, "internal error (see the log)")
            except OSError:
                pass

    do_HEAD = do_GET  # noqa: N815

    def _refuse(self):
        self._error(405, "read-only: GET and HEAD only")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # noqa: N815

    def _get(self) -> None:
        if not self._host_allowed():
            self._error(403, "this console answers on loopback names only")
            return
        parts = urlsplit(self.path)
        if len(parts.query) > MAX_QUERY:
            raise BadRequest(f"query string: at most {MAX_QUERY} characters")
        try:
            params = parse_qs(parts.query, keep_blank_values=False, max_num_fields=50)
        except ValueError:
            raise BadRequest("query string: at most 50 parameters") from None
        path = parts.path
        console: Console = self.server.console
        if path in ("/", "/index.html"):
            self._static("index.html")
        elif path.startswith("/static/"):
            self._static(path[len("/static/"):])
        elif path == "/api/traces":
            self._json(200, console.traces(params))
        elif path.startswith("/api/traces/"):
            text = unquote(path[len("/api/traces/"):]).strip()
            if not text or len(text) > 64:
                raise BadRequest("trace id: 1 to 64 characters")
            merged = console.trace(text)
            if merged is None:
                self._error(404, "no such trace (or the prefix matches several)")
            else:
                self._json(200, merged)
        elif path == "/api/map":
            self._json(200, console.graph(params))
        elif path == "/api/status":
            self._json(200, console.status())
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._error(404, "not found")

    def _static(self, name: str) -> None:
        files = self.server.static_files
        if name not in files:  # a fixed list of names: no path from the request is opened
            self._error(404, "not found")
            return
        with open(files[name], "rb") as f:
            body = f.read()
        self._send(200, body, CONTENT_TYPES[os.path.splitext(name)[1]])


class ConsoleServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, console: Console, *, loopback_only: bool = True):
        host = address[0]
        if ":" in host:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.console = console
        self.loopback_only = loopback_only
        self.static_files = _static_files()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if ":" in host:
            host = f"[{host}]"
        elif host == "0.0.0.0":
            host = "127.0.0.1"
        return f"http://{host}:{port}/"


def is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def make_server(store_path: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                *, fallback: bool = False) -> ConsoleServer:
    """Bind the console; with ``fallback``, a busy port gives way to a free one."""
    console = Console(store_path)
    host = host.strip("[]")
    loopback = is_loopback(host)
    try:
        return ConsoleServer((host, port), console, loopback_only=loopback)
    except OSError:
        if not fallback or port == 0:
            raise
        return ConsoleServer((host, 0), console, loopback_only=loopback)


def serve_in_thread(server: ConsoleServer, *, warm: bool = True) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="xray-autoinst-ui",
                              kwargs={"poll_interval": 0.25}, daemon=True)
    thread.start()
    if warm:  # read the store once now, so that the first page does not wait for it
        threading.Thread(target=server.console.warm, name="xray-autoinst-ui-warm",
                         daemon=True).start()
    return thread


def run(store_path: str, host: str, port: int, stop: threading.Event | None = None,
        announce=None, *, fallback: bool = False, parent: int | None = None) -> int:
    """Serve until ``stop`` is set (or forever, or until the process ``parent`` is no longer
    this one's parent); ``announce(url)`` once listening."""
    server = make_server(store_path, host, port, fallback=fallback)
    if announce is not None:
        announce(server.url)
    stop = stop or threading.Event()
    thread = serve_in_thread(server)
    try:
        while not stop.wait(0.5):
            if parent is not None and os.getppid() != parent:
                break
    finally:
        server.shutdown()
        server.server_close()
        server.console.close()
        thread.join(5)
    return 0
