"""aws-xray-sdk: applications that already use the X-Ray SDK join the agent's traces.

The SDK's recorder (``AWSXRayRecorder``, and so ``xray_recorder``, an ``AsyncAWSXRayRecorder``)
is bridged to the agent's current entity, so that code written for the SDK -- ``capture``,
``in_subsegment``, ``put_annotation``, ``put_metadata``, ``begin_segment``/``end_segment``,
``patch_all()``, the SDK's Flask/Django/aiohttp/bottle middlewares -- keeps working and records
into the agent's trace:

- ``begin_segment`` while an agent segment is current (the request's, opened by the agent's
  WSGI middleware) returns a facade of that segment: one segment per request. With nothing
  current it opens an agent segment (name, trace id, parent id and sampling decision as given),
  which the matching ``end_segment`` ends; nested calls join it.
- ``begin_subsegment`` opens an agent subsegment under the current entity and returns a facade
  of it; ``end_subsegment`` ends it. As in the SDK: None outside any trace, a dummy (pushed and
  popped like a subsegment, recording nothing, propagating ``Sampled=0``) in an unsampled
  request or for ``begin_subsegment_without_sampling``.
- annotations and metadata go to the current entity, validated to the segment schema.
- nothing is sent by the SDK: its emitter and sampler are replaced (no UDP socket used, no
  sampling poller thread); documents go out through the agent's emitter, sampling decisions
  are the agent's (``XRAY_SAMPLING_RULES``, centralized rules).
- ``patch_all()``/``patch()`` skip the libraries the agent traces itself (each call would
  otherwise get two subsegments); the others stay patched by the SDK and record through the
  bridge.

Facades wrap the agent's ``Segment``/``Subsegment`` and implement the SDK entity methods
applications use; an unknown method is a no-op (logged once), never an exception. Not bridged:
recorders in AWS Lambda (``LambdaContext``), and everything while the application disabled the
SDK itself (``global_sdk_config.set_sdk_enabled(False)``): the SDK's own code runs then.
"""

from __future__ import annotations

import contextvars
import json
import math
import os
import sys
import threading
import weakref

from .. import log as _log
from ..config import clean_name
from ..core import header as _header
from ..core import tracer as _tracer_mod
from ..core import wrapping
from ..core.entities import Subsegment, clip
from ..core.urls import clean_url
from . import _calls

_FLAG = "_xray_autoinst_bridged"
_SAVED = "_xray_autoinst_saved"  # the SDK's own (sampler, emitter) of a bridged recorder
_current = _tracer_mod.current_entity
_get = _current.get
_set = _current.set

ANNOTATION_KEY_MAX = 500
ANNOTATION_VALUE_MAX = 1000
_KEY_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_REQUEST_KEYS = ("url", "method", "user_agent", "client_ip", "x_forwarded_for")
_RESPONSE_KEYS = ("status", "content_length")
_NAMESPACES = ("aws", "remote")

# The SDK's patch list entries whose calls the agent records itself when it has an integration
# for one of these modules (by target module prefix; default: the entry's own name).
COVERS = {
    "httplib": ("http.client",),
    "requests": ("requests", "http.client"),
    "botocore": ("botocore",),
    "aiobotocore": ("aiobotocore",),
    "pynamodb": ("pynamodb",),
    "sqlalchemy_core": ("sqlalchemy",),
    "mysql": ("mysql",),
}

_recorders: weakref.WeakSet = weakref.WeakSet()
_owned: dict = {}  # segment id -> _Owned: the segments opened through the SDK's begin_segment
_owned_lock = threading.Lock()
# the decision the bridged sampler just made for a segment about to begin (SDK middlewares ask
# the sampler, then pass its answer to begin_segment): used once, never decided twice
_decided: contextvars.ContextVar = contextvars.ContextVar("xray_autoinst_sdk_decided",
                                                          default=None)


def get_version():
    from aws_xray_sdk.version import VERSION

    return VERSION


def _tracer():
    return _tracer_mod.get_tracer()


_fail = _calls.failure_logger(
    "sdk", "xray-autoinst aws-xray-sdk bridge failed (%s); the application is unaffected")


_sdk_config = []  # [aws_xray_sdk.global_sdk_config] once patched


def _sdk_enabled():
    """False while the application turned the SDK off itself (``set_sdk_enabled(False)``)."""
    try:
        return _sdk_config[0].sdk_enabled() if _sdk_config else True
    except Exception:  # noqa: BLE001
        return True


# -- what stands in for the SDK's sampler and emitter ----------------------------------------
class _Tolerant:
    """Unknown attributes are no-op methods (logged once): never an AttributeError."""

    _what = "object"

    def __getattr__(self, name):
        if name.startswith("__") or name.startswith("_self"):
            raise AttributeError(name)
        _log.once("sdk-attr-%s-%s" % (self._what, name), _log.INFO,
                  "aws-xray-sdk %s.%s is not supported under xray-autoinst: ignored",
                  self._what, name)
        return _noop


def _noop(*_args, **_kwargs):
    return None


class BridgeSampler(_Tolerant):
    """The recorder's sampler while bridged: the agent decides, once per segment."""

    _what = "sampler"

    def should_trace(self, sampling_req=None):
        try:
            cur = _get()
            if cur is not None:  # inside the agent's request: its decision stands
                return bool(cur.sampled)
            req = sampling_req if isinstance(sampling_req, dict) else {}
            decision = bool(_tracer().should_sample(
                req.get("host"), req.get("method"), req.get("path")))
            _decided.set(decision)
            return decision
        except Exception:  # noqa: BLE001
            _fail("sampler")
            return False

    def load_local_rules(self, rules):
        _log.once("sdk-rules", _log.INFO,
                  "aws-xray-sdk sampling rules are not used under xray-autoinst: sampling is "
                  "decided by the agent (XRAY_SAMPLING_RULES, or centralized rules)")

    def load_settings(self, /, *args, **kwargs):
        pass

    def start(self):
        pass


class BridgeEmitter(_Tolerant):
    """The recorder's emitter while bridged: the agent's emitter sends every document."""

    _what = "emitter"

    def send_entity(self, entity):
        _log.once("sdk-send", _log.DEBUG,
                  "aws-xray-sdk emitter bypassed: documents go out through xray-autoinst")

    def set_daemon_address(self, address):
        pass


_SAMPLER = BridgeSampler()
_EMITTER = BridgeEmitter()


# -- entities ---------------------------------------------------------------------------------
class _Unsampled:
    """Current while an SDK subsegment that records nothing is open: in an unsampled request,
    or from ``begin_subsegment_without_sampling``. Like the agent's unsampled segment, it makes
    integrations record nothing while still propagating ``Sampled=0`` downstream."""

    __slots__ = ("parent", "segment", "id", "name")
    sampled = False
    namespace = None

    def __init__(self, parent, name):
        self.parent = parent
        self.segment = parent.segment
        self.id = parent.id
        self.name = name


class _Owned:
    __slots__ = ("segment", "token", "facade", "depth", "origin")

    def __init__(self, segment, token, facade):
        self.segment = segment
        self.token = token
        self.facade = facade
        self.depth = 1
        self.origin = None


def _facade(entity):
    """The SDK-shaped view of one of the agent's entities (None for None)."""
    if entity is None:
        return None
    if type(entity) is _Unsampled or isinstance(entity, Subsegment):
        return SubsegmentFacade(entity)
    return _segment_facade(entity)


def _segment_facade(seg):
    own = _owned.get(seg.id)
    if own is not None and own.segment is seg:
        return own.facade
    return SegmentFacade(seg)


def _valid_annotation(key, value):
    if not isinstance(key, str) or not key or len(key) > ANNOTATION_KEY_MAX:
        return False
    if any(c not in _KEY_OK for c in key):
        return False
    if isinstance(value, bool) or isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str)


def put_annotation(entity, key, value):
    if not entity.sampled:
        return
    if not _valid_annotation(key, value):
        _log.limited("sdk-annotation", _log.INFO,
                     "annotation %.60r ignored: keys are 1-500 letters, digits or _, values a "
                     "string, number or boolean", key)
        return
    if isinstance(value, str) and len(value) > ANNOTATION_VALUE_MAX:
        value = value[: ANNOTATION_VALUE_MAX - 3] + "..."
    entity.put_annotation(key, value)


def _jsonable(value):
    try:
        json.dumps(value, default=repr)
        return value
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def put_metadata(entity, key, value, namespace="default"):
    if not entity.sampled:
        return
    if not isinstance(namespace, str) or namespace.startswith("AWS."):
        _log.limited("sdk-metadata", _log.INFO,
                     "metadata namespace %.60r ignored: a string not starting with 'AWS.'",
                     namespace)
        return
    entity.put_metadata(key if isinstance(key, str) else str(key), _jsonable(value), namespace)


class _Facade(_Tolerant):
    """What the SDK's code and applications hold as a segment or subsegment."""

    _what = "entity"

    def __init__(self, entity):
        self.__dict__["_e"] = entity

    def __eq__(self, other):
        if isinstance(other, _Facade):
            return self._e is other._e
        return NotImplemented

    def __hash__(self):
        return id(self._e)

    def __repr__(self):
        return "<aws-xray-sdk view of %s %r>" % (type(self._e).__name__, self.name)

    # -- identity ------------------------------------------------------------------------------
    @property
    def id(self):
        return self._e.id

    @property
    def trace_id(self):
        return self._e.segment.trace_id

    @property
    def sampled(self):
        return bool(self._e.sampled)

    @property
    def name(self):
        return getattr(self._e, "name", None) or "dummy"

    @name.setter
    def name(self, value):
        e = self._e
        if e.sampled and value:
            e.name = clean_name(str(value))[0]

    @property
    def start_time(self):
        return getattr(self._e, "start_time", None)

    @property
    def end_time(self):
        return getattr(self._e, "end_time", None)

    @property
    def in_progress(self):
        return getattr(self._e, "end_time", None) is None

    @property
    def subsegments(self):
        return [SubsegmentFacade(s) for s in (getattr(self._e, "subsegments", None) or ())]

    # -- fields, live where the SDK's are ------------------------------------------------------
    def _field(self, name):
        e = self._e
        if not e.sampled:
            return {}
        value = getattr(e, name)
        if value is None:
            value = {}
            setattr(e, name, value)
        return value

    @property
    def http(self):
        return self._field("http")

    @property
    def metadata(self):
        return self._field("metadata")

    @property
    def aws(self):
        return self._field("aws")

    @property
    def annotations(self):  # a copy: annotations are written through put_annotation
        return dict(getattr(self._e, "annotations", None) or {})

    @property
    def cause(self):
        return getattr(self._e, "cause", None) or {}

    def _flag(name):  # noqa: N805 - property factory
        def get(self):
            return bool(getattr(self._e, name, False))

        def set_(self, value):
            if self._e.sampled:
                setattr(self._e, name, bool(value))

        return property(get, set_)

    error = _flag("error")
    fault = _flag("fault")
    throttle = _flag("throttle")
    del _flag

    # -- the SDK entity methods ----------------------------------------------------------------
    def put_annotation(self, key, value):
        try:
            put_annotation(self._e, key, value)
        except Exception:  # noqa: BLE001
            _fail("annotation")

    def put_metadata(self, key, value, namespace="default"):
        try:
            put_metadata(self._e, key, value, namespace)
        except Exception:  # noqa: BLE001
            _fail("metadata")

    def _owned_here(self):
        return True

    def put_http_meta(self, key, value):
        try:
            e = self._e
            if value is None or not e.sampled:
                return
            if key == "status":
                value = int(value)
                e.set_status(value)
            elif key == "content_length":
                value = int(value)
            elif key == "x_forwarded_for":
                value = bool(value)
            elif key == "url":
                value = clean_url(str(value), _tracer().config.redact_query_params)
            elif key in _REQUEST_KEYS:
                value = clip(str(value))
            else:
                _log.once("sdk-http-" + str(key)[:40], _log.INFO,
                          "aws-xray-sdk http meta %.40r ignored", key)
                return
            http = e.http
            if http is None:
                http = e.http = {}
            part = "request" if key in _REQUEST_KEYS else "response"
            d = http.get(part)
            if d is None:
                d = http[part] = {}
            if part == "request" and not self._owned_here():
                d.setdefault(key, value)  # the agent recorded the request already
            else:
                d[key] = value
        except (TypeError, ValueError):
            return
        except Exception:  # noqa: BLE001
            _fail("http")

    def apply_status_code(self, status_code):
        try:
            if status_code and self._e.sampled:
                self._e.set_status(int(status_code))
        except (TypeError, ValueError):
            return
        except Exception:  # noqa: BLE001
            _fail("status")

    def add_error_flag(self):
        self.error = True

    def add_fault_flag(self):
        self.fault = True

    def add_throttle_flag(self):
        self.throttle = True

    def add_exception(self, exception, stack=None, remote=False):
        try:
            if self._e.sampled and isinstance(exception, BaseException):
                self._e.add_exception(exception, remote=bool(remote))
        except Exception:  # noqa: BLE001
            _fail("exception")

    def save_origin_trace_header(self, trace_header):
        pass

    def get_origin_trace_header(self):
        return _origin_header(self._e.segment)

    def add_subsegment(self, subsegment):
        _log.once("sdk-add-subsegment", _log.INFO,
                  "aws-xray-sdk add_subsegment ignored under xray-autoinst: use "
                  "begin_subsegment/in_subsegment")

    def remove_subsegment(self, subsegment):
        pass

    def to_dict(self):
        e = self._e
        out = {"name": self.name, "id": e.id, "trace_id": self.trace_id}
        if getattr(e, "start_time", None) is not None:
            out["start_time"] = e.start_time
        if getattr(e, "end_time", None) is not None:
            out["end_time"] = e.end_time
        else:
            out["in_progress"] = True
        return out

    def serialize(self):
        return json.dumps(self.to_dict())


class SegmentFacade(_Facade):
    _what = "segment"
    _ABSENT = frozenset(("type", "parent_segment", "namespace", "sql"))

    def __getattr__(self, name):
        if name in self._ABSENT:  # as on the SDK's Segment: hasattr(seg, "type") is False
            raise AttributeError(name)
        return _Facade.__getattr__(self, name)

    @property
    def parent_id(self):
        return getattr(self._e, "parent_id", None)

    @property
    def user(self):
        return getattr(self._e, "user", None)

    @property
    def origin(self):
        return getattr(self._e, "origin", None)

    def _owned_here(self):
        own = _owned.get(self._e.id)
        return own is not None and own.segment is self._e

    def set_user(self, user):
        if self._e.sampled and user is not None:
            self._e.user = clip(str(user))

    def set_service(self, service_info):
        if self._e.sampled and isinstance(service_info, dict):
            self._e.service = {str(k): str(v) for k, v in service_info.items()}

    def set_aws(self, aws_meta):
        _log.once("sdk-segment-aws", _log.DEBUG,
                  "aws-xray-sdk set_aws on a segment ignored: the agent writes the segment's aws")

    def set_rule_name(self, rule_name):
        pass

    def save_origin_trace_header(self, trace_header):
        own = _owned.get(self._e.id)
        if own is None or own.segment is not self._e:
            return  # the agent's request segment: the agent read the header itself
        try:
            own.origin = trace_header
            data = getattr(trace_header, "data", None)
            lineage = data.get("Lineage") if isinstance(data, dict) else None
            if lineage and self._e.sampled and not self._e.lineage:
                parsed = _header.parse("Root=%s;Lineage=%s" % (self._e.trace_id, lineage))
                if parsed is not None and parsed.lineage:
                    self._e.lineage = parsed.lineage
        except Exception:  # noqa: BLE001
            _fail("origin")

    def get_origin_trace_header(self):
        own = _owned.get(self._e.id)
        if own is not None and own.segment is self._e and own.origin is not None:
            return own.origin
        return _origin_header(self._e)

    def close(self, end_time=None):
        own = _owned.get(self._e.id)
        if own is not None and own.segment is self._e:
            _end_owned(own, end_time, force=True)


class SubsegmentFacade(_Facade):
    _what = "subsegment"
    type = "subsegment"

    @property
    def parent_segment(self):
        return _segment_facade(self._e.segment)

    @property
    def parent_id(self):
        parent = self._e.parent
        return parent.id if parent is not None else None

    @property
    def namespace(self):
        return getattr(self._e, "namespace", None) or "local"

    @namespace.setter
    def namespace(self, value):
        e = self._e
        if e.sampled:
            e.namespace = value if value in _NAMESPACES else None

    @property
    def sql(self):  # reading does not make it an SQL subsegment (the agent's SQL integrations
        # record nothing under one): set_sql does
        sql = getattr(self._e, "sql", None) if self._e.sampled else None
        return sql if sql is not None else {}

    def set_sql(self, sql):
        try:
            if self._e.sampled and isinstance(sql, dict):
                self._e.sql = _clean_sql(sql)
        except Exception:  # noqa: BLE001
            _fail("sql")

    def set_aws(self, aws_meta):
        if self._e.sampled and isinstance(aws_meta, dict):
            aws = self._e.aws
            if aws is None:
                aws = self._e.aws = {}
            aws.update(aws_meta)

    def close(self, end_time=None):
        try:
            e = self._e
            if type(e) is _Unsampled:
                if _get() is e:
                    _set(e.parent)
            elif e.end_time is None:
                _tracer().end_subsegment(e, end_time)
        except Exception:  # noqa: BLE001
            _fail("close")


def _origin_header(seg):
    from aws_xray_sdk.core.models.trace_header import TraceHeader

    lineage = getattr(seg, "lineage", None)
    return TraceHeader(root=seg.trace_id, parent=getattr(seg, "parent_id", None),
                       data={"Lineage": lineage} if lineage else None)


def _clean_sql(sql):
    """The SDK's sql dict made schema-valid and safe: no password in the url, the query text
    sanitized as the agent's own SQL integrations do (or dropped with XRAY_SQL_QUERIES=off)."""
    cfg = _tracer().config
    out = {}
    for key, value in sql.items():
        if value is None or not isinstance(key, str):
            continue
        if key == "sanitized_query":
            if cfg.sql_queries == "off":
                continue
            from ._sql import sanitize

            value = sanitize(str(value))
        elif key in ("url", "connection_string"):
            value = clean_url(str(value), cfg.redact_query_params)
        elif key == "user":
            value = clip(str(value))
        else:
            value = str(value)
        out[key] = value
    return out


# -- the recorder's methods while bridged ------------------------------------------------------
def _adopt(rec):
    """Bridge ``rec`` (once): the agent's sampler and emitter in place of the SDK's. Returns
    whether ``rec`` is bridged (not in AWS Lambda, where the SDK's own context is kept)."""
    d = rec.__dict__
    flag = d.get(_FLAG)
    if flag is not None:
        return flag
    ctx = d.get("_context")
    flag = type(ctx).__name__ != "LambdaContext"
    if flag:
        d[_SAVED] = (d.get("_sampler"), d.get("_emitter"))
        d["_sampler"] = _SAMPLER
        d["_emitter"] = _EMITTER
        _recorders.add(rec)
    d[_FLAG] = flag
    return flag


def _bridged(rec):
    flag = rec.__dict__.get(_FLAG)
    if flag is None:
        try:
            flag = _adopt(rec)
        except Exception:  # noqa: BLE001
            _fail("adopt")
            rec.__dict__[_FLAG] = flag = False
    return flag and _sdk_enabled()


def _decision(sampling):
    if sampling is None:
        return None
    if sampling == 0 or sampling is False or sampling == "0":
        return False
    return bool(sampling)


def _incoming(traceid, parent_id):
    if not traceid or not isinstance(traceid, str):
        return None
    hdr = None
    if isinstance(parent_id, str) and parent_id:
        hdr = _header.parse("Root=%s;Parent=%s" % (traceid, parent_id))
    if hdr is None:
        hdr = _header.parse("Root=" + traceid)
    return hdr


def begin_segment(rec, name=None, traceid=None, parent_id=None, sampling=None):
    try:
        cur = _get()
        if cur is not None:
            seg = cur.segment
            own = _owned.get(seg.id)
            if own is not None and own.segment is seg:
                with _owned_lock:
                    own.depth += 1
                return own.facade
            return SegmentFacade(seg)  # the request's segment: never a second one
        tracer = _tracer()
        want = _decision(sampling)
        pending = _decided.get()
        if pending is not None:
            _decided.set(None)
        if want is None and not rec.sampling:
            want = True  # configure(sampling=False): the SDK records everything it begins
        hdr = _incoming(traceid, parent_id)
        forced = None
        if want is not None and (pending is None or pending != want) and hdr is not None:
            hdr.sampled = "1" if want else "0"  # an upstream decision: header rules apply
        elif want is not None:
            forced = want  # the agent's sampler decided it just now, or the caller did
        seg, token = tracer.begin_segment(clean_name(str(name))[0] if name else None, hdr,
                                          sampled=forced)
        facade = SegmentFacade(seg)
        own = _Owned(seg, token, facade)
        _owned[seg.id] = own
        return facade
    except Exception:  # noqa: BLE001
        _fail("begin_segment")
        from ..core import ids
        from ..core.entities import UnsampledSegment

        return SegmentFacade(UnsampledSegment(ids.trace_id()))


def _end_owned(own, end_time, force=False):
    with _owned_lock:
        own.depth -= 1
        if own.depth > 0 and not force:
            return
        if _owned.get(own.segment.id) is own:
            del _owned[own.segment.id]
        else:
            return
    _tracer().end_segment(own.segment, own.token, end_time)


def end_segment(rec, end_time=None):
    try:
        cur = _get()
        if cur is None:
            return
        seg = cur.segment
        own = _owned.get(seg.id)
        if own is None or own.segment is not seg:
            return  # the agent's request segment: the agent ends it
        _end_owned(own, end_time)
    except Exception:  # noqa: BLE001
        _fail("end_segment")


def current_segment(rec):
    try:
        cur = _get()
        return None if cur is None else _segment_facade(cur.segment)
    except Exception:  # noqa: BLE001
        _fail("current_segment")
        return None


def _push_unsampled(parent, name):
    marker = _Unsampled(parent, name)
    _set(marker)
    return SubsegmentFacade(marker)


def _begin_sub(name, namespace, sampled=True):
    cur = None
    try:
        cur = _get()
        if cur is not None and (not sampled or not cur.sampled):
            return _push_unsampled(cur, name)
        if not sampled:
            return None  # outside any trace: as the SDK
        sub = _tracer().begin_subsegment(
            clean_name(str(name))[0] if name else "unnamed",
            namespace if namespace in _NAMESPACES else None,
        )
        return None if sub is None else SubsegmentFacade(sub)
    except Exception:  # noqa: BLE001
        _fail("begin_subsegment")
        if cur is not None and _get() is cur:
            try:
                return _push_unsampled(cur, name)  # end_subsegment pops it, not the parent
            except Exception:  # noqa: BLE001
                return None
        return None


def begin_subsegment(rec, name, namespace="local"):
    return _begin_sub(name, namespace)


def begin_subsegment_without_sampling(rec, name):
    return _begin_sub(name, None, sampled=False)


def end_subsegment(rec, end_time=None):
    try:
        cur = _get()
        if type(cur) is _Unsampled:
            _set(cur.parent)
        elif isinstance(cur, Subsegment):
            _tracer().end_subsegment(cur, end_time)
        # a segment or nothing current: no subsegment to end (the SDK logs and returns)
    except Exception:  # noqa: BLE001
        _fail("end_subsegment")


def current_subsegment(rec):
    try:
        cur = _get()
        if type(cur) is _Unsampled or isinstance(cur, Subsegment):
            return SubsegmentFacade(cur)
        return None
    except Exception:  # noqa: BLE001
        _fail("current_subsegment")
        return None


def get_trace_entity(rec):
    try:
        return _facade(_get())
    except Exception:  # noqa: BLE001
        _fail("get_trace_entity")
        return None


def set_trace_entity(rec, trace_entity):
    try:
        if trace_entity is None:
            _set(None)
        elif isinstance(trace_entity, _Facade):
            _set(trace_entity._e)
        else:
            _log.once("sdk-set-entity", _log.INFO,
                      "aws-xray-sdk set_trace_entity with an entity not from this process's "
                      "recorder ignored")
    except Exception:  # noqa: BLE001
        _fail("set_trace_entity")


def clear_trace_entities(rec):
    _set(None)


def recorder_put_annotation(rec, key, value):
    try:
        cur = _get()
        if cur is not None and cur.sampled:
            put_annotation(cur, key, value)
    except Exception:  # noqa: BLE001
        _fail("annotation")


def recorder_put_metadata(rec, key, value, namespace="default"):
    try:
        cur = _get()
        if cur is not None and cur.sampled:
            put_metadata(cur, key, value, namespace)
    except Exception:  # noqa: BLE001
        _fail("metadata")


def is_sampled(rec):
    cur = _get()
    return bool(cur is not None and cur.sampled)


def _nothing(rec):  # the SDK's stream_subsegments(self), _send_segment(self)
    return None


def _nothing_out(rec, subsegment):  # _stream_subsegment_out(self, subsegment)
    return None


# recorder method -> what runs instead while the recorder is bridged
BRIDGED = {
    "begin_segment": begin_segment,
    "end_segment": end_segment,
    "current_segment": current_segment,
    "begin_subsegment": begin_subsegment,
    "begin_subsegment_without_sampling": begin_subsegment_without_sampling,
    "end_subsegment": end_subsegment,
    "current_subsegment": current_subsegment,
    "get_trace_entity": get_trace_entity,
    "set_trace_entity": set_trace_entity,
    "clear_trace_entities": clear_trace_entities,
    "put_annotation": recorder_put_annotation,
    "put_metadata": recorder_put_metadata,
    "is_sampled": is_sampled,
    "stream_subsegments": _nothing,
    "_send_segment": _nothing,
    "_stream_subsegment_out": _nothing_out,
}


def _bridge(impl):
    def wrapper(wrapped, instance, args, kwargs):
        if instance is None or not _bridged(instance):
            return wrapped(*args, **kwargs)
        return impl(instance, *args, **kwargs)  # a bad call raises TypeError, as the SDK's

    return wrapper


def _traced_init(wrapped, instance, args, kwargs):
    wrapped(*args, **kwargs)
    try:
        _adopt(instance)
    except Exception:  # noqa: BLE001
        _fail("init")


def _traced_configure(wrapped, instance, args, kwargs):
    result = wrapped(*args, **kwargs)
    try:  # configure(sampler=..., emitter=...) replaced ours: keep the application's aside
        d = instance.__dict__
        if d.get(_FLAG):
            sampler, emitter = d.get("_sampler"), d.get("_emitter")
            if sampler is not _SAMPLER or emitter is not _EMITTER:
                saved = d.get(_SAVED) or (None, None)
                d[_SAVED] = (saved[0] if sampler is _SAMPLER else sampler,
                             saved[1] if emitter is _EMITTER else emitter)
                d["_sampler"] = _SAMPLER
                d["_emitter"] = _EMITTER
                _log.once("sdk-configure", _log.INFO,
                          "aws-xray-sdk sampler/emitter from configure() not used under "
                          "xray-autoinst: the agent samples and sends")
    except Exception:  # noqa: BLE001
        _fail("configure")
    return result


# -- patch() and patch_all() ------------------------------------------------------------------
def covered_by_agent(sdk_module):
    """The agent's integration recording the calls the SDK's ``sdk_module`` patch would record,
    or None. Integrations turned off (XRAY_DISABLED_INSTRUMENTATIONS) or failed do not count."""
    from .. import bootstrap
    from ..registry import INTEGRATIONS

    prefixes = COVERS.get(sdk_module, (sdk_module,))
    disabled = _tracer().config.disabled_instrumentations
    for name, (targets, _patcher, _dist) in INTEGRATIONS.items():
        if name == "aws_xray_sdk" or name in disabled:
            continue
        status = str(bootstrap.status.get(name, ""))
        if status == "disabled" or status.startswith("failed"):
            continue
        for target in targets:
            for p in prefixes:
                if target == p or target.startswith(p + "."):
                    return name
    return None


def _traced_patch_module(wrapped, instance, args, kwargs):
    covered = None
    module = args[0] if args else kwargs.get("module_to_patch")
    try:
        if isinstance(module, str) and _sdk_enabled():
            covered = covered_by_agent(module)
    except Exception:  # noqa: BLE001
        _fail("patch_module")
    if covered is not None:
        _log.once("sdk-skip-" + module, _log.INFO,
                  "aws-xray-sdk patch of %r skipped: xray-autoinst traces it already "
                  "(integration %r); each call would otherwise be recorded twice",
                  module, covered)
        return None
    return wrapped(*args, **kwargs)


def _after_fork():
    _owned.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def patch():
    from aws_xray_sdk import global_sdk_config
    from aws_xray_sdk.core import patcher, recorder

    if getattr(recorder, "_xray_autoinst_patched", False):
        return
    _tracer_mod.get_tracer()
    if not _sdk_config:
        _sdk_config.append(global_sdk_config)
    cls = recorder.AWSXRayRecorder
    for name, impl in BRIDGED.items():
        if name in cls.__dict__:
            wrapping.wrap(cls, name, _bridge(impl))
    wrapping.wrap(cls, "__init__", _traced_init)
    wrapping.wrap(cls, "configure", _traced_configure)
    if hasattr(patcher, "_patch_module"):
        wrapping.wrap(patcher, "_patch_module", _traced_patch_module)
    else:
        _log.once("sdk-no-patch-filter", _log.WARNING,
                  "this aws-xray-sdk version has no patcher._patch_module: its patch_all() "
                  "may record calls the agent records too")
    recorder._xray_autoinst_patched = True
    core = sys.modules.get("aws_xray_sdk.core")
    existing = getattr(core, "xray_recorder", None)  # made before this patch ran
    if isinstance(existing, cls):
        _adopt(existing)


def unpatch():
    from aws_xray_sdk.core import patcher, recorder

    if not getattr(recorder, "_xray_autoinst_patched", False):
        return
    cls = recorder.AWSXRayRecorder
    for name in list(BRIDGED) + ["__init__", "configure"]:
        wrapping.unwrap(cls, name)
    wrapping.unwrap(patcher, "_patch_module")
    for rec in list(_recorders):
        d = rec.__dict__
        sampler, emitter = d.pop(_SAVED, (None, None))
        if sampler is not None:
            d["_sampler"] = sampler
        if emitter is not None:
            d["_emitter"] = emitter
        d.pop(_FLAG, None)
    _recorders.clear()
    recorder._xray_autoinst_patched = False
