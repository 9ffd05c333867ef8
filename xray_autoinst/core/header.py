"""``X-Amzn-Trace-Id`` parsing and formatting.

Parsing is strict: any malformed part (bad Root or Parent, Sampled outside 0/1/?, a duplicate
key, non-ASCII, an oversized value) makes the whole header invalid, and the caller starts a fresh
trace. Only ``Lineage`` among the other keys is kept, since AWS services add it to be passed on;
``Self`` (added by load balancers) and unknown keys are dropped.
"""

from __future__ import annotations

import re

NAME = "X-Amzn-Trace-Id"
WSGI_KEY = "HTTP_X_AMZN_TRACE_ID"
MAX_LEN = 1024

_ROOT = re.compile(r"1-[0-9a-fA-F]{8}-[0-9a-fA-F]{24}\Z")
_PARENT = re.compile(r"[0-9a-fA-F]{16}\Z")
_LINEAGE = re.compile(r"[0-9A-Za-z:_\-;|]{1,200}\Z")


class TraceHeader:
    __slots__ = ("root", "parent", "sampled", "lineage")

    def __init__(self, root=None, parent=None, sampled=None, lineage=None):
        self.root = root  # "1-xxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx" or None
        self.parent = parent  # 16 hex or None
        self.sampled = sampled  # "1", "0", "?" or None
        self.lineage = lineage

    def __repr__(self):
        return f"TraceHeader({self.root!r}, {self.parent!r}, {self.sampled!r})"


def parse(value) -> TraceHeader | None:
    """Parse a header value; None when it is absent or invalid in any way."""
    if not value or len(value) > MAX_LEN or not value.isascii():
        return None
    root = parent = sampled = lineage = None
    seen = set()
    for part in value.split(";"):
        part = part.strip()
        if not part:
            continue
        key, eq, val = part.partition("=")
        if not eq:
            return None
        key = key.strip()
        val = val.strip()
        lk = key.lower()
        if lk in seen:
            return None
        seen.add(lk)
        if lk == "root":
            if not _ROOT.match(val):
                return None
            root = val.lower()
        elif lk == "parent":
            if not _PARENT.match(val):
                return None
            parent = val.lower()
        elif lk == "sampled":
            if val not in ("0", "1", "?"):
                return None
            sampled = val
        elif lk == "lineage":
            if _LINEAGE.match(val):
                lineage = val
        # Self and unknown keys: accepted, not kept
    if root is None:
        return None
    return TraceHeader(root, parent, sampled, lineage)


def format(root: str, parent: str | None, sampled: bool | str, lineage: str | None = None) -> str:
    if sampled is True:
        s = "1"
    elif sampled is False:
        s = "0"
    else:
        s = sampled
    out = "Root=" + root
    if parent:
        out += ";Parent=" + parent
    out += ";Sampled=" + s
    if lineage:
        out += ";Lineage=" + lineage
    return out


# -- W3C Trace Context -------------------------------------------------------------------------
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\Z")


def parse_traceparent(value) -> TraceHeader | None:
    """A W3C ``traceparent`` as a TraceHeader (the 32 hex digits become ``1-<8>-<24>``, the span
    id the parent, flag 01 the sampling decision); None when absent or invalid."""
    if not value or len(value) > 512 or not value.isascii():
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None:
        return None
    version, trace, span, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace == "0" * 32 or span == "0" * 16:
        return None
    return TraceHeader("1-" + trace[:8] + "-" + trace[8:], span,
                       "1" if int(flags, 16) & 1 else "0")


def format_traceparent(root: str, parent: str, sampled: bool) -> str | None:
    """The ``traceparent`` for a downstream call: X-Ray's ``1-<8>-<24>`` root is a W3C trace
    id once its dashes are removed."""
    if not root.startswith("1-") or len(root) != 35:
        return None
    return "00-" + root[2:10] + root[11:] + "-" + parent + ("-01" if sampled else "-00")
