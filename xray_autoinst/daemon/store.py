"""The SQLite trace store shared by the daemon (the one writer) and the views (readers).

WAL mode lets ``xray-autoinst traces`` read while the daemon writes. A document is kept once
per (trace_id, id): a complete document replaces an ``in_progress`` one, never the other way.
The store is bounded: the oldest traces (first seen first) are evicted when there are more than
``max_traces`` of them or the database holds more than ``max_bytes``.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import sqlite3

log = logging.getLogger("xray_autoinst.daemon")

SCHEMA_VERSION = "1"
DEFAULT_MAX_TRACES = 10_000
DEFAULT_MAX_MB = 256
PAGE_SIZE = 16384
# the keys of a trace summary that users see (`traces --json`, the console's trace list)
TRACE_JSON_KEYS = (
    "trace_id", "start_time", "end_time", "duration", "service", "method", "url", "status",
    "segments", "documents", "fault", "error", "throttle", "in_progress", "services",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS traces (
    seq INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL UNIQUE,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    start_time REAL NOT NULL,
    end_time REAL
);
CREATE TABLE IF NOT EXISTS documents (
    trace_id TEXT NOT NULL,
    id TEXT NOT NULL,
    parent_id TEXT,
    kind TEXT NOT NULL,
    name TEXT,
    in_progress INTEGER NOT NULL,
    start_time REAL NOT NULL,
    end_time REAL,
    http_method TEXT,
    url TEXT,
    status INTEGER,
    fault INTEGER NOT NULL,
    error INTEGER NOT NULL,
    throttle INTEGER NOT NULL,
    received REAL NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (trace_id, id)
);
"""

_COLUMNS = (
    "trace_id, id, parent_id, kind, name, in_progress, start_time, end_time, http_method, url, "
    "status, fault, error, throttle, received, body"
)
_UPSERT_DOCUMENT = f"""
INSERT INTO documents ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (trace_id, id) DO UPDATE SET
    parent_id = excluded.parent_id, kind = excluded.kind, name = excluded.name,
    in_progress = excluded.in_progress, start_time = excluded.start_time,
    end_time = excluded.end_time, http_method = excluded.http_method, url = excluded.url,
    status = excluded.status, fault = excluded.fault, error = excluded.error,
    throttle = excluded.throttle, received = excluded.received, body = excluded.body
WHERE documents.in_progress = 1 OR excluded.in_progress = 0
"""
_UPSERT_TRACE = """
INSERT INTO traces (trace_id, first_seen, last_seen, start_time, end_time) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (trace_id) DO UPDATE SET
    last_seen = excluded.last_seen,
    start_time = min(traces.start_time, excluded.start_time),
    end_time = CASE
        WHEN traces.end_time IS NULL THEN excluded.end_time
        WHEN excluded.end_time IS NULL THEN traces.end_time
        ELSE max(traces.end_time, excluded.end_time) END
"""


class StoreMissing(Exception):
    """The store file does not exist (no daemon has written to it yet)."""


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


class Store:
    """One connection to a trace store. Not shared between threads without a lock."""

    def __init__(self, conn: sqlite3.Connection, path: str, *, max_traces: int, max_bytes: int):
        self._conn = conn
        self.path = path
        self.max_traces = max_traces
        self.max_bytes = max_bytes
        self.evicted = 0

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open_writer(
        cls,
        path: str,
        *,
        max_traces: int = DEFAULT_MAX_TRACES,
        max_bytes: int = DEFAULT_MAX_MB * 1024 * 1024,
    ) -> Store:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if not os.path.exists(path):
            # Traces hold URLs, SQL and user names: keep the file private.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        conn = _connect(path)
        # Before the first table exists: 16 KiB pages make a typical document (about 1 KiB)
        # cost a third less to write and evict than the default 4 KiB (measured).
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("store %s: no WAL mode (%s); views may wait for writes", path, mode)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(_SCHEMA)
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (SCHEMA_VERSION,),
        )
        return cls(conn, path, max_traces=max_traces, max_bytes=max_bytes)

    @classmethod
    def open_reader(cls, path: str) -> Store:
        if not os.path.exists(path):
            raise StoreMissing(path)
        conn = _connect(path)
        return cls(conn, path, max_traces=0, max_bytes=0)

    def close(self) -> None:
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self._conn.close()

    def close_reader(self) -> None:
        self._conn.close()

    # -- writing ---------------------------------------------------------------------------
    def write(self, rows: list[tuple]) -> None:
        """Store a batch of document rows (see ``protocol.document_row``) in one transaction."""
        if not rows:
            return
        traces: dict[str, list] = {}
        for row in rows:
            agg = traces.get(row[0])
            start, end, received = row[6], row[7], row[14]
            if agg is None:
                traces[row[0]] = [received, received, start, end]
            else:
                if received > agg[1]:
                    agg[1] = received
                if start < agg[2]:
                    agg[2] = start
                if end is not None and (agg[3] is None or end > agg[3]):
                    agg[3] = end
        conn = self._conn
        conn.execute("BEGIN")
        try:
            conn.executemany(_UPSERT_DOCUMENT, rows)
            conn.executemany(
                _UPSERT_TRACE, [(tid, a[0], a[1], a[2], a[3]) for tid, a in traces.items()]
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def size_bytes(self) -> int:
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        return (pages - free) * size

    def evict(self) -> int:
        """Drop the oldest traces while over either bound; return how many were dropped."""
        dropped = 0
        count = self.count_traces()
        if self.max_traces and count > self.max_traces:
            dropped += self._drop_oldest(count - self.max_traces)
            count -= dropped
        while self.max_bytes and count > 0 and self.size_bytes() > self.max_bytes:
            n = max(1, count // 20)
            dropped += self._drop_oldest(n)
            count -= n
        self.evicted += dropped
        return dropped

    def _drop_oldest(self, n: int) -> int:
        conn = self._conn
        conn.execute("BEGIN")
        try:
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS doomed (trace_id TEXT PRIMARY KEY)"
            )
            conn.execute("DELETE FROM doomed")
            conn.execute(
                "INSERT INTO doomed SELECT trace_id FROM traces ORDER BY seq LIMIT ?", (n,)
            )
            conn.execute("DELETE FROM documents WHERE trace_id IN (SELECT trace_id FROM doomed)")
            cur = conn.execute("DELETE FROM traces WHERE trace_id IN (SELECT trace_id FROM doomed)")
            dropped = cur.rowcount
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return dropped

    # -- reading ---------------------------------------------------------------------------
    def _has_tables(self) -> bool:
        row = self._conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'traces'"
        ).fetchone()
        return bool(row[0])

    def count_traces(self) -> int:
        if not self._has_tables():
            return 0
        return self._conn.execute("SELECT count(*) FROM traces").fetchone()[0]

    def count_documents(self) -> int:
        if not self._has_tables():
            return 0
        return self._conn.execute("SELECT count(*) FROM documents").fetchone()[0]

    def resolve_trace_id(self, text: str) -> list[str]:
        """Trace ids matching ``text``: an exact id, a unique prefix, or ``latest``."""
        if not self._has_tables():
            return []
        if text in ("latest", "last"):
            row = self._conn.execute(
                "SELECT trace_id FROM traces ORDER BY start_time DESC LIMIT 1"
            ).fetchone()
            return [row[0]] if row else []
        candidates = [text] if text.startswith("1-") else [text, "1-" + text]
        for candidate in candidates:
            row = self._conn.execute(
                "SELECT trace_id FROM traces WHERE trace_id = ?", (candidate,)
            ).fetchone()
            if row:
                return [row[0]]
        for candidate in candidates:
            rows = self._conn.execute(
                "SELECT trace_id FROM traces WHERE substr(trace_id, 1, ?) = ? LIMIT 20",
                (len(candidate), candidate),
            ).fetchall()
            if rows:
                return [r[0] for r in rows]
        return []

    def documents(self, trace_id: str) -> list[dict]:
        """The parsed documents of one trace, earliest first."""
        if not self._has_tables():
            return []
        out = []
        for (body,) in self._conn.execute(
            "SELECT body FROM documents WHERE trace_id = ? ORDER BY start_time, rowid",
            (trace_id,),
        ):
            try:
                doc = json.loads(body)
            except ValueError:
                continue
            if isinstance(doc, dict):
                out.append(doc)
        return out

    def trace_ids(
        self, *, since: float | None = None, until: float | None = None,
        limit: int | None = None,
    ) -> list[str]:
        """Trace ids, newest first."""
        if not self._has_tables():
            return []
        sql = "SELECT trace_id FROM traces WHERE 1"
        args: list = []
        if since is not None:
            sql += " AND start_time >= ?"
            args.append(since)
        if until is not None:
            sql += " AND start_time <= ?"
            args.append(until)
        sql += " ORDER BY start_time DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [r[0] for r in self._conn.execute(sql, args)]

    def summaries(
        self,
        *,
        since: float | None = None,
        limit: int | None = 50,
        service: str | None = None,
        status: str | None = None,
        min_duration: float | None = None,
    ) -> list[dict]:
        """Trace summaries, newest first, filtered as ``xray-autoinst traces`` asks."""
        if not self._has_tables():
            return []
        sql = "SELECT trace_id, start_time, end_time, first_seen FROM traces"
        args: list = []
        if since is not None:
            sql += " WHERE start_time >= ?"
            args.append(since)
        sql += " ORDER BY start_time DESC"
        rows = self._conn.execute(sql, args).fetchall()
        out: list[dict] = []
        for trace_id, start, end, _first_seen in rows:
            if min_duration is not None and (end is None or end - start < min_duration):
                continue
            summary = self._summary(trace_id, start, end)
            if summary is None:
                continue
            if service is not None and not any(
                fnmatch.fnmatchcase(name, service) for name in summary["services"]
            ):
                continue
            if status is not None and not status_matches(summary["status"], status):
                continue
            out.append(summary)
            if limit is not None and len(out) >= limit:
                break
        return out

    def _summary(self, trace_id: str, start: float, end: float | None) -> dict | None:
        docs = self._conn.execute(
            f"SELECT {SUMMARY_COLUMNS} FROM documents WHERE trace_id = ?", (trace_id,),
        ).fetchall()
        return summary_of(trace_id, start, end, docs)


SUMMARY_COLUMNS = (
    "kind, id, parent_id, name, in_progress, start_time, end_time, http_method, url, status, "
    "fault, error, throttle"
)


def summary_of(trace_id: str, start: float, end: float | None, docs: list) -> dict | None:
    """A trace's summary from its documents' ``SUMMARY_COLUMNS`` rows."""
    if not docs:
        return None
    segments = [d for d in docs if d[0] == "segment"]
    ids = {d[1] for d in docs}
    roots = [d for d in segments if d[2] is None] or [
        d for d in segments if d[2] not in ids
    ] or segments or docs
    root = min(roots, key=lambda d: d[5])
    services: list[str] = []
    for d in sorted(segments, key=lambda d: d[5]):
        if d[3] and d[3] not in services:
            services.append(d[3])
    return {
        "trace_id": trace_id,
        "start_time": start,
        "end_time": end,
        "duration": (end - start) if end is not None else None,
        "service": root[3] if root[0] == "segment" else None,
        "services": services,
        "method": root[7],
        "url": root[8],
        "status": root[9],
        "segments": len(segments),
        "documents": len(docs),
        "fault": any(d[10] for d in docs),
        "error": any(d[11] for d in docs),
        "throttle": any(d[12] for d in docs),
        "in_progress": any(d[4] for d in docs),
    }


def status_matches(status: int | None, wanted: str) -> bool:
    """``500`` matches 500; ``5xx`` (or ``5XX``) matches 500-599."""
    if status is None:
        return False
    wanted = wanted.strip().lower()
    if len(wanted) == 3 and wanted[0].isdigit() and wanted[1:] == "xx":
        return status // 100 == int(wanted[0])
    return wanted.isdigit() and status == int(wanted)


