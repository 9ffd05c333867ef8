"""Units of work the agent begins by itself, outside any request: a received message becomes a
segment of its own, and this module decides when it ends.

A unit is *held*: by the context that took it (the "taker": the loop that took the message out
of a response) and by every thread-pool task submitted while it was current (``ctx_futures``
hands it over). The segment ends when the last hold is released:

- the taker's hold is released when that context takes the next message, polls again, deletes
  the message (after the delete call, which is recorded in it), or finishes iterating -- or
  when the request (any segment: web, task, Lambda invocation, sampled or not) that was current
  when the message was taken ends, whichever comes first: a message a request took and let lie
  does not stay open for the life of the process. The request's end is noticed through
  ``tracer.ending``, which holds only the segments whose context took a message still held, so
  a request that took none pays one truth test;
- a task's hold is released when the task returns or raises; an exception escaping a task that
  was given the message itself (``pool.submit(handle, msg)``, ``pool.map(handle, msgs)``) is
  recorded as the segment's fault and cause.

Unsampled units are held the same way (they carry ``Sampled=0`` downstream) and emit nothing.
"""

from __future__ import annotations

import os
import threading

from .. import log as _log
from ..core import tracer as _tracer_mod
from . import _guard

_current = _tracer_mod.current_entity
_ending = _tracer_mod.ending
_lock = threading.Lock()
units: dict = {}  # open units: segment (or UnsampledSegment) -> Unit
# outer segment -> [the units its context took and still holds as taker]; each key is also in
# tracer.ending, which calls _outer_ended when that segment ends
taken: dict = {}


fail = _guard.reporter(
    "work", "xray-autoinst message instrumentation failed (%s); the application is unaffected")


class Unit:
    __slots__ = ("seg", "outer", "item", "holds", "taker", "deleting", "within")

    def __init__(self, seg, outer, item):
        self.seg = seg
        self.outer = outer  # the entity current before the first message was taken
        self.item = item  # the message (only compared by identity)
        self.holds = 1
        self.taker = True
        self.deleting = False
        # the segment whose end releases the taker's hold (outer's; None outside any)
        self.within = outer.segment if outer is not None else None


def become_worker(tracer, what: str) -> None:
    """A program that handles messages is a worker: under ``XRAY_CONTEXT_MISSING=process`` the
    process segment covers its start-up only (it ends now) and calls made between messages are
    not recorded, so the loop never grows one never-ending segment."""
    if tracer.context_missing != "process":
        return
    tracer.context_missing = "ignore"
    seg = tracer.process_segment
    if seg is not None:
        tracer.process_segment = None
        if _current.get() is seg:
            _current.set(None)
        tracer.end_segment(seg)
    _log.get().info("%s: a worker; XRAY_CONTEXT_MISSING=process now covers only its start-up "
                    "(each message is a segment; calls between messages are not recorded)", what)


def begin(tracer, hdr, outer, item) -> Unit:
    """A segment for ``item``, made current in the calling context. ``outer``: the entity
    current before (None in a worker loop); the taker's hold goes at the latest when its
    segment ends."""
    seg, _token = tracer.begin_segment(None, hdr)
    unit = Unit(seg, outer, item)
    within = unit.within
    with _lock:
        units[seg] = unit
        if within is not None:
            held = taken.get(within)
            if held is None:
                taken[within] = [unit]
                _ending[within] = _outer_ended
            else:
                held.append(unit)
    return unit


def _forget(unit) -> None:
    """``unit``'s taker hold is gone: its outer segment's end no longer concerns it (under
    ``_lock``)."""
    within = unit.within
    held = taken.get(within) if within is not None else None
    if held is None:
        return
    try:
        held.remove(unit)
    except ValueError:
        return
    if not held:
        del taken[within]
        _ending.pop(within, None)


def _outer_ended(seg) -> None:
    """``tracer.ending``'s hook: the segment current when messages were taken ended (a request
    that took a message and neither deleted nor iterated it): the taker lets go of them. A
    thread-pool task still holding one keeps it open until the task ends."""
    try:
        with _lock:
            held = taken.pop(seg, ())
        for unit in held:
            release_taker(unit)
    except Exception:  # noqa: BLE001
        fail("outer-end")


def _release(unit, exc=None) -> None:
    with _lock:
        unit.holds -= 1
        if unit.holds > 0:
            if exc is not None and unit.seg.sampled:
                unit.seg.add_exception(exc)
            return
        units.pop(unit.seg, None)
    seg = unit.seg
    if seg.sampled:
        if exc is not None:
            seg.add_exception(exc)
        _tracer_mod.tracer.end_segment(seg)


def release_taker(unit):
    """The taking context is done with ``unit``: end it unless a task still holds it, and make
    the entity that was current before it current again. Returns that entity."""
    with _lock:
        held = unit.taker
        unit.taker = False
        if held:
            _forget(unit)
    if held:
        _release(unit)
    if _current.get() is unit.seg:
        _current.set(unit.outer)
    return unit.outer


def release_hold(unit) -> None:
    """A hold taken by ``handoff`` whose task will never run (the submit failed)."""
    try:
        _release(unit)
    except Exception:  # noqa: BLE001
        fail("release")


def unit_of(entity):
    """The open unit ``entity`` belongs to (None when it is not part of one)."""
    if entity is None or not units:
        return None
    return units.get(entity.segment)


def handoff(unit, fn, args):
    """``fn`` as submitted to a thread pool while ``unit`` is current: it holds the unit until it
    returns or raises."""
    with _lock:
        if unit.holds <= 0:  # ended meanwhile
            return fn
        unit.holds += 1
    own = any(a is unit.item for a in args)

    def _run_holding(*a, **kw):
        try:
            result = fn(*a, **kw)
        except BaseException as exc:
            try:
                _release(unit, exc if own and isinstance(exc, Exception) else None)
            except Exception:  # noqa: BLE001
                fail("release")
            raise
        try:
            _release(unit)
        except Exception:  # noqa: BLE001
            fail("release")
        return result

    return _run_holding


def _after_fork_in_child() -> None:
    """A forked child inherits the parent's open units: the parent ends and sends them, the
    child never (its copies would be duplicates). A lock another thread held is free again."""
    global _lock
    _lock = threading.Lock()
    units.clear()
    taken.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
