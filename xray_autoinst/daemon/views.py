"""Terminal views of the store: the trace list, one trace's timeline, the service map.

Pure functions from data to text, so they are tested without a terminal. The data: the store's
summaries (``store.py``), merged traces (``tree.py``) and the service map (``servicemap.py``).
"""

from __future__ import annotations

import datetime
import json
import math
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from xray_autoinst.daemon.store import TRACE_JSON_KEYS
from xray_autoinst.daemon.tree import children, end_of, http_status, walk


@dataclass(frozen=True)
class Style:
    color: bool = False
    unicode: bool = True

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and text else text

    def red(self, t: str) -> str:
        return self.paint(t, "31")

    def yellow(self, t: str) -> str:
        return self.paint(t, "33")

    def magenta(self, t: str) -> str:
        return self.paint(t, "35")

    def dim(self, t: str) -> str:
        return self.paint(t, "2")

    def bold(self, t: str) -> str:
        return self.paint(t, "1")


# -- small formatting helpers ----------------------------------------------------------------
def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000.0
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.1f} ms"
    if seconds < 60:
        return f"{seconds:.3f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s"


def fmt_time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def clip(text: str, width: int) -> str:
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    return text[: max(0, width - 1)] + "…"


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _visible_len(text: str) -> int:
    return len(re.sub(r"\x1b\[[0-9;]*m", "", text))


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _visible_len(text))


def marks_of(summary_or_entity: dict) -> list[str]:
    out = []
    for key in ("fault", "error", "throttle"):
        if summary_or_entity.get(key) is True:
            out.append(key)
    if summary_or_entity.get("in_progress") is True:
        out.append("in progress")
    return out


def _style_mark(mark: str, style: Style) -> str:
    if mark == "fault":
        return style.red(mark)
    if mark == "error":
        return style.yellow(mark)
    if mark == "throttle":
        return style.magenta(mark)
    return style.dim(mark)


# -- traces ----------------------------------------------------------------------------------
def _short_url(url: str | None) -> str | None:
    """The path and query of an absolute URL (the service column already names the host)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def traces_json(summaries: list[dict]) -> list[dict]:
    return [{k: s.get(k) for k in TRACE_JSON_KEYS} for s in summaries]


def render_traces(summaries: list[dict], *, width: int = 120, style: Style = Style()) -> str:
    if not summaries:
        return "no traces\n"
    headers = ["TIME", "TRACE ID", "SERVICE", "REQUEST", "STATUS", "DURATION", "SEGS", "MARKS"]
    rows = []
    for s in summaries:
        request = " ".join(x for x in (s.get("method"), _short_url(s.get("url"))) if x) or "-"
        rows.append(
            [
                fmt_time(s.get("start_time")),
                s["trace_id"],
                s.get("service") or "-",
                one_line(request),
                str(s["status"]) if s.get("status") is not None else "-",
                fmt_duration(s.get("duration")),
                str(s.get("segments", 0)),
                " ".join(_style_mark(m, style) for m in marks_of(s)),
            ]
        )
    # Times of today need no date: the REQUEST column gets the room.
    today = datetime.date.today()
    if all(
        s.get("start_time") is not None
        and datetime.date.fromtimestamp(s["start_time"]) == today
        for s in summaries
    ):
        for r in rows:
            r[0] = r[0][11:]
    widths = [max(len(headers[i]), *(_visible_len(r[i]) for r in rows)) for i in range(8)]
    # SERVICE and REQUEST share what the other columns leave: REQUEST first (up to what it
    # needs), SERVICE keeps at least 12 characters (or what it needs, if less), at most 24.
    fixed = sum(w for i, w in enumerate(widths) if i not in (2, 3)) + 2 * 7
    room = max(0, width - fixed)
    service_need, request_need = min(widths[2], 24), widths[3]
    service_min = min(service_need, 12)
    widths[3] = max(12, min(request_need, room - service_min))
    widths[2] = max(len(headers[2]), min(service_need, room - widths[3]))
    lines = []
    for r in [headers, *rows]:
        cells = [clip(r[i], widths[i]) if i in (2, 3) else r[i] for i in range(8)]
        cells[5] = cells[5].rjust(widths[5])
        cells[6] = cells[6].rjust(widths[6])
        line = "  ".join(_pad(c, widths[i]) for i, c in enumerate(cells))
        lines.append(line.rstrip())
    lines[0] = style.bold(lines[0])
    return "\n".join(lines) + "\n"


# -- one trace -------------------------------------------------------------------------------
def describe(entity: dict) -> str:
    """What an entity did, for beside its name: SQL query, AWS operation, HTTP request."""
    sql = entity.get("sql")
    if isinstance(sql, dict):
        query = sql.get("sanitized_query")
        if isinstance(query, str) and query.strip():
            return one_line(query)
        kind = sql.get("database_type") or "SQL"
        return one_line(f"{kind} {sql.get('url') or ''}")
    aws = entity.get("aws")
    if isinstance(aws, dict) and isinstance(aws.get("operation"), str):
        parts = [aws["operation"]]
        for key in ("table_name", "queue_url", "bucket_name", "function_name", "topic_arn"):
            if isinstance(aws.get(key), str):
                parts.append(aws[key])
                break
        return " ".join(parts)
    http = entity.get("http")
    if isinstance(http, dict) and isinstance(http.get("request"), dict):
        req = http["request"]
        text = " ".join(str(req[k]) for k in ("method", "url") if isinstance(req.get(k), str))
        return one_line(text)
    return ""


def _exception_records(entities) -> dict:
    """Exception id -> (the entity that recorded it, the record), over ``entities``."""
    out: dict = {}
    for entity in entities:
        cause = entity.get("cause")
        excs = cause.get("exceptions") if isinstance(cause, dict) else None
        if isinstance(excs, list):
            for exc in excs:
                if isinstance(exc, dict) and isinstance(exc.get("id"), str):
                    out.setdefault(exc["id"], (entity, exc))
    return out


def _exception_line(entity: dict, records: dict | None = None) -> str | None:
    cause = entity.get("cause")
    if isinstance(cause, str) and cause:
        # the id of an exception recorded elsewhere (a child's record, as X-Ray allows)
        text = f"cause: see {cause}"
        found = (records or {}).get(cause)
        if found is not None:
            owner, exc = found
            kind = exc.get("type") or "exception"
            text += f" ({kind}, recorded by {owner.get('name') or '?'})"
        return one_line(text)
    if not isinstance(cause, dict):
        return None
    excs = cause.get("exceptions")
    if not isinstance(excs, list) or not excs or not isinstance(excs[0], dict):
        return None
    first = excs[0]
    kind = first.get("type") or "exception"
    message = first.get("message")
    return one_line(f"{kind}: {message}" if message else str(kind))


def _display_tree(merged: dict) -> list[tuple[dict, list[bool]]]:
    """Entities in display order, each with its ancestors' "is last child" flags.

    A segment called from a subsegment of this trace (a downstream service) is shown under it.
    """
    segments = merged.get("segments", [])
    known: set[str] = set()
    for top in segments:
        for entity, _ in walk(top):
            if isinstance(entity.get("id"), str):
                known.add(entity["id"])
    called: dict[str, list[dict]] = {}
    tops = []
    for seg in segments:
        parent = seg.get("parent_id")
        if isinstance(parent, str) and parent in known and parent != seg.get("id"):
            called.setdefault(parent, []).append(seg)
        else:
            tops.append(seg)
    tops.extend(merged.get("orphans", []))

    def kids(entity: dict) -> list[dict]:
        items = children(entity) + called.get(entity.get("id"), [])
        return sorted(items, key=lambda e: e.get("start_time") or 0)

    out: list[tuple[dict, list[bool]]] = []
    seen: set[int] = set()

    def visit(entity: dict, lasts: list[bool]) -> None:
        if id(entity) in seen:  # a malformed trace may loop
            return
        seen.add(id(entity))
        out.append((entity, lasts))
        items = kids(entity)
        for i, child in enumerate(items):
            visit(child, [*lasts, i == len(items) - 1])

    for top in tops:
        visit(top, [])
    return out


def _prefix(lasts: list[bool], style: Style) -> str:
    if not lasts:
        return ""
    if style.unicode:
        mid, last, bar, blank = "├─ ", "└─ ", "│  ", "   "
    else:
        mid, last, bar, blank = "|- ", "`- ", "|  ", "   "
    return "".join(blank if x else bar for x in lasts[:-1]) + (last if lasts[-1] else mid)


def render_trace(merged: dict, *, width: int = 120, style: Style = Style()) -> str:
    start = merged.get("start_time")
    end = merged.get("end_time")
    entries = _display_tree(merged)
    if start is None or not entries:
        return f"trace {merged.get('trace_id')}: no documents\n"
    if end is None or end < start:
        end = start
    total = end - start
    segments = merged.get("segments", [])
    root = segments[0] if segments else entries[0][0]
    count = f"{len(segments)} segment" + ("" if len(segments) == 1 else "s")
    head = [merged["trace_id"], fmt_time(start), fmt_duration(total), count]
    request = describe(root)
    if request:
        # the header stays on one line: the request is clipped to what the rest leaves
        room = width - sum(len(h) for h in head) - 2 * len(head)
        if room >= 12:
            head.insert(1, clip(one_line(f"{root.get('name')}: {request}"), room))
    lines = [style.bold("  ".join(head))]
    if merged.get("orphans"):
        lines.append(
            style.dim(f"({len(merged['orphans'])} subsegments whose parent has not arrived)")
        )

    bar_w = max(10, min(60, width // 3))
    dur_w = 10
    marks_w = 18
    name_w = max(20, width - bar_w - dur_w - marks_w - 6)
    full, empty, partial = ("█", "·", "░") if style.unicode else ("#", ".", "=")
    axis_left = "0"
    axis_right = fmt_duration(total)
    axis = axis_left + " " * max(1, bar_w - len(axis_left) - len(axis_right)) + axis_right
    lines.append(
        style.dim(_pad("ENTITY", name_w) + "  " + axis + "  " + "DURATION".rjust(dur_w) + "  MARKS")
    )
    records = _exception_records(e for e, _ in entries)
    for entity, lasts in entries:
        label = _prefix(lasts, style) + str(entity.get("name") or "?")
        what = describe(entity)
        if what:
            label += "  " + what
        label = clip(label, name_w)
        e_start = entity.get("start_time")
        e_end = end_of(entity)
        in_progress = entity.get("in_progress") is True or e_end is None
        if not isinstance(e_start, (int, float)):
            bar = " " * bar_w
        else:
            stop = e_end if e_end is not None else end
            if total > 0:
                a = int(math.floor((e_start - start) / total * bar_w))
                b = int(math.ceil((stop - start) / total * bar_w))
            else:
                a, b = 0, bar_w
            a = min(max(a, 0), bar_w - 1)
            b = min(max(b, a + 1), bar_w)
            fill = partial if in_progress else full
            bar = empty * a + fill * (b - a) + empty * (bar_w - b)
            if entity.get("fault") is True:
                bar = style.red(bar)
            elif entity.get("error") is True or entity.get("throttle") is True:
                bar = style.yellow(bar)
        duration = (
            fmt_duration(e_end - e_start)
            if e_end is not None and isinstance(e_start, (int, float))
            else "-"
        )
        marks = []
        status = http_status(entity)
        if status is not None:
            marks.append(str(status))
        flags = {"fault", "error", "throttle"} & {k for k in entity if entity.get(k) is True}
        marks += [m for m in ("fault", "error", "throttle") if m in flags]
        if in_progress:
            marks.append("in progress")
        mark_text = " ".join(_style_mark(m, style) for m in marks)
        lines.append(f"{_pad(label, name_w)}  {bar}  {duration.rjust(dur_w)}  {mark_text}".rstrip())
        exc = _exception_line(entity, records)
        if exc:
            indent = " " * (len(_prefix(lasts, style)) + 3)
            lines.append(style.red(clip(f"{indent}! {exc}", width)))
    return "\n".join(lines) + "\n"


# -- service map (the model is servicemap.py) --------------------------------------------------
def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _node_order(graph: dict) -> list[dict]:
    """Breadth-first from the client, then whatever is left."""
    by_id = {n["id"]: n for n in graph["nodes"]}
    out_edges: dict[str, list[str]] = {}
    for e in graph["edges"]:
        out_edges.setdefault(e["source"], []).append(e["target"])
    order, seen = [], set()
    starts = ["client"] if "client" in by_id else []
    starts += sorted(by_id)
    for s in starts:
        queue = [s]
        while queue:
            current = queue.pop(0)
            if current in seen or current not in by_id:
                continue
            seen.add(current)
            order.append(by_id[current])
            queue.extend(sorted(out_edges.get(current, [])))
    return order


def render_map(graph: dict, *, width: int = 120, style: Style = Style()) -> str:
    if not graph["nodes"]:
        return "no traces\n"
    arrow = "→" if style.unicode else "->"
    names = {n["id"]: n["name"] for n in graph["nodes"]}
    types = {n["id"]: n["type"] for n in graph["nodes"]}
    lines = [
        style.bold(
            f"service map of {graph['traces']} trace{'' if graph['traces'] == 1 else 's'}: "
            f"{len(graph['nodes'])} nodes, "
            f"{len(graph['edges'])} edges"
        ),
        "",
    ]

    def stats_text(item: dict) -> str:
        parts = [f"{item['requests']} req"]
        if item.get("avg_latency") is not None:
            parts.append(f"avg {fmt_duration(item['avg_latency'])}")
        for key, label, paint in (
            ("error_rate", "errors", style.yellow), ("fault_rate", "faults", style.red),
            ("throttle_rate", "throttled", style.magenta),
        ):
            if item.get(key):
                parts.append(paint(f"{label} {_pct(item[key])}"))
        return ", ".join(parts)

    for n in _node_order(graph):
        title = style.bold(n["name"])
        if n["type"] not in ("client", "service") and n["type"] != n["name"]:
            title += style.dim(f"  [{n['type']}]")
        if n["id"] == "client":
            lines.append(title)
        else:
            lines.append(f"{title}  {stats_text(n)}")
        for e in graph["edges"]:
            if e["source"] != n["id"]:
                continue
            target = names.get(e["target"], e["target"])
            kind = types.get(e["target"], "")
            label = clip(f"  {arrow} {target}" + (f" [{kind}]" if kind != "service" else ""), 60)
            lines.append(f"{_pad(label, 44)}  {stats_text(e)}")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped + '"'


def render_dot(graph: dict) -> str:
    lines = ["digraph xray_service_map {", "  rankdir=LR;", "  node [fontname=Helvetica];"]
    shapes = {"client": "circle", "remote": "cds"}
    for n in graph["nodes"]:
        shape = shapes.get(n["type"]) or (
            "cylinder" if n["type"].startswith("database::") else "box"
        )
        label = n["name"]
        if n["type"] not in ("client", "service"):
            label += "\n" + n["type"]
        if n["id"] != "client":
            label += f"\n{n['requests']} req"
            if n.get("avg_latency") is not None:
                label += f", avg {fmt_duration(n['avg_latency'])}"
        color = "red" if n.get("fault_rate") else "orange" if n.get("error_rate") else "black"
        lines.append(
            f"  {_dot_quote(n['id'])} [label={_dot_quote(label)}, shape={shape}, color={color}];"
        )
    for e in graph["edges"]:
        label = f"{e['requests']} req"
        if e.get("avg_latency") is not None:
            label += f"\navg {fmt_duration(e['avg_latency'])}"
        if e.get("error_rate"):
            label += f"\nerrors {_pct(e['error_rate'])}"
        if e.get("fault_rate"):
            label += f"\nfaults {_pct(e['fault_rate'])}"
        color = "red" if e.get("fault_rate") else "orange" if e.get("error_rate") else "black"
        lines.append(
            f"  {_dot_quote(e['source'])} -> {_dot_quote(e['target'])} "
            f"[label={_dot_quote(label)}, color={color}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def dumps(value) -> str:
    return json.dumps(value, indent=2, sort_keys=False) + "\n"
