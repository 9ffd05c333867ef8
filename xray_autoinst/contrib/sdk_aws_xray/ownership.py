"""Which segments the SDK opened: ``begin_segment`` with no agent entity current opens an agent
segment, which the matching ``end_segment`` (or the facade's ``close``) ends; nested
``begin_segment`` calls join it. All of that state lives in one ``Ownership`` object.

A segment the agent opened itself (the request's, from its WSGI/ASGI middleware) is never
owned: the SDK's calls join it and the agent ends it."""

from __future__ import annotations

import os
import threading

from ._shared import tracer


class Owned:
    """One segment opened through the SDK: its context token, the facade handed out, how many
    ``begin_segment`` calls joined it, and the trace header the SDK saved on it."""

    __slots__ = ("segment", "token", "facade", "depth", "origin")

    def __init__(self, segment, token, facade):
        self.segment = segment
        self.token = token
        self.facade = facade
        self.depth = 1
        self.origin = None


class Ownership:
    """The segments opened through the SDK's ``begin_segment``, by segment id."""

    def __init__(self):
        self._by_id = {}
        self._lock = threading.Lock()

    def of(self, segment):
        """The ``Owned`` record of ``segment``, or None when the SDK did not open it."""
        own = self._by_id.get(segment.id)
        return own if own is not None and own.segment is segment else None

    def open(self, segment, token, facade):
        own = Owned(segment, token, facade)
        self._by_id[segment.id] = own
        return own

    def join(self, own):
        with self._lock:
            own.depth += 1

    def end(self, own, end_time=None, force=False):
        """One ``end_segment``: the segment ends with the last one (or at once with ``force``,
        the facade's ``close``). Ending a segment no longer owned does nothing."""
        with self._lock:
            own.depth -= 1
            if own.depth > 0 and not force:
                return
            if self._by_id.get(own.segment.id) is not own:
                return
            del self._by_id[own.segment.id]
        tracer().end_segment(own.segment, own.token, end_time)

    def clear(self):
        self._by_id.clear()

    def __len__(self):
        return len(self._by_id)


OWNERSHIP = Ownership()

if hasattr(os, "register_at_fork"):  # a forked child owns nothing its parent opened
    os.register_at_fork(after_in_child=OWNERSHIP.clear)
