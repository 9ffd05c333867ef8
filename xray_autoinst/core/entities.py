"""Segments and subsegments as plain data (slots), and what is recorded on them."""

from __future__ import annotations

import os
import sys
import threading
import time

from .. import config as _config
from . import ids

MAX_STACK = 50
MAX_MESSAGE = 1000
FIELD_MAX = 250  # http.request.url, user_agent, client_ip, method
# the package's own directory: its frames are left out of recorded stacks
_AGENT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_time = time.time
_entity_id = ids.entity_id


def clip(value, limit=FIELD_MAX):
    """Cut a string field to the schema's limit (the cut is marked with '...')."""
    if value is None:
        return None
    value = str(value)
    if len(value) > limit:
        return value[: limit - 3] + "..."
    return value


class Entity:
    __slots__ = (
        "name", "id", "start_time", "end_time", "parent", "segment", "subsegments",
        "http", "aws", "sql", "annotations", "metadata", "error", "fault", "throttle",
        "cause", "emitted", "namespace",
        "exc_id",  # id() of the exception recorded as ``cause``; set by add_exception only
    )
    sampled = True

    def __init__(self, name, start_time=None):
        self.name = name
        self.id = ids.entity_id()
        self.start_time = time.time() if start_time is None else start_time
        self.end_time = None
        self.subsegments = None
        self.http = None
        self.aws = None
        self.sql = None
        self.annotations = None
        self.metadata = None
        self.error = False
        self.fault = False
        self.throttle = False
        self.cause = None
        self.emitted = False
        self.namespace = None

    @property
    def trace_id(self):
        return self.segment.trace_id

    def put_annotation(self, key, value):
        if self.annotations is None:
            self.annotations = {}
        self.annotations[key] = value

    def put_metadata(self, key, value, namespace="default"):
        if self.metadata is None:
            self.metadata = {}
        self.metadata.setdefault(namespace, {})[key] = value

    def set_status(self, status):
        """error for 4xx, throttle + error for 429, fault for 5xx."""
        if status >= 500:
            self.fault = True
        elif status == 429:
            self.throttle = True
            self.error = True
        elif status >= 400:
            self.error = True

    def add_exception(self, exc, remote=False, skip_frames=0):
        """Record ``exc`` as this entity's cause and mark it a fault.

        An exception is recorded once: when a subsegment below this entity already recorded
        this very exception (it propagated up from a downstream call), this entity's ``cause``
        is that record's id, as X-Ray allows, rather than a second copy under a new id."""
        self.fault = True
        if self.cause is not None:
            return
        stack = _stack(exc, skip_frames, self.segment is not self)
        if self.subsegments:
            found = _recorded_below(self, id(exc), type(exc).__name__, stack)
            if found is not None:
                self.cause = found
                return
        record = {
            "id": ids.entity_id(),
            "message": clip(str(exc), MAX_MESSAGE),
            "type": type(exc).__name__,
            "stack": stack,
        }
        if remote:
            record["remote"] = True
        self.cause = {"working_directory": _cwd(), "exceptions": [record]}
        self.exc_id = id(exc)


def _stack(exc, skip_frames, callers):
    """The recorded stack of ``exc``, most recent frame first, the application's frames only
    (the agent's own wrappers say nothing to the user). With ``callers`` (a subsegment: a
    downstream call's exception, caught by the agent's wrapper while it is being handled), the
    frames above the one that caught it too: the traceback starts there, and the application's
    calls that led to the failed call are its callers."""
    tb = exc.__traceback__
    if tb is None:
        return []
    frames = _frames(tb)[skip_frames:]
    if callers:
        frames[:0] = _callers(tb.tb_frame)
    frames = [f for f in frames if _AGENT_DIR not in f[0]] or frames
    return [{"path": path, "line": line, "label": label}
            for path, line, label in reversed(frames[-MAX_STACK:])]


def _frames(tb):
    """(path, line, function) of each entry of a traceback, outermost first."""
    out = []
    while tb is not None:
        code = tb.tb_frame.f_code
        out.append((code.co_filename, tb.tb_lineno or 0, code.co_name))
        tb = tb.tb_next
    return out


def _callers(catcher):
    """The frames above ``catcher`` (outermost first, at most MAX_STACK) when it is on this
    thread's stack, i.e. the exception is being handled now; else none."""
    frame = sys._getframe(3)
    while frame is not None and frame is not catcher:
        frame = frame.f_back
    if frame is None:
        return []
    out = []
    frame = catcher.f_back
    while frame is not None and len(out) < MAX_STACK:
        code = frame.f_code
        out.append((code.co_filename, frame.f_lineno or 0, code.co_name))
        frame = frame.f_back
    out.reverse()
    return out


def _recorded_below(entity, key, type_name, stack):
    """The id of the record a finished subsegment below ``entity`` made of the exception whose
    ``id()`` is ``key``, most recent first; None if there is none.

    Nothing holds the exception (a finished entity keeps no application object alive), so its
    ``id()`` may since have been reused by another one: the record must also name the same type
    and the same frames -- the stack seen here, where the exception arrived, is the start of the
    one recorded where it was caught first. Only an entity recording an exception pays for the
    walk."""
    for child in reversed(list(entity.subsegments or ())):
        cause = child.cause
        if type(cause) is dict and getattr(child, "exc_id", None) == key:
            records = cause.get("exceptions")
            if records and records[0].get("type") == type_name:
                theirs = records[0].get("stack") or []
                n = min(len(stack), len(theirs))
                if stack[:n] == theirs[:n]:
                    return records[0].get("id")
        if child.subsegments:
            found = _recorded_below(child, key, type_name, stack)
            if found is not None:
                return found
    return None


def _cwd():
    try:
        return os.getcwd()
    except OSError:
        return ""


class Segment(Entity):
    __slots__ = ("trace_id_", "parent_id", "origin", "user", "service", "lineage",
                 "tracestate", "http_", "raw_request", "raw_response",
                 # a slot, not Entity's class attribute: a class attribute read through an
                 # instance is not specialised on CPython 3.11 (~100 instructions a read, four
                 # reads a request)
                 "sampled")
    # one lock for every segment (it guards a few stores and an append at a time): a Lock per
    # segment cost ~830 instructions a request
    lock = threading.Lock()

    def __init__(self, name, trace_id, parent_id=None, start_time=None):
        # every slot stored here, in one frame (Entity.__init__ called from here was a second
        # Python frame per segment); keep in step with Entity.__init__
        self.name = name
        self.id = _entity_id()
        self.start_time = _time() if start_time is None else start_time
        self.end_time = None
        self.subsegments = None
        self.http_ = None  # (Entity's http slot is unused here: see the http property)
        self.raw_request = None
        self.raw_response = None
        self.aws = None
        self.sql = None
        self.annotations = None
        self.metadata = None
        self.error = False
        self.fault = False
        self.throttle = False
        self.cause = None
        self.emitted = False
        self.namespace = None
        self.trace_id_ = trace_id
        self.sampled = True
        self.parent_id = parent_id
        self.segment = self
        self.parent = None
        self.origin = None
        self.user = None
        self.service = None
        self.lineage = None
        self.tracestate = None  # W3C tracestate to pass on downstream

    @property
    def trace_id(self):
        return self.trace_id_

    # A web middleware may record the request as its raw strings (``raw_request``,
    # ``raw_response``: see encoder.web_text) and leave the http block to the encoder, on the
    # sender's thread. ``http`` is then made the first time anything reads it, and from then
    # on the dict is the record (the middleware and the encoder see ``raw_request`` is None);
    # an assignment replaces both. The encoder reads the slots, never this property.
    @property
    def http(self):
        raw = self.raw_request
        if raw is not None:
            from . import encoder

            self.http_ = encoder.web_dict(raw, self.raw_response)
            # cleared after http_ is set, request first: an encoder reading raw_response,
            # then raw_request, then http_ never sees half of either
            self.raw_request = None
            self.raw_response = None
        return self.http_

    @http.setter
    def http(self, value):
        self.http_ = value
        self.raw_request = None
        self.raw_response = None


class FacadeSegment(Segment):
    """A segment recorded by someone else (AWS Lambda records the function's segment itself):
    it stands for the trace header's ``Parent`` and is never emitted by the agent. Its id IS
    that ``Parent``, and it counts as already emitted, so each direct subsegment is sent as a
    standalone document (``type: subsegment``, ``trace_id`` = Root, ``parent_id`` = Parent)
    the moment it ends, with its own subsegments nested in it."""

    __slots__ = ()

    def __init__(self, name, trace_id, parent_id, start_time=None):
        Segment.__init__(self, name, trace_id, None, start_time)
        self.id = parent_id
        self.emitted = True


class Subsegment(Entity):
    __slots__ = ()

    def __init__(self, name, parent, namespace=None, start_time=None):
        # flat, as Segment's: every slot in one frame; keep in step with Entity.__init__
        self.name = name
        self.id = _entity_id()
        self.start_time = _time() if start_time is None else start_time
        self.end_time = None
        self.parent = parent
        self.segment = parent.segment
        self.subsegments = None
        self.http = None
        self.aws = None
        self.sql = None
        self.annotations = None
        self.metadata = None
        self.error = False
        self.fault = False
        self.throttle = False
        self.cause = None
        self.emitted = False
        self.namespace = namespace


class UnsampledSegment:
    """What an unsampled request carries: enough to propagate ``Sampled=0`` downstream. Its id
    is made only if a downstream call asks for it.

    Made as ``UnsampledSegment()`` and then given its ``trace_id`` (``unsampled_segment()`` does
    both): a class with no ``__init__``, its other fields class defaults, is the cheapest object
    CPython 3.11 makes on the unsampled request's path (~970 instructions; with slots and an
    ``__init__`` it was ~1 770)."""

    sampled = False
    segment = property(lambda self: self)
    _id = None
    lineage = None
    tracestate = None  # W3C tracestate to pass on downstream

    @property
    def id(self):
        if self._id is None:
            self._id = ids.entity_id()
        return self._id


def unsampled_segment(trace_id, lineage=None):
    seg = UnsampledSegment()
    seg.trace_id = trace_id
    if lineage:
        seg.lineage = lineage
    return seg


def clean_name(name):
    fixed, _ = _config.clean_name(name)
    return fixed
