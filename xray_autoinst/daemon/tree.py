"""Assemble a trace's documents into one tree, as the X-Ray service does.

Input: the stored documents of one trace (full segments with nested ``subsegments``, streamed
subsegments carrying ``type: "subsegment"`` and ``parent_id``, each already the complete version
when one arrived). Output: the segments, each with its streamed subsegments put back in place.
"""

from __future__ import annotations

import copy


def _start(entity: dict) -> float:
    value = entity.get("start_time")
    return float(value) if isinstance(value, (int, float)) else 0.0


def end_of(entity: dict) -> float | None:
    value = entity.get("end_time")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def http_status(entity: dict) -> int | None:
    """The HTTP response status an entity records, or None."""
    http = entity.get("http")
    if isinstance(http, dict) and isinstance(http.get("response"), dict):
        code = http["response"].get("status")
        if isinstance(code, int) and not isinstance(code, bool):
            return code
        if isinstance(code, str) and code.isdigit():
            return int(code)
    return None


def children(entity: dict) -> list[dict]:
    subs = entity.get("subsegments")
    if not isinstance(subs, list):
        return []
    return [s for s in subs if isinstance(s, dict)]


def walk(entity: dict, depth: int = 0):
    """Yield (entity, depth) for an entity and all its nested subsegments, depth first."""
    stack = [(entity, depth)]
    while stack:
        item, d = stack.pop()
        yield item, d
        stack.extend((c, d + 1) for c in reversed(children(item)))


def _better(new: dict, old: dict) -> bool:
    """A complete document beats an in-progress one; otherwise the first one stays."""
    return bool(old.get("in_progress")) and not new.get("in_progress")


def assemble(documents: list[dict], *, copy_input: bool = True) -> dict:
    """Merge the documents of one trace into ``{"segments": [...], "orphans": [...]}``.

    Orphans are streamed subsegments whose parent is not (yet) in the store.
    The result is a deep copy: the input is not modified (unless ``copy_input`` is false: then
    the documents, parsed for this call only, are reused as they are).
    """
    docs = copy.deepcopy(documents) if copy_input else list(documents)
    index: dict[str, dict] = {}
    parent_of: dict[str, dict] = {}

    def register(root: dict, parent: dict | None) -> None:
        stack = [(root, parent)]
        while stack:
            entity, holder = stack.pop()
            ident = entity.get("id")
            if isinstance(ident, str):
                if ident not in index or _better(entity, index[ident]):
                    index[ident] = entity
                    if holder is not None:
                        parent_of[ident] = holder
            stack.extend((c, entity) for c in children(entity))

    segments = [d for d in docs if d.get("type") != "subsegment"]
    streamed = [d for d in docs if d.get("type") == "subsegment"]
    # Keep one segment per id (the store already does; documents given by hand may not).
    unique: dict[str, dict] = {}
    for seg in sorted(segments, key=_start):
        ident = seg.get("id")
        key = ident if isinstance(ident, str) else str(id(seg))
        if key not in unique or _better(seg, unique[key]):
            unique[key] = seg
    segments = list(unique.values())
    for seg in segments:
        register(seg, None)

    pending = sorted(streamed, key=_start)
    while pending:
        left = []
        for sub in pending:
            ident = sub.get("id")
            existing = index.get(ident) if isinstance(ident, str) else None
            if existing is not None and existing is not sub:
                if _better(sub, existing):
                    holder = parent_of.get(ident)
                    if holder is not None:
                        holder["subsegments"] = [
                            sub if c is existing else c for c in children(holder)
                        ]
                    index[ident] = sub
                    register(sub, holder)
                continue
            parent = index.get(sub.get("parent_id"))
            if parent is None:
                left.append(sub)
                continue
            parent.setdefault("subsegments", [])
            if not isinstance(parent["subsegments"], list):
                parent["subsegments"] = []
            parent["subsegments"].append(sub)
            register(sub, parent)
        if len(left) == len(pending):
            break
        pending = left
    # Subsegments whose parent never arrived: keep the chains among them together.
    orphan_ids = {o.get("id") for o in pending if isinstance(o.get("id"), str)}
    orphans = []
    by_id = {o.get("id"): o for o in pending}

    def loops(sub: dict) -> bool:
        seen, current = 0, sub.get("parent_id")
        while current in orphan_ids and seen <= len(pending):
            if current == sub.get("id"):
                return True
            current = by_id[current].get("parent_id")
            seen += 1
        return False

    for sub in pending:
        parent = sub.get("parent_id")
        if parent in orphan_ids and not loops(sub):
            holder = by_id[parent]
            if not isinstance(holder.get("subsegments"), list):
                holder["subsegments"] = []
            holder["subsegments"].append(sub)
        else:
            orphans.append(sub)

    for seg in segments + orphans:
        for entity, _ in walk(seg):
            subs = children(entity)
            if subs:
                entity["subsegments"] = sorted(subs, key=_start)
    segments.sort(key=_start)
    return {"segments": segments, "orphans": orphans}


def merged_trace(trace_id: str, documents: list[dict], *, copy_input: bool = True) -> dict:
    """The JSON printed by ``xray-autoinst trace --json``."""
    tree = assemble(documents, copy_input=copy_input)
    starts = []
    ends = []
    for top in tree["segments"] + tree["orphans"]:
        for entity, _ in walk(top):
            if isinstance(entity.get("start_time"), (int, float)):
                starts.append(float(entity["start_time"]))
            end = end_of(entity)
            if end is not None:
                ends.append(end)
    start = min(starts) if starts else None
    end = max(ends) if ends else None
    out = {
        "trace_id": trace_id,
        "start_time": start,
        "end_time": end,
        "duration": (end - start) if start is not None and end is not None else None,
        "segments": tree["segments"],
    }
    if tree["orphans"]:
        out["orphans"] = tree["orphans"]
    return out
