"""Merging a trace's documents into one tree (streamed subsegments, in_progress documents)."""

import copy
import itertools

from xray_autoinst.daemon.tree import assemble, merged_trace, walk

T0 = 1_700_000_000.0
TRACE = "1-6553f100-0123456789abcdef01234567"


def entity(ident, start, end=None, **extra):
    d = {"name": extra.pop("name", ident), "id": ident, "start_time": T0 + start}
    if end is None:
        d["in_progress"] = True
    else:
        d["end_time"] = T0 + end
    d.update(extra)
    return d


def streamed(ident, parent, start, end=None, **extra):
    return entity(ident, start, end, type="subsegment", trace_id=TRACE, parent_id=parent, **extra)


def shape(node):
    """(id, [children shapes]) for comparing trees."""
    return (node["id"], [shape(c) for c in node.get("subsegments", [])])


def test_streamed_subsegments_go_under_their_parents_in_any_order():
    segment = entity("seg", 0, 10, trace_id=TRACE,
                     subsegments=[entity("nested", 1, 2)])
    subs = [
        streamed("a", "seg", 3, 6),
        streamed("a1", "a", 4, 5),  # child of a streamed subsegment
        streamed("n1", "nested", 1.5, 1.8),  # child of a nested subsegment
        streamed("a11", "a1", 4.2, 4.4),
    ]
    expected = ("seg", [("nested", [("n1", [])]), ("a", [("a1", [("a11", [])])])])
    for order in itertools.permutations(subs):
        tree = assemble([segment, *order])
        assert [shape(s) for s in tree["segments"]] == [expected]
        assert tree["orphans"] == []


def test_input_is_not_modified():
    docs = [entity("seg", 0, 10, trace_id=TRACE), streamed("a", "seg", 1, 2)]
    before = copy.deepcopy(docs)
    assemble(docs)
    assert docs == before


def test_in_progress_nested_copy_replaced_by_streamed_complete():
    segment = entity("seg", 0, 10, trace_id=TRACE, subsegments=[entity("a", 1)])
    tree = assemble([segment, streamed("a", "seg", 1, 3)])
    (a,) = tree["segments"][0]["subsegments"]
    assert a["end_time"] == T0 + 3 and "in_progress" not in a


def test_complete_nested_copy_wins_over_streamed_in_progress():
    segment = entity("seg", 0, 10, trace_id=TRACE, subsegments=[entity("a", 1, 3)])
    tree = assemble([segment, streamed("a", "seg", 1)])
    (a,) = tree["segments"][0]["subsegments"]
    assert a["end_time"] == T0 + 3


def test_duplicate_segments_keep_the_complete_one():
    tree = assemble([entity("seg", 0, trace_id=TRACE), entity("seg", 0, 5, trace_id=TRACE)])
    (seg,) = tree["segments"]
    assert seg["end_time"] == T0 + 5


def test_orphans_are_kept_apart():
    tree = assemble([entity("seg", 0, 10, trace_id=TRACE), streamed("x", "missing", 1, 2),
                     streamed("y", "x", 1.2, 1.5)])
    assert [s["id"] for s in tree["segments"]] == ["seg"]
    assert [shape(o) for o in tree["orphans"]] == [("x", [("y", [])])]
    merged = merged_trace(TRACE, [entity("seg", 0, 10, trace_id=TRACE),
                                  streamed("x", "missing", 1, 2)])
    assert [o["id"] for o in merged["orphans"]] == ["x"]


def test_children_sorted_by_start_and_segments_too():
    segment = entity("seg", 5, 10, trace_id=TRACE,
                     subsegments=[entity("late", 8, 9), entity("early", 6, 7)])
    other = entity("first", 0, 11, trace_id=TRACE)
    tree = assemble([segment, other])
    assert [s["id"] for s in tree["segments"]] == ["first", "seg"]
    assert [c["id"] for c in tree["segments"][1]["subsegments"]] == ["early", "late"]


def test_merged_trace_bounds():
    docs = [entity("seg", 1, 4, trace_id=TRACE, subsegments=[entity("a", 2, 6)]),
            entity("down", 0.5, 3, trace_id=TRACE, parent_id="a")]
    merged = merged_trace(TRACE, docs)
    assert merged["trace_id"] == TRACE
    assert merged["start_time"] == T0 + 0.5 and merged["end_time"] == T0 + 6
    assert abs(merged["duration"] - 5.5) < 1e-6
    assert "orphans" not in merged
    ids = [e["id"] for top in merged["segments"] for e, _ in walk(top)]
    assert sorted(ids) == ["a", "down", "seg"]


def test_merged_trace_all_in_progress():
    merged = merged_trace(TRACE, [entity("seg", 0, trace_id=TRACE)])
    assert merged["end_time"] is None and merged["duration"] is None


def test_parent_loops_do_not_lose_documents():
    tree = assemble([streamed("x", "y", 1, 2), streamed("y", "x", 1, 2),
                     streamed("z", "z", 1, 2)])
    ids = sorted(e["id"] for o in tree["orphans"] for e, _ in walk(o))
    assert ids == ["x", "y", "z"]
