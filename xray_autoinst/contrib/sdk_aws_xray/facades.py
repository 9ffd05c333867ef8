"""The SDK-shaped views of the agent's entities: what the SDK's code and applications hold as a
segment or subsegment. A facade wraps the agent's ``Segment``/``Subsegment`` and implements the
SDK entity methods applications use; an unknown method is a no-op (logged once), never an
exception. Writes go to the agent's entity, validated (``fields``); a segment the SDK opened
keeps its SDK-side state in the ``Ownership`` record."""

from __future__ import annotations

import json

from ... import log as _log
from ...config import clean_name
from ...core import header as _header
from ...core.entities import Subsegment, clip
from ...core.urls import clean_url
from ._shared import Tolerant, fail, get_current, set_current, tracer
from .fields import NAMESPACES, clean_sql, put_annotation, put_metadata
from .ownership import OWNERSHIP

_REQUEST_KEYS = ("url", "method", "user_agent", "client_ip", "x_forwarded_for")


class Unsampled:
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


def facade_of(entity):
    """The SDK-shaped view of one of the agent's entities (None for None)."""
    if entity is None:
        return None
    if type(entity) is Unsampled or isinstance(entity, Subsegment):
        return SubsegmentFacade(entity)
    return segment_facade(entity)


def segment_facade(seg):
    own = OWNERSHIP.of(seg)
    return own.facade if own is not None else SegmentFacade(seg)


class Facade(Tolerant):
    """What the SDK's code and applications hold as a segment or subsegment."""

    _what = "entity"

    def __init__(self, entity):
        self.__dict__["_e"] = entity

    def __eq__(self, other):
        if isinstance(other, Facade):
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
            fail("annotation")

    def put_metadata(self, key, value, namespace="default"):
        try:
            put_metadata(self._e, key, value, namespace)
        except Exception:  # noqa: BLE001
            fail("metadata")

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
                value = clean_url(str(value), tracer().config.redact_query_params)
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
            fail("http")

    def apply_status_code(self, status_code):
        try:
            if status_code and self._e.sampled:
                self._e.set_status(int(status_code))
        except (TypeError, ValueError):
            return
        except Exception:  # noqa: BLE001
            fail("status")

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
            fail("exception")

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


class SegmentFacade(Facade):
    _what = "segment"
    _ABSENT = frozenset(("type", "parent_segment", "namespace", "sql"))

    def __getattr__(self, name):
        if name in self._ABSENT:  # as on the SDK's Segment: hasattr(seg, "type") is False
            raise AttributeError(name)
        return Facade.__getattr__(self, name)

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
        return OWNERSHIP.of(self._e) is not None

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
        own = OWNERSHIP.of(self._e)
        if own is None:
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
            fail("origin")

    def get_origin_trace_header(self):
        own = OWNERSHIP.of(self._e)
        if own is not None and own.origin is not None:
            return own.origin
        return _origin_header(self._e)

    def close(self, end_time=None):
        own = OWNERSHIP.of(self._e)
        if own is not None:
            OWNERSHIP.end(own, end_time, force=True)


class SubsegmentFacade(Facade):
    _what = "subsegment"
    type = "subsegment"

    @property
    def parent_segment(self):
        return segment_facade(self._e.segment)

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
            e.namespace = value if value in NAMESPACES else None

    @property
    def sql(self):  # reading does not make it an SQL subsegment (the agent's SQL integrations
        # record nothing under one): set_sql does
        sql = getattr(self._e, "sql", None) if self._e.sampled else None
        return sql if sql is not None else {}

    def set_sql(self, sql):
        try:
            if self._e.sampled and isinstance(sql, dict):
                self._e.sql = clean_sql(sql)
        except Exception:  # noqa: BLE001
            fail("sql")

    def set_aws(self, aws_meta):
        if self._e.sampled and isinstance(aws_meta, dict):
            aws = self._e.aws
            if aws is None:
                aws = self._e.aws = {}
            aws.update(aws_meta)

    def close(self, end_time=None):
        try:
            e = self._e
            if type(e) is Unsampled:
                if get_current() is e:
                    set_current(e.parent)
            elif e.end_time is None:
                tracer().end_subsegment(e, end_time)
        except Exception:  # noqa: BLE001
            fail("close")


def _origin_header(seg):
    from aws_xray_sdk.core.models.trace_header import TraceHeader

    lineage = getattr(seg, "lineage", None)
    return TraceHeader(root=seg.trace_id, parent=getattr(seg, "parent_id", None),
                       data={"Lineage": lineage} if lineage else None)


