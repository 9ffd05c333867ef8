"""SQS and SNS on top of the botocore integration: one segment per received message, and the
trace carried by every message sent.

Consumers
    ``ReceiveMessage`` also asks for the ``AWSTraceHeader`` system attribute (added to the
    attribute list the application gave, never replacing it; taken out of the messages again
    when the application did not ask for it). When the response holds messages, its ``Messages``
    list is replaced by a list that notices when the application takes a message out of it
    (iterating it, indexing it, ``pop``). Taking a message begins a segment named after the
    service, continuing the message's ``AWSTraceHeader`` (a fresh trace when it has none or an
    invalid one; sampled by the rules when it carries no decision), with the queue recorded;
    that segment is current while the message is handled, so the calls made meanwhile are its
    subsegments. The boundary (see ``_work``): the segment ends when the same context takes the
    next message, polls again, deletes the message (the ``DeleteMessage`` call is its last
    subsegment), or finishes iterating, or when the request that was current when the message
    was taken ends (a request that takes a message and lets it lie) -- or, when the message was
    handed to a thread pool, when that task ends. A poll made outside any segment is never
    recorded (whatever ``XRAY_CONTEXT_MISSING`` says), so empty polls cost nothing; under
    ``process``, the process segment ends when the first message is taken (it covered the
    start-up) and calls made between messages are not recorded, so a worker loop never turns
    into one never-ending segment. Message bodies, attributes and receipt handles are never read
    into a document. boto3 resources (``queue.receive_messages()``) work the same way: building
    the ``sqs.Message`` resources is not a take, taking a resource from the list is.

Producers
    ``SendMessage`` and ``SendMessageBatch`` get the ``AWSTraceHeader`` message system attribute
    set explicitly (the current trace, ``Parent`` = the call's subsegment), unless the
    application set one; the HTTP ``X-Amzn-Trace-Id`` header is added to every SQS and SNS call
    (``Publish``, ``PublishBatch``) by the botocore integration itself.
"""

from __future__ import annotations

import contextvars
import sys

from ..core import header as _header
from ..core import tracer as _tracer_mod
from . import _work

_current = _tracer_mod.current_entity
_CLIENT_MARK = "_xray_autoinst_sqs"
_CTX = "xray_autoinst_sqs"
TRACE_ATTR = "AWSTraceHeader"
_state = {"patched": False}
# True while boto3's resource layer copies the messages out of a response (not a take)
_quiet: contextvars.ContextVar = contextvars.ContextVar("xray_autoinst_sqs_quiet", default=False)


def get_version():
    import botocore

    return botocore.__version__


# -- the hooks called by aws_botocore ----------------------------------------------------------
def before(client, operation, params):
    """Before an SQS call is recorded: False when it must not be (a poll outside any segment)."""
    try:
        if not client._xray_autoinst_sqs:
            _register(client)
        if operation != "ReceiveMessage":
            return True
        cur = _current.get()
        unit = _work.unit_of(cur)
        if unit is not None and cur is unit.seg:  # polling again: the message in hand is done
            cur = _work.release_taker(unit)
        # outside any segment (the process segment of XRAY_CONTEXT_MISSING=process included)
        return cur is not None and cur is not _tracer_mod.tracer.process_segment
    except Exception:  # noqa: BLE001
        _work.fail("sqs-before")
        return True


def after(sub, exc):
    """After an SQS call's subsegment ended: a successful delete of the message being handled
    ends its segment."""
    try:
        aws = sub.aws
        if aws is None or aws.get("operation") != "DeleteMessage":
            return
        unit = _work.units.get(sub.segment) if _work.units else None
        if unit is None or not unit.deleting:
            return
        unit.deleting = False
        if exc is None and not sub.error and not sub.fault:
            _work.release_taker(unit)
    except Exception:  # noqa: BLE001
        _work.fail("sqs-after")


def _register(client):
    events = client.meta.events
    for event, handler in (
        ("provide-client-params.sqs.ReceiveMessage", _ask_trace_header),
        ("after-call.sqs.ReceiveMessage", _wrap_messages),
        ("provide-client-params.sqs.SendMessage", _stamp_one),
        ("provide-client-params.sqs.SendMessageBatch", _stamp_batch),
        ("provide-client-params.sqs.DeleteMessage", _deleting),
    ):
        events.register(event, handler, unique_id="xray-autoinst-" + event)
    client._xray_autoinst_sqs = True


# -- consumers ---------------------------------------------------------------------------------
def _ask_trace_header(params=None, model=None, context=None, **_kwargs):
    """``provide-client-params``: the same parameters, asking for AWSTraceHeader too.

    Through ``MessageSystemAttributeNames`` when the installed botocore's model has it (added
    in botocore 1.34.101), else the older ``AttributeNames``: a parameter the model does not
    know would fail the application's call in botocore's validation."""
    try:
        if not _state["patched"] or not isinstance(params, dict):
            return None
        modern = params.get("MessageSystemAttributeNames")
        legacy = params.get("AttributeNames")
        asked = set()
        for names in (modern, legacy):
            if isinstance(names, (list, tuple)):
                asked.update(n for n in names if isinstance(n, str))
        strip = not ("All" in asked or TRACE_ATTR in asked)
        if isinstance(context, dict):
            context[_CTX] = (params.get("QueueUrl"), strip)
        if not strip:
            return None
        key = "AttributeNames" if legacy and not modern else "MessageSystemAttributeNames"
        if key != "AttributeNames" and not _knows(model, key):
            key = "AttributeNames"
        names = params.get(key)
        if names is not None and not isinstance(names, (list, tuple)):
            return None  # invalid: botocore reports it as without the agent
        new = dict(params)  # never the application's own dict or list
        new[key] = [*(names or ()), TRACE_ATTR]
        return new
    except Exception:  # noqa: BLE001
        _work.fail("sqs-receive")
        return None


def _knows(model, name):
    """Whether the operation's input shape has the member ``name`` (True when unknown)."""
    members = getattr(getattr(model, "input_shape", None), "members", None)
    return True if members is None else name in members


def _wrap_messages(parsed=None, context=None, **_kwargs):
    """``after-call``: the trace header out of each message, the list replaced by ours."""
    try:
        if not _state["patched"] or not isinstance(parsed, dict):
            return
        messages = parsed.get("Messages")
        if not messages or type(messages) is not list:
            return  # an empty poll: nothing at all
        info = context.get(_CTX) if isinstance(context, dict) else None
        queue_url, strip = info if info is not None else (None, False)
        headers = {}
        for msg in messages:
            if not isinstance(msg, dict):
                continue
            attrs = msg.get("Attributes")
            if isinstance(attrs, dict):
                value = attrs.pop(TRACE_ATTR, None) if strip else attrs.get(TRACE_ATTR)
                if strip and not attrs:
                    del msg["Attributes"]
                if isinstance(value, str):
                    headers[id(msg)] = value
        if not _from_transport():
            parsed["Messages"] = MessageList(messages, queue_url, headers)
    except Exception:  # noqa: BLE001
        _work.fail("sqs-messages")


# Libraries that receive SQS messages for their own consumers (Celery's kombu SQS transport):
# their messages are not the application's units of work (Celery's are its task executions)
TRANSPORTS = ("kombu.",)


def _from_transport(depth=40):
    """Is the ReceiveMessage being answered made by a transport library?"""
    frame = sys._getframe(2)
    while frame is not None and depth:
        name = frame.f_globals.get("__name__")
        if isinstance(name, str) and name.startswith(TRANSPORTS):
            return True
        frame = frame.f_back
        depth -= 1
    return False


class MessageList(list):
    """The response's ``Messages``: a plain list to the application, which notices takes."""

    _xray_queue = None
    _xray_headers = None
    _xray_taken = None

    def __init__(self, items=(), queue_url=None, headers=None):
        list.__init__(self, items)
        self._xray_queue = queue_url
        self._xray_headers = headers or {}
        self._xray_taken = set()

    def __iter__(self):
        if self._xray_taken is None:  # a copy made without __init__ (copy, pickle)
            return list.__iter__(self)
        return _iterate(self)

    def __getitem__(self, index):
        item = list.__getitem__(self, index)
        if type(index) is int:
            self._xray_take(item)
        return item

    def pop(self, index=-1):
        item = list.pop(self, index)
        self._xray_take(item)
        return item

    def _xray_take(self, item):
        return _take(self, item)

    def __reduce_ex__(self, protocol):  # copies and pickles are plain lists
        return (list, (list(list.__iter__(self)),))


def _iterate(messages):
    unit = None
    try:
        take = messages._xray_take
        for item in list.__iter__(messages):
            unit = take(item) or unit
            yield item
    finally:
        if unit is not None:  # the loop is over: so is the last message's handling
            try:
                if _current.get() is unit.seg:
                    _work.release_taker(unit)
            except Exception:  # noqa: BLE001
                _work.fail("sqs-iterate")


def _take(messages, item):
    """The application took ``item``: its segment begins (once per message)."""
    try:
        taken = messages._xray_taken
        if taken is None or id(item) in taken or _quiet.get():
            return None
        taken.add(id(item))
        tracer = _tracer_mod.get_tracer()
        if not tracer.enabled or not _state["patched"]:
            return None
        cur = _current.get()
        if cur is not None and cur.segment is tracer.process_segment:
            cur = None  # the process segment is no request: this is a worker loop
        if tracer.context_missing == "process":
            _work.become_worker(tracer, "SQS consumer")
        outer = cur
        prev = _work.unit_of(cur)
        if prev is not None:
            outer = prev.outer
            _work.release_taker(prev)
        hdr = _header.parse(messages._xray_headers.get(id(item)))
        unit = _work.begin(tracer, hdr, outer, item)
    except Exception:  # noqa: BLE001
        _work.fail("sqs-take")
        return None
    try:  # the unit is open: whatever happens here, it is returned (and so ends)
        seg = unit.seg
        if seg.sampled:
            _record(seg, messages._xray_queue, item)
    except Exception:  # noqa: BLE001
        _work.fail("sqs-record")
    return unit


def _record(seg, queue_url, item):
    meta = {}
    if isinstance(queue_url, str):
        meta["queue_url"] = queue_url[:250]
        name = queue_url.rstrip("/").rsplit("/", 1)[-1]
        if name:
            seg.annotations = {"sqs_queue": name[:250]}
    mid = item.get("MessageId") if isinstance(item, dict) else None
    if isinstance(mid, str):
        meta["message_id"] = mid[:250]
    if meta:
        seg.metadata = {"sqs": meta}


def _deleting(params=None, **_kwargs):
    """``provide-client-params`` of DeleteMessage: is it the message being handled?"""
    try:
        cur = _current.get()
        unit = _work.unit_of(cur)
        if unit is None or not isinstance(params, dict) or not isinstance(unit.item, dict):
            return None
        handle = params.get("ReceiptHandle")
        if handle is not None and handle == unit.item.get("ReceiptHandle"):
            if unit.seg.sampled:
                unit.deleting = True  # ended by after() once the call's subsegment ends
            else:
                _work.release_taker(unit)
    except Exception:  # noqa: BLE001
        _work.fail("sqs-delete")
    return None


# -- boto3 resources: queue.receive_messages() -------------------------------------------------
class ResourceList(MessageList):
    """``queue.receive_messages()``: the ``sqs.Message`` resources, taken like the messages."""

    _xray_source = None

    def __init__(self, items=(), source=None):
        list.__init__(self, items)
        self._xray_source = source
        self._xray_taken = source._xray_taken if source is not None else None

    def _xray_take(self, item):
        return _take_resource(self, item)


def _take_resource(resources, item):
    data = getattr(getattr(item, "meta", None), "data", None)
    if data is None or resources._xray_source is None:
        return None
    return _take(resources._xray_source, data)


def _traced_resource_handler(wrapped, instance, args, kwargs):
    """``ResourceHandler.__call__`` (boto3): building Message resources is not taking them."""
    source = None
    try:
        response = args[2] if len(args) > 2 else kwargs.get("response")
        if isinstance(response, dict):
            messages = response.get("Messages")
            if isinstance(messages, MessageList):
                source = messages
    except Exception:  # noqa: BLE001
        _work.fail("sqs-resource")
    if source is None:
        return wrapped(*args, **kwargs)
    token = _quiet.set(True)
    try:
        result = wrapped(*args, **kwargs)
    finally:
        _quiet.reset(token)
    try:
        if type(result) is list:
            return ResourceList(result, source)
    except Exception:  # noqa: BLE001
        _work.fail("sqs-resource")
    return result


def patch():
    """boto3's resource layer (registry entry ``boto3_sqs``); the client side is installed by
    aws_botocore.patch()."""
    from boto3.resources import response as target

    from ..core import wrapping

    if getattr(target, "_xray_autoinst_patched", False):
        return
    wrapping.wrap(target.ResourceHandler, "__call__", _traced_resource_handler)
    target._xray_autoinst_patched = True


def unpatch():
    from boto3.resources import response as target

    from ..core import wrapping

    if not getattr(target, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(target.ResourceHandler, "__call__")
    target._xray_autoinst_patched = False


# -- producers ---------------------------------------------------------------------------------
def _trace_value():
    if not _state["patched"]:
        return None
    return _tracer_mod.tracer.outgoing_header(None)


def _with_trace(attrs, value):
    """The message system attributes with AWSTraceHeader, or None to leave them as they are."""
    if attrs is None:
        return {TRACE_ATTR: {"DataType": "String", "StringValue": value}}
    if not isinstance(attrs, dict) or TRACE_ATTR in attrs:
        return None  # the application's own header wins; invalid input is left to botocore
    new = dict(attrs)
    new[TRACE_ATTR] = {"DataType": "String", "StringValue": value}
    return new


def _stamp_one(params=None, **_kwargs):
    try:
        value = _trace_value()
        if value is None or not isinstance(params, dict):
            return None
        attrs = _with_trace(params.get("MessageSystemAttributes"), value)
        if attrs is None:
            return None
        new = dict(params)
        new["MessageSystemAttributes"] = attrs
        return new
    except Exception:  # noqa: BLE001
        _work.fail("sqs-send")
        return None


def _stamp_batch(params=None, **_kwargs):
    try:
        value = _trace_value()
        if value is None or not isinstance(params, dict):
            return None
        entries = params.get("Entries")
        if not isinstance(entries, (list, tuple)):
            return None
        out = []
        for entry in entries:
            if isinstance(entry, dict):
                attrs = _with_trace(entry.get("MessageSystemAttributes"), value)
                if attrs is not None:
                    entry = dict(entry)
                    entry["MessageSystemAttributes"] = attrs
            out.append(entry)
        new = dict(params)
        new["Entries"] = out
        return new
    except Exception:  # noqa: BLE001
        _work.fail("sqs-send-batch")
        return None


# -- installed by aws_botocore.patch() ---------------------------------------------------------
def install(client_cls, hooks):
    setattr(client_cls, _CLIENT_MARK, False)
    hooks["sqs"] = sys.modules[__name__]
    _state["patched"] = True


def uninstall(client_cls, hooks):
    hooks.pop("sqs", None)
    if _CLIENT_MARK in client_cls.__dict__:
        delattr(client_cls, _CLIENT_MARK)
    _state["patched"] = False  # handlers left on existing clients do nothing
