"""The service map model: what each merged trace adds to the map, and running totals of it.

A node is a service (one per segment name), a database, an AWS service or a remote host; an edge
is a call, with the caller's view of it (requests, latency, faults, errors, throttles). The
terminal renders it (``views.render_map``, ``views.render_dot``), the browser console keeps one
``MapTotals`` up to date as the store changes (``console.Console``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from xray_autoinst.daemon.tree import children, end_of, http_status, walk


def _duration(entity: dict) -> float | None:
    start = entity.get("start_time")
    end = end_of(entity)
    if isinstance(start, (int, float)) and end is not None and end >= start:
        return end - start
    return None


def _outcome(entity: dict) -> tuple[bool, bool, bool]:
    status = http_status(entity)
    fault = entity.get("fault") is True or (status is not None and status >= 500)
    throttle = entity.get("throttle") is True or status == 429
    error = entity.get("error") is True or throttle or (status is not None and 400 <= status < 500)
    return fault, error, throttle


def _downstream_node(entity: dict) -> tuple[str, str, str] | None:
    """(id, name, type) of the node a subsegment calls, or None for local work."""
    name = str(entity.get("name") or "?")
    sql = entity.get("sql")
    if isinstance(sql, dict):
        kind = sql.get("database_type") or "SQL"
        return f"database:{name}", name, f"database::{kind}"
    namespace = entity.get("namespace")
    if namespace == "aws":
        return f"aws:{name}", name, f"AWS::{name}"
    if namespace == "remote":
        http = entity.get("http")
        host = None
        if isinstance(http, dict) and isinstance(http.get("request"), dict):
            url = http["request"].get("url")
            if isinstance(url, str):
                host = urlsplit(url).hostname
        host = host or name
        return f"remote:{host}", host, "remote"
    return None


def _sample(entity: dict) -> tuple:
    return (_duration(entity), *_outcome(entity))


def map_contribution(trace: dict) -> tuple[list[tuple], list[tuple]]:
    """What one merged trace adds to the service map, as plain tuples (cheap to cache).

    Nodes: ``(id, name, type, sample)``; edges: ``(source, target, sample)``, where a sample is
    ``(duration, fault, error, throttle)``. An edge carries the CALLER's view: the calling
    subsegment's duration and outcome (what the caller waited for, network included), not the
    callee's own time. A service reached from outside the trace has a ``client`` edge with the
    segment's own view.
    """
    nodes: list[tuple] = []
    edges: list[tuple] = []
    segments = trace.get("segments", [])
    owner: dict[str, str] = {}  # entity id -> service node id
    entities: dict[str, dict] = {}
    for seg in segments:
        service = f"service:{seg.get('name')}"
        for entity, _ in walk(seg):
            if isinstance(entity.get("id"), str):
                owner[entity["id"]] = service
                entities[entity["id"]] = entity
    called = {seg.get("parent_id") for seg in segments if isinstance(seg.get("parent_id"), str)}
    for seg in segments:
        name = str(seg.get("name") or "?")
        service = f"service:{name}"
        origin = seg.get("origin")
        nodes.append((service, name, origin if isinstance(origin, str) else "service",
                      _sample(seg)))
        parent = seg.get("parent_id")
        caller = owner.get(parent) if isinstance(parent, str) else None
        if caller is None:
            nodes.append(("client", "client", "client", None))
            edges.append(("client", service, _sample(seg)))
        else:
            edges.append((caller, service, _sample(entities[parent])))
        # downstream calls: the outermost remote subsegments (nested ones are their detail)
        stack = list(children(seg))
        while stack:
            entity = stack.pop()
            if entity.get("id") in called:
                continue  # the called service's own segment makes this edge
            target = _downstream_node(entity)
            if target is None:
                stack.extend(children(entity))
                continue
            sample = _sample(entity)
            nodes.append((*target, sample))
            edges.append((service, target[0], sample))
    return nodes, edges


def reduce_contribution(contribution: tuple[list, list]) -> tuple[dict, dict]:
    """One trace's contribution summed per node and per edge: ``({node_id: (name, type,
    stats)}, {(source, target): stats})``, where stats are ``[requests, latency_sum,
    latency_n, faults, errors, throttles]`` (the client node has no stats: None)."""
    nodes: dict[str, tuple] = {}
    edges: dict[tuple[str, str], list] = {}
    for node_id, name, kind, sample in contribution[0]:
        entry = nodes.get(node_id)
        if entry is None:
            entry = nodes[node_id] = (name, kind, None if sample is None else [0, 0.0, 0, 0, 0, 0])
        if sample is not None and entry[2] is not None:
            _add_sample(entry[2], sample)
    for src, dst, sample in contribution[1]:
        stats = edges.get((src, dst))
        if stats is None:
            stats = edges[(src, dst)] = [0, 0.0, 0, 0, 0, 0]
        _add_sample(stats, sample)
    return nodes, edges


def _add_sample(stats: list, sample: tuple) -> None:
    duration, fault, error, throttle = sample
    stats[0] += 1
    if duration is not None:
        stats[1] += duration
        stats[2] += 1
    stats[3] += fault
    stats[4] += error
    stats[5] += throttle


def _accumulate(acc, stats, sign) -> None:
    """``acc`` (a node's or an edge's six running sums) moved by ``sign`` times ``stats``."""
    acc[0] += sign * stats[0]
    acc[1] += sign * stats[1]
    acc[2] += sign * stats[2]
    acc[3] += sign * stats[3]
    acc[4] += sign * stats[4]
    acc[5] += sign * stats[5]


def _stats_dict(stats: list | None) -> dict:
    n = stats[0] if stats else 0
    return {
        "requests": n,
        "avg_latency": (stats[1] / stats[2]) if stats and stats[2] else None,
        "error_rate": stats[4] / n if n else 0.0,
        "fault_rate": stats[3] / n if n else 0.0,
        "throttle_rate": stats[5] / n if n else 0.0,
    }


class MapTotals:
    """Running sums of reduced contributions: traces can be added and taken away again, so a
    map over a store that changes is kept up to date in the time of what changed."""

    def __init__(self):
        self.traces = 0
        self.nodes: dict[str, list] = {}  # id -> [name, type, stats, traces]
        self.edges: dict[tuple[str, str], list] = {}

    def add(self, reduced: tuple[dict, dict], sign: int = 1) -> None:
        self.traces += sign
        nodes, edges = self.nodes, self.edges
        for node_id, (name, kind, stats) in reduced[0].items():
            entry = nodes.get(node_id)
            if entry is None:
                entry = nodes[node_id] = [name, kind, [0, 0.0, 0, 0, 0, 0], 0]
            entry[3] += sign
            if stats is not None:
                _accumulate(entry[2], stats, sign)
            if entry[3] <= 0:
                del nodes[node_id]
        for key, stats in reduced[1].items():
            acc = edges.get(key)
            if acc is None:
                acc = edges[key] = [0, 0.0, 0, 0, 0, 0]
            _accumulate(acc, stats, sign)
            if acc[0] <= 0:
                del edges[key]

    def graph(self) -> dict:
        node_list = []
        for node_id, (name, kind, stats, _) in self.nodes.items():
            item = {"id": node_id, "name": name, "type": kind, **_stats_dict(stats)}
            if node_id == "client":
                item.update(_stats_dict(None))
                item["requests"] = sum(s[0] for (a, _), s in self.edges.items() if a == "client")
            node_list.append(item)
        edge_list = [{"source": src, "target": dst, **_stats_dict(stats)}
                     for (src, dst), stats in self.edges.items()]
        edge_list.sort(key=lambda e: (e["source"] != "client", e["source"], e["target"]))
        return {"traces": self.traces, "nodes": node_list, "edges": edge_list}


def aggregate_map(contributions, traces: int | None = None) -> dict:
    """The service map from ``map_contribution`` results."""
    totals = MapTotals()
    for contribution in contributions:
        totals.add(reduce_contribution(contribution))
    graph = totals.graph()
    if traces is not None:
        graph["traces"] = traces
    return graph


def build_map(traces: list[dict]) -> dict:
    """The service map of merged traces (``tree.merged_trace`` results)."""
    return aggregate_map([map_contribution(t) for t in traces], len(traces))


def focus_map(graph: dict, service: str) -> dict:
    """Only the services named ``service`` (``*`` wildcards) and their direct neighbours."""
    import fnmatch

    focus = {
        n["id"] for n in graph["nodes"]
        if n["id"].startswith("service:") and fnmatch.fnmatchcase(n["name"], service)
    }
    edges = [e for e in graph["edges"] if e["source"] in focus or e["target"] in focus]
    keep = set(focus)
    for e in edges:
        keep.update((e["source"], e["target"]))
    nodes = [n for n in graph["nodes"] if n["id"] in keep]
    return {**graph, "nodes": nodes, "edges": edges}

