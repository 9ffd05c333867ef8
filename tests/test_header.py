import pytest
from hypothesis import given
from hypothesis import strategies as st

from xray_autoinst.core import header

ROOT = "1-5759e988-bd862e3fe1be46a994272793"


@pytest.mark.parametrize(
    "value, root, parent, sampled",
    [
        (f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1", ROOT, "53995c3f42cd8ad8", "1"),
        (f"Root={ROOT};Sampled=0", ROOT, None, "0"),
        (f"Root={ROOT};Sampled=?", ROOT, None, "?"),
        (f"Root={ROOT}", ROOT, None, None),
        (f" Root={ROOT} ; Parent=53995C3F42CD8AD8 ", ROOT, "53995c3f42cd8ad8", None),
        (f"Self=1-67891234-12456789abcdef012345678;Root={ROOT};Sampled=1", ROOT, None, "1"),
        (f"Root={ROOT};Foo=bar;Sampled=1", ROOT, None, "1"),
    ],
)
def test_valid_headers(value, root, parent, sampled):
    h = header.parse(value)
    assert (h.root, h.parent, h.sampled) == (root, parent, sampled)


def test_lineage_is_kept_for_propagation():
    h = header.parse(f"Root={ROOT};Sampled=1;Lineage=a87bd80c:1|68fd508a:5")
    assert h.lineage == "a87bd80c:1|68fd508a:5"
    out = header.format(h.root, "53995c3f42cd8ad8", True, h.lineage)
    assert out == f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a87bd80c:1|68fd508a:5"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Root=garbage",
        f"Root={ROOT};Sampled=7",
        f"Root={ROOT};Parent=xyz",
        f"Root={ROOT};Root={ROOT}",
        f"Root={ROOT};Sampled=1;sampled=0",
        "Parent=53995c3f42cd8ad8;Sampled=1",
        f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1;" + "x=y;" * 3000,
        f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1é",
        f"Root={ROOT};junk",
        "Root=1-5759e988-bd862e3fe1be46a99427279",  # short
        "Root=2-5759e988-bd862e3fe1be46a994272793x",
    ],
)
def test_invalid_headers_start_a_fresh_trace(value):
    assert header.parse(value) is None


@given(st.text(max_size=300))
def test_parser_never_raises(value):
    h = header.parse(value)
    if h is not None:
        assert len(h.root) == 35 and h.root.startswith("1-")
        assert h.sampled in (None, "0", "1", "?")
        assert h.parent is None or len(h.parent) == 16


@given(
    st.from_regex(r"1-[0-9a-f]{8}-[0-9a-f]{24}", fullmatch=True),
    st.from_regex(r"[0-9a-f]{16}", fullmatch=True),
    st.sampled_from([True, False, "?"]),
)
def test_format_parse_round_trip(root, parent, sampled):
    h = header.parse(header.format(root, parent, sampled))
    assert h.root == root and h.parent == parent
    assert h.sampled == {True: "1", False: "0", "?": "?"}[sampled]


def test_format():
    assert header.format(ROOT, "53995c3f42cd8ad8", True) == (
        f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1"
    )
    assert header.format(ROOT, None, False) == f"Root={ROOT};Sampled=0"
