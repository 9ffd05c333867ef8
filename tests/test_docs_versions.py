"""The README's "versions tested" column names the versions tox's ``oldest`` environment
installs (requirements-oldest.txt), and every library of the registry has one."""

import re
from pathlib import Path

from xray_autoinst.registry import INTEGRATIONS

ROOT = Path(__file__).resolve().parent.parent
# "gunicorn 22.0.0 – latest", "botocore 1.34.70 – 1.43.117" (not "CPython 3.10 – 3.13")
RANGE = re.compile(r"([A-Za-z][\w.-]*) (\d[\w.]*) – (latest|\d[\w.]*)")


def _name(dist):
    return re.sub(r"[-_.]+", "-", dist).lower()


def _requirements(filename):
    """name -> the specifier text of each requirement line of ``filename``."""
    out = {}
    for line in (ROOT / filename).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"([A-Za-z][\w.-]*)(\[[^\]]*\])?\s*(.*)", line)
        if m and not line.startswith("-"):
            out[_name(m.group(1))] = m.group(3).replace(" ", "")
    return out


def _readme_ranges():
    """name -> (oldest, latest) from the "What is traced" table's versions column."""
    text = (ROOT / "README.md").read_text()
    table = text.split("## What is traced\n", 1)[1].strip("\n").split("\n\n", 1)[0]
    rows = [r.split(" | ") for r in table.splitlines()]
    header = [c.strip("| ") for c in rows[0]]
    col = header.index("Versions tested (oldest – latest)")
    out = {}
    for row in rows[2:]:
        for name, oldest, latest in RANGE.findall(row[col]):
            if name == "CPython":
                continue
            assert _name(name) not in out, f"{name} named twice in the README"
            out[_name(name)] = (oldest, latest)
    return out


def test_readme_oldest_versions_are_the_tested_ones():
    pins = _requirements("requirements-oldest.txt")
    ranges = _readme_ranges()
    assert pins, "no pins read from requirements-oldest.txt"
    for name, spec in pins.items():
        assert spec.startswith("==") and "," not in spec, f"{name}: pin one version ({spec})"
    assert {n: o for n, (o, _) in ranges.items()} == {n: s[2:] for n, s in pins.items()}


def test_every_registry_library_has_a_tested_range():
    ranges = _readme_ranges()
    for name, entry in INTEGRATIONS.items():
        dist = entry.distribution
        if dist is None:  # the standard library
            continue
        alternatives = (dist,) if isinstance(dist, str) else dist
        assert any(_name(d) in ranges for d in alternatives), (
            f"{name}: add the oldest version of {alternatives[0]} to requirements-oldest.txt "
            "and the README's versions column")


def test_a_capped_library_is_not_said_to_be_tested_up_to_latest():
    caps = {n: s for n, s in _requirements("requirements-test.txt").items() if "<" in s}
    for name, (_oldest, latest) in _readme_ranges().items():
        if name in caps:
            assert latest != "latest", f"{name} is capped in requirements-test.txt: {caps[name]}"
