"""The README's layout table names every module of the package; CONTRIBUTING.md is a guide for
people (no paths outside the repository, no internal tooling)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _layout():
    text = (ROOT / "README.md").read_text()
    start = text.index("## Layout")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_layout_lists_every_module():
    layout = _layout()
    missing = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "xray_autoinst").rglob("*.py"))
               if p.name != "__init__.py" and f"`{p.name}`" not in layout
               and f"`xray_autoinst/{p.relative_to(ROOT / 'xray_autoinst')}`" not in layout]
    assert missing == [], missing


def test_contributing_is_a_guide():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    for needle in ("the lead", "issues show", "/work/", "../shared"):
        assert needle not in text, needle
    assert not re.search(r"(?<![\w.])/(root|home|tmp)/", text)
    for section in ("architecture", "Adding an integration", "test tiers", "Benchmarks",
                    "host application safe"):
        assert section.lower() in text.lower(), section
