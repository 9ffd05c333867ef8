"""The recorder's methods while bridged: what runs in place of ``AWSXRayRecorder``'s own
``begin_segment``, ``begin_subsegment``, ``put_annotation`` ... on a bridged recorder (the
``BRIDGED`` table), and how a recorder is bridged (``adopt``: the agent's sampler and emitter
in place of the SDK's, the SDK's kept aside for ``release_all``).

``begin_segment`` while an agent entity is current returns a facade of the current segment
(one segment per request); with nothing current it opens an agent segment owned by the SDK
(``ownership``). ``begin_subsegment`` opens an agent subsegment, or pushes an ``Unsampled``
marker in an unsampled trace."""

from __future__ import annotations

import weakref

from ... import log as _log
from ...config import clean_name
from ...core import header as _header
from ...core import wrapping
from ...core.entities import Subsegment
from ._shared import fail, get_current, sdk_enabled, set_current, tracer
from .facades import Facade, SegmentFacade, SubsegmentFacade, Unsampled, facade_of, segment_facade
from .fields import NAMESPACES, put_annotation, put_metadata
from .ownership import OWNERSHIP
from .standins import EMITTER, SAMPLER, take_decision

FLAG = "_xray_autoinst_bridged"
SAVED = "_xray_autoinst_saved"  # the SDK's own (sampler, emitter) of a bridged recorder

_recorders: weakref.WeakSet = weakref.WeakSet()


def adopt(rec):
    """Bridge ``rec`` (once): the agent's sampler and emitter in place of the SDK's. Returns
    whether ``rec`` is bridged (not in AWS Lambda, where the SDK's own context is kept)."""
    d = rec.__dict__
    flag = d.get(FLAG)
    if flag is not None:
        return flag
    ctx = d.get("_context")
    flag = type(ctx).__name__ != "LambdaContext"
    if flag:
        d[SAVED] = (d.get("_sampler"), d.get("_emitter"))
        d["_sampler"] = SAMPLER
        d["_emitter"] = EMITTER
        _recorders.add(rec)
    d[FLAG] = flag
    return flag


def _bridged(rec):
    flag = rec.__dict__.get(FLAG)
    if flag is None:
        try:
            flag = adopt(rec)
        except Exception:  # noqa: BLE001
            fail("adopt")
            rec.__dict__[FLAG] = flag = False
    return flag and sdk_enabled()


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
        cur = get_current()
        if cur is not None:
            seg = cur.segment
            own = OWNERSHIP.of(seg)
            if own is not None:
                OWNERSHIP.join(own)
                return own.facade
            return SegmentFacade(seg)  # the request's segment: never a second one
        want = _decision(sampling)
        pending = take_decision()
        if want is None and not rec.sampling:
            want = True  # configure(sampling=False): the SDK records everything it begins
        hdr = _incoming(traceid, parent_id)
        forced = None
        if want is not None and (pending is None or pending != want) and hdr is not None:
            hdr.sampled = "1" if want else "0"  # an upstream decision: header rules apply
        elif want is not None:
            forced = want  # the agent's sampler decided it just now, or the caller did
        seg, token = tracer().begin_segment(clean_name(str(name))[0] if name else None, hdr,
                                          sampled=forced)
        facade = SegmentFacade(seg)
        OWNERSHIP.open(seg, token, facade)
        return facade
    except Exception:  # noqa: BLE001
        fail("begin_segment")
        from ...core import ids
        from ...core.entities import unsampled_segment

        return SegmentFacade(unsampled_segment(ids.trace_id()))


def end_segment(rec, end_time=None):
    try:
        cur = get_current()
        if cur is None:
            return
        seg = cur.segment
        own = OWNERSHIP.of(seg)
        if own is None:
            return  # the agent's request segment: the agent ends it
        OWNERSHIP.end(own, end_time)
    except Exception:  # noqa: BLE001
        fail("end_segment")


def current_segment(rec):
    try:
        cur = get_current()
        return None if cur is None else segment_facade(cur.segment)
    except Exception:  # noqa: BLE001
        fail("current_segment")
        return None


def _push_unsampled(parent, name):
    marker = Unsampled(parent, name)
    set_current(marker)
    return SubsegmentFacade(marker)


def _begin_sub(name, namespace, sampled=True):
    cur = None
    try:
        cur = get_current()
        if cur is not None and (not sampled or not cur.sampled):
            return _push_unsampled(cur, name)
        if not sampled:
            return None  # outside any trace: as the SDK
        sub = tracer().begin_subsegment(
            clean_name(str(name))[0] if name else "unnamed",
            namespace if namespace in NAMESPACES else None,
        )
        return None if sub is None else SubsegmentFacade(sub)
    except Exception:  # noqa: BLE001
        fail("begin_subsegment")
        if cur is not None and get_current() is cur:
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
        cur = get_current()
        if type(cur) is Unsampled:
            set_current(cur.parent)
        elif isinstance(cur, Subsegment):
            tracer().end_subsegment(cur, end_time)
        # a segment or nothing current: no subsegment to end (the SDK logs and returns)
    except Exception:  # noqa: BLE001
        fail("end_subsegment")


def current_subsegment(rec):
    try:
        cur = get_current()
        if type(cur) is Unsampled or isinstance(cur, Subsegment):
            return SubsegmentFacade(cur)
        return None
    except Exception:  # noqa: BLE001
        fail("current_subsegment")
        return None


def get_trace_entity(rec):
    try:
        return facade_of(get_current())
    except Exception:  # noqa: BLE001
        fail("get_trace_entity")
        return None


def set_trace_entity(rec, trace_entity):
    try:
        if trace_entity is None:
            set_current(None)
        elif isinstance(trace_entity, Facade):
            set_current(trace_entity._e)
        else:
            _log.once("sdk-set-entity", _log.INFO,
                      "aws-xray-sdk set_trace_entity with an entity not from this process's "
                      "recorder ignored")
    except Exception:  # noqa: BLE001
        fail("set_trace_entity")


def clear_trace_entities(rec):
    set_current(None)


def recorder_put_annotation(rec, key, value):
    try:
        cur = get_current()
        if cur is not None and cur.sampled:
            put_annotation(cur, key, value)
    except Exception:  # noqa: BLE001
        fail("annotation")


def recorder_put_metadata(rec, key, value, namespace="default"):
    try:
        cur = get_current()
        if cur is not None and cur.sampled:
            put_metadata(cur, key, value, namespace)
    except Exception:  # noqa: BLE001
        fail("metadata")


def is_sampled(rec):
    cur = get_current()
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
        adopt(instance)
    except Exception:  # noqa: BLE001
        fail("init")


def _traced_configure(wrapped, instance, args, kwargs):
    result = wrapped(*args, **kwargs)
    try:  # configure(sampler=..., emitter=...) replaced ours: keep the application's aside
        d = instance.__dict__
        if d.get(FLAG):
            sampler, emitter = d.get("_sampler"), d.get("_emitter")
            if sampler is not SAMPLER or emitter is not EMITTER:
                saved = d.get(SAVED) or (None, None)
                d[SAVED] = (saved[0] if sampler is SAMPLER else sampler,
                             saved[1] if emitter is EMITTER else emitter)
                d["_sampler"] = SAMPLER
                d["_emitter"] = EMITTER
                _log.once("sdk-configure", _log.INFO,
                          "aws-xray-sdk sampler/emitter from configure() not used under "
                          "xray-autoinst: the agent samples and sends")
    except Exception:  # noqa: BLE001
        fail("configure")
    return result


_EXTRA = ("__init__", "configure")


def wrap_recorder_class(cls):
    """Wrap ``AWSXRayRecorder``: each method of ``BRIDGED`` it defines, ``__init__`` (a new
    recorder is adopted) and ``configure`` (the agent's sampler and emitter stay)."""
    for name, impl in BRIDGED.items():
        if name in cls.__dict__:
            wrapping.wrap(cls, name, _bridge(impl))
    wrapping.wrap(cls, "__init__", _traced_init)
    wrapping.wrap(cls, "configure", _traced_configure)


def unwrap_recorder_class(cls):
    """The exact mirror of ``wrap_recorder_class``; every adopted recorder gets the SDK's own
    sampler and emitter back."""
    for name in (*BRIDGED, *_EXTRA):
        wrapping.unwrap(cls, name)
    for rec in list(_recorders):
        d = rec.__dict__
        sampler, emitter = d.pop(SAVED, (None, None))
        if sampler is not None:
            d["_sampler"] = sampler
        if emitter is not None:
            d["_emitter"] = emitter
        d.pop(FLAG, None)
    _recorders.clear()
