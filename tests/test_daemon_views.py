"""Terminal views: the trace table, one trace's timeline, the service map (text, JSON, DOT)."""

import re

import pytest

from xray_autoinst.daemon import servicemap, views
from xray_autoinst.daemon.tree import merged_trace
from xray_autoinst.daemon.views import Style

T0 = 1_700_000_000.0
TRACE = "1-6553f100-0123456789abcdef01234567"


def ent(ident, name, start, end, **extra):
    d = {"id": ident, "name": name, "start_time": T0 + start}
    if end is not None:
        d["end_time"] = T0 + end
    else:
        d["in_progress"] = True
    d.update(extra)
    return d


def web_trace():
    """web (0-1 s) -> DynamoDB GetItem, a SQL query, an HTTP call answered by 'payments'."""
    web = ent("a" * 16, "web", 0.0, 1.0, trace_id=TRACE, origin="AWS::EC2::Instance",
              http={"request": {"method": "GET", "url": "http://localhost:8000/orders?id=7"},
                    "response": {"status": 502}}, fault=True,
              subsegments=[
                  ent("b" * 16, "DynamoDB", 0.0, 0.25, namespace="aws",
                      aws={"operation": "GetItem", "table_name": "orders"},
                      http={"response": {"status": 200}}),
                  ent("c" * 16, "orders@db", 0.25, 0.5, namespace="remote",
                      sql={"sanitized_query": "SELECT *\n  FROM orders WHERE id = %s",
                           "database_type": "PostgreSQL"}),
                  ent("d" * 16, "pay.internal", 0.5, 1.0, namespace="remote",
                      http={"request": {"method": "POST", "url": "http://pay.internal/charge"},
                            "response": {"status": 503}}, fault=True,
                      cause={"exceptions": [{"id": "e1", "type": "HTTPError",
                                             "message": "503 Service Unavailable"}]}),
                  ent("f" * 16, "render", 0.9, 0.95),
              ])
    payments = ent("e" * 16, "payments", 0.55, 0.95, trace_id=TRACE, parent_id="d" * 16,
                   http={"request": {"method": "POST", "url": "http://pay.internal/charge"},
                         "response": {"status": 503}}, fault=True,
                   subsegments=[ent("9" * 16, "api.stripe.example", 0.6, 0.9, namespace="remote",
                                    http={"request": {"url": "https://api.stripe.example/v1"},
                                          "response": {"status": 429}}, throttle=True,
                                    error=True)])
    return merged_trace(TRACE, [web, payments])


@pytest.mark.parametrize(
    "seconds, text",
    [(None, "-"), (0.0004, "0.40 ms"), (0.0123, "12.3 ms"), (0.9999, "999.9 ms"),
     (1.5, "1.500 s"), (125, "2m05s")],
)
def test_fmt_duration(seconds, text):
    assert views.fmt_duration(seconds) == text


def summary(**kw):
    base = {"trace_id": TRACE, "start_time": T0, "end_time": T0 + 0.5, "duration": 0.5,
            "service": "web", "services": ["web"], "method": "GET",
            "url": "http://localhost:8000/orders?id=7", "status": 500, "segments": 2,
            "documents": 3, "fault": True, "error": False, "throttle": False,
            "in_progress": False}
    base.update(kw)
    return base


def test_traces_table():
    out = views.render_traces([summary(), summary(trace_id="1-x", status=None, fault=False,
                                                  duration=None, in_progress=True)])
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "TRACE", "ID", "SERVICE", "REQUEST", "STATUS",
                                "DURATION", "SEGS", "MARKS"]
    assert TRACE in lines[1] and "GET /orders?id=7" in lines[1] and "500" in lines[1]
    assert "500.0 ms" in lines[1] and lines[1].endswith("fault")
    assert lines[2].endswith("in progress") and " - " in lines[2]
    assert views.render_traces([]) == "no traces\n"


def test_traces_table_fits_the_width():
    long = summary(url="http://h/" + "x" * 300)
    for width in (120, 160):
        (line,) = views.render_traces([long], width=width).splitlines()[1:]
        assert len(line) <= width and "…" in line


def test_traces_json_keys():
    (item,) = views.traces_json([summary()])
    for key in ("trace_id", "start_time", "duration", "service", "method", "url", "status",
                "segments", "fault", "error", "throttle"):
        assert key in item
    assert item["url"] == "http://localhost:8000/orders?id=7"  # the full URL in JSON


def bar_of(line: str) -> str:
    return re.search(r"[█·░]{10,}", line).group(0)


def test_timeline_tree_bars_and_marks():
    out = views.render_trace(web_trace(), width=140, style=Style(unicode=True))
    lines = out.splitlines()
    assert lines[0].startswith(TRACE) and "1.000 s" in lines[0] and "2 segments" in lines[0]
    body = lines[2:]
    names = [re.sub(r"[├└│─ ]+", " ", ln[:60]).split()[0] for ln in body if not
             ln.strip().startswith("!")]
    assert names == ["web", "DynamoDB", "orders@db", "pay.internal", "payments",
                     "api.stripe.example", "render"]
    entity_lines = [ln for ln in body if not ln.strip().startswith("!")]
    row = dict(zip(names, entity_lines, strict=True))
    assert "GetItem orders" in row["DynamoDB"]
    assert "SELECT * FROM orders WHERE id = %s" in row["orders@db"]  # one line
    assert "POST http://pay.internal/charge" in row["pay.internal"]
    assert row["web"].rstrip().endswith("502 fault")
    assert row["api.stripe.example"].rstrip().endswith("429 error throttle")
    # bars are scaled to the trace: web covers all of it, DynamoDB the first quarter
    web_bar, ddb_bar = bar_of(row["web"]), bar_of(row["DynamoDB"])
    assert set(web_bar) == {"█"}
    assert abs(ddb_bar.count("█") - len(ddb_bar) / 4) <= 1 and ddb_bar.startswith("█")
    pay_bar = bar_of(row["pay.internal"])
    assert abs(pay_bar.index("█") - len(pay_bar) / 2) <= 1 and pay_bar.endswith("█")
    # the downstream service hangs under the call that reached it
    assert row["payments"].index("payments") > row["pay.internal"].index("pay.internal")
    assert any("! HTTPError: 503 Service Unavailable" in ln for ln in body)
    assert "250.0 ms" in row["DynamoDB"]


def test_a_cause_that_is_a_childs_exception_id_names_the_record():
    """A parent whose ``cause`` is the id of an exception a child recorded (X-Ray allows it; the
    agent writes it when an exception propagates up from a downstream call) says where to look;
    an id found nowhere in the trace is still shown."""
    child = ent("b" * 16, "pay.internal", 0.1, 0.5, namespace="remote", fault=True,
                cause={"exceptions": [{"id": "0123456789abcdef", "type": "ConnectionError",
                                       "message": "refused"}]})
    web = ent("a" * 16, "web", 0, 1.0, trace_id=TRACE, fault=True, cause="0123456789abcdef",
              subsegments=[child, ent("c" * 16, "other", 0.5, 0.9, fault=True,
                                      cause="feedfacefeedface")])
    out = views.render_trace(merged_trace(TRACE, [web]), width=140, style=Style(unicode=False))
    lines = out.splitlines()
    web_at = next(i for i, ln in enumerate(lines) if ln.startswith("web"))
    assert lines[web_at + 1].strip() == (
        "! cause: see 0123456789abcdef (ConnectionError, recorded by pay.internal)")
    assert any(ln.strip() == "! ConnectionError: refused" for ln in lines)
    assert any(ln.strip() == "! cause: see feedfacefeedface" for ln in lines)


def test_timeline_ascii_and_in_progress():
    merged = merged_trace(TRACE, [ent("a" * 16, "web", 0, None, trace_id=TRACE,
                                      subsegments=[ent("b" * 16, "q", 0, 0.5)])])
    out = views.render_trace(merged, width=100, style=Style(unicode=False))
    assert out.isascii()
    web = out.splitlines()[2]
    assert web.rstrip().endswith("in progress") and "=" in web
    assert "`- q" in out


def test_timeline_colors_only_when_asked():
    assert "\x1b[" not in views.render_trace(web_trace())
    colored = views.render_trace(web_trace(), style=Style(color=True))
    assert "\x1b[31m" in colored  # faults in red


def test_map_nodes_and_edges():
    graph = servicemap.build_map([web_trace(), web_trace()])
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert set(nodes) == {"client", "service:web", "service:payments", "aws:DynamoDB",
                          "database:orders@db", "remote:api.stripe.example"}
    assert nodes["service:web"]["type"] == "AWS::EC2::Instance"
    assert nodes["aws:DynamoDB"]["type"] == "AWS::DynamoDB"
    assert nodes["database:orders@db"]["type"] == "database::PostgreSQL"
    assert nodes["remote:api.stripe.example"]["type"] == "remote"
    edges = {(e["source"], e["target"]): e for e in graph["edges"]}
    # the HTTP call answered by a traced service is an edge to that service, not a remote host
    assert set(edges) == {
        ("client", "service:web"), ("service:web", "aws:DynamoDB"),
        ("service:web", "database:orders@db"), ("service:web", "service:payments"),
        ("service:payments", "remote:api.stripe.example"),
    }
    e = edges[("service:web", "aws:DynamoDB")]
    assert e["requests"] == 2 and e["avg_latency"] == pytest.approx(0.25)
    assert e["fault_rate"] == 0 and e["error_rate"] == 0
    assert edges[("client", "service:web")]["fault_rate"] == 1.0
    stripe = edges[("service:payments", "remote:api.stripe.example")]
    assert stripe["throttle_rate"] == 1.0 and stripe["error_rate"] == 1.0
    assert graph["traces"] == 2 and nodes["client"]["requests"] == 2


def test_map_text_and_dot():
    graph = servicemap.build_map([web_trace()])
    text = views.render_map(graph, style=Style(unicode=False))
    assert text.startswith("service map of 1 trace: 6 nodes, 5 edges")
    assert "-> web" in text and "-> DynamoDB [AWS::DynamoDB]" in text
    assert "faults 100.0%" in text and "throttled 100.0%" in text
    dot = views.render_dot(graph)
    assert dot.startswith("digraph xray_service_map {") and dot.rstrip().endswith("}")
    assert '"client" -> "service:web"' in dot
    assert 'shape=cylinder' in dot and "\n\n" not in dot.strip()
    # labels use DOT escapes, never raw newlines or unescaped quotes
    for line in dot.splitlines()[3:-1]:
        assert line.count('"') % 2 == 0


def test_dot_quotes_names():
    graph = servicemap.build_map([merged_trace(TRACE, [ent("a" * 16, 'we"b\\x', 0, 1,
                                                      trace_id=TRACE)])])
    assert '"we\\"b\\\\x' in views.render_dot(graph)


def test_empty_map():
    graph = servicemap.build_map([])
    assert graph == {"traces": 0, "nodes": [], "edges": []}
    assert views.render_map(graph) == "no traces\n"


def test_map_edges_carry_the_callers_latency():
    """web's call to payments took 0.5 s as web saw it (pay.internal); payments' own segment
    took 0.4 s: the edge shows the caller's 0.5 s, the payments node its own 0.4 s."""
    graph = servicemap.build_map([web_trace()])
    edges = {(e["source"], e["target"]): e for e in graph["edges"]}
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert edges[("service:web", "service:payments")]["avg_latency"] == pytest.approx(0.5)
    assert edges[("service:web", "service:payments")]["fault_rate"] == 1.0  # the 503 it got
    assert nodes["service:payments"]["avg_latency"] == pytest.approx(0.4)
    assert edges[("client", "service:web")]["avg_latency"] == pytest.approx(1.0)
    text = views.render_map(graph, style=Style(unicode=False))
    (line,) = [ln for ln in text.splitlines() if ln.strip().startswith("-> payments")]
    assert "avg 500.0 ms" in line


def test_focus_map_keeps_a_service_and_its_neighbours():
    graph = servicemap.focus_map(servicemap.build_map([web_trace()]), "pay*")
    assert {n["id"] for n in graph["nodes"]} == {
        "service:web", "service:payments", "remote:api.stripe.example"}
    assert {(e["source"], e["target"]) for e in graph["edges"]} == {
        ("service:web", "service:payments"), ("service:payments", "remote:api.stripe.example")}
    assert servicemap.focus_map(servicemap.build_map([web_trace()]), "nothing")["nodes"] == []


def test_map_contributions_aggregate_like_build_map():
    contribs = [servicemap.map_contribution(web_trace()) for _ in range(3)]
    assert servicemap.aggregate_map(contribs) == servicemap.build_map([web_trace()] * 3)


def test_timeline_header_stays_on_one_line_at_120_columns():
    trace = web_trace()
    trace["segments"][0]["http"]["request"]["url"] = "http://localhost:8000/" + "x" * 200
    out = views.render_trace(trace, width=120)
    head = out.splitlines()[0]
    assert len(head) <= 120 and head.startswith(TRACE) and "1 segment" not in head
    assert "web: GET http://localhost:8000/x" in head and "…" in head
    assert all(len(ln) <= 120 for ln in out.splitlines())


def test_traces_table_gives_the_request_the_room():
    """At 120 columns (today's times drop the date) a 30-character request is shown whole
    beside a short service name, and keeps 28 characters beside a 21-character one, where it
    had 12 before."""
    import time as _time

    url = "http://h/api/v1/orders/12345/items"
    item = summary(start_time=_time.time(), service="shop", url=url)
    (line,) = views.render_traces([item], width=120).splitlines()[1:]
    assert "  GET /api/v1/orders/12345/items  " in line and len(line) <= 120
    item["service"] = "VisionService.Analyse"
    (line,) = views.render_traces([item], width=120).splitlines()[1:]
    assert "  VisionServi…  GET /api/v1/orders/12345/it…  " in line and len(line) <= 120
    wide = views.render_traces([item], width=160).splitlines()[1]
    assert "VisionService.Analyse  GET /api/v1/orders/12345/items  " in wide
