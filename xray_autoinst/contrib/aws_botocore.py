"""botocore (boto3 and everything on it): one ``aws`` subsegment per API call.

``BaseClient._make_api_call`` is wrapped. The subsegment is named after the service's endpoint
prefix (``dynamodb``, ``s3``, ``sqs``, ...: what aws-xray-sdk-python names it, so traces look
the same), holds ``aws`` = operation, region, request_id, retries and the identifiers of the
resources involved (table, queue, bucket and key, function, topic, stream, ...) and
``http.response`` = status (and content_length). Payloads, item contents and message bodies are
never read. ``error``/``throttle``/``fault`` come from the HTTP status and the error code of the
response or the exception.

The subsegment is the current entity during the call, so the HTTP exchange botocore makes under
it is not recorded a second time (its ``connect``/``dns``/``dial``/``tls`` phases become children
of the AWS subsegment). The trace header is added on the client's ``before-send`` event, so it is
on the wire for every attempt (it is not signed, as with the X-Ray SDKs). Calls to the ``xray``
service itself -- the agent's daemon relays with botocore -- are never recorded.
"""

from __future__ import annotations

import threading

from ..core import tracer as _tracer_mod
from ..core.entities import Subsegment, clip
from ..core.wrapping import hide_frames
from . import _calls, _guard, _http

_current = _tracer_mod.current_entity
# the process tracer: one object, configured in place by tracer.install (never rebound)
_tracer = _tracer_mod.tracer
_internal = _http.internal
_EVENTS_MARK = "_xray_autoinst_events"
_HANDLER_ID = "xray-autoinst-trace-header"
_INTERNAL = object()
# "aio": aiobotocore's patch (aws_aiobotocore) uses this module's handler and helpers too
_state = {"patched": False, "aio": False, "remote": (), "client_error": None}
# Per-service hooks, endpoint prefix -> object with ``before(client, operation, params) -> bool``
# (False: neither this call nor anything under it is recorded) and ``after(sub, exc)`` (once
# the call's subsegment has ended).
# Filled by patch(): the SQS message logic lives in aws_sqs.
HOOKS: dict = {}

THROTTLE_CODES = frozenset((
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
    "EC2ThrottledException",
))

# Request parameters that name a resource: parameter -> aws field. Only strings are recorded.
IDENTIFIERS = {
    "TableName": "table_name",
    "IndexName": "index_name",
    "QueueUrl": "queue_url",
    "QueueName": "queue_name",
    "FunctionName": "function_name",
    "Qualifier": "qualifier",
    "InvocationType": "invocation_type",
    "TopicArn": "topic_arn",
    "TargetArn": "target_arn",
    "StreamName": "stream_name",
    "StreamARN": "stream_arn",
    "DeliveryStreamName": "delivery_stream_name",
    "StateMachineArn": "state_machine_arn",
    "EndpointName": "endpoint_name",
    "EventBusName": "event_bus_name",
    "LogGroupName": "log_group_name",
    "SecretId": "secret_id",
    "KeyId": "key_id",
}
# ... per service, where the parameter is an identifier only there
SERVICE_IDENTIFIERS = {
    "s3": {"Bucket": "bucket_name", "Key": "key", "VersionId": "version_id",
           "Prefix": "prefix"},
}
# DynamoDB batch calls: the table names are the keys of RequestItems (never the items)
_TABLE_MAPS = ("RequestItems",)


def get_version():
    import botocore

    return botocore.__version__


_fail = _guard.reporter(
    "botocore", "xray-autoinst AWS SDK instrumentation failed (%s); the call is unaffected")


class _Client:
    """What every call of one client records alike (kept on the client as
    ``_xray_autoinst_events``): its endpoint prefix, its region, whether the header handler is
    registered, and the plan of each operation called so far."""

    __slots__ = ("prefix", "region", "header", "ops")

    def __init__(self, prefix, region):
        self.prefix = prefix
        self.region = region
        self.header = False
        self.ops = {}


class _Operation:
    """One operation of one client, worked out on its first call from the operation's model:
    the request parameters that name a resource (param, aws field, is a map of tables) and the
    response members recorded (key, aws field). Nothing else is looked at per call."""

    __slots__ = ("name", "params", "results")

    def __init__(self, name, params, results):
        self.name = name
        self.params = params
        self.results = results


class _Call(Subsegment):
    """The subsegment of one API call; ``operation`` is its plan (not encoded)."""

    __slots__ = ("operation",)


# response members recorded, when the operation's output has them
_RESULTS = (("MessageId", "message_id"), ("Messages", "message_count"), ("Count", "count"),
            ("ScannedCount", "scanned_count"))
_MAX_OPS = 512  # plans kept per client
_candidates_of: dict = {}


def _candidates(prefix):
    """Every (parameter, aws field, is a map of tables) that can name a resource in ``prefix``."""
    found = _candidates_of.get(prefix)
    if found is None:
        table = dict(IDENTIFIERS)
        table.update(SERVICE_IDENTIFIERS.get(prefix) or {})
        found = tuple((p, f, False) for p, f in table.items()) + tuple(
            (p, "table_names", True) for p in _TABLE_MAPS)
        _candidates_of[prefix] = found
    return found


def _plan(client, info, operation):
    name = operation if type(operation) is str else str(operation)
    candidates = _candidates(info.prefix)
    try:
        model = client.meta.service_model.operation_model(name)
        shape = model.input_shape
        inputs = shape.members if shape is not None else {}
        shape = model.output_shape
        outputs = shape.members if shape is not None else {}
        params = tuple(c for c in candidates if c[0] in inputs)
        results = tuple(r for r in _RESULTS if r[0] in outputs)
    except Exception:  # noqa: BLE001 - no model for it: every candidate is looked at
        params, results = candidates, _RESULTS
    plan = _Operation(name, params, results)
    if len(info.ops) < _MAX_OPS:
        info.ops[operation] = plan
    return plan


def _header_store():
    """(botocore's ``HeadersDict``, its keys for our headers) when a prepared request's headers
    keep their entries as checked here (a dict ``_dict`` keyed by ``_HeaderKey``, compared
    without case): the handler then looks up and sets its headers in that dict with keys made
    once (the mapping's ``in`` raises and catches a KeyError per absent header, and builds a key
    per lookup: ~8 000 instructions for each check). None: the mapping's own methods."""
    try:
        from botocore.awsrequest import HeadersDict, _HeaderKey

        keys = {n: _HeaderKey(n) for n in (_http.TRACE_HEADER, "traceparent", "tracestate")}
        probe = HeadersDict({"x-amzn-trace-id": "a", "Other": "b"})
        store = probe._dict
        if type(store) is not dict or keys[_http.TRACE_HEADER] not in store:
            return None
        store[keys["traceparent"]] = "c"
        if (keys["tracestate"] in store or probe.get("TRACEPARENT") != "c"
                or list(probe.items()) != [("x-amzn-trace-id", "a"), ("Other", "b"),
                                           ("traceparent", "c")]):
            return None
        return HeadersDict, keys
    except Exception:  # noqa: BLE001 - another botocore: the generic path
        return None


_fast_headers = (None, {})  # set by patch()


def _inject_header(request=None, **_kwargs):
    """``before-send`` handler: the trace header on the prepared request (every attempt)."""
    try:
        if request is None or not (_state["patched"] or _state["aio"]):
            return
        cur = _current.get()
        if cur is None:
            return
        if cur.sampled and cur.namespace == "aws":
            aws = cur.aws
            if aws is not None:
                aws["retries"] = aws.get("retries", -1) + 1
        headers = request.headers
        tracer = _tracer_mod.tracer
        kind, keys = _fast_headers
        if type(headers) is kind:
            # setdefault: a header already there (the caller's) wins, with one lookup; each
            # lookup hashes a _HeaderKey through its Python __hash__ (~900 instructions), and
            # "in" then a store was two. The usual values (sampled, an X-Ray root, no lineage
            # nor tracestate) are core.header's formats written out (no outgoing_header,
            # w3c_headers, format calls; tests/test_botocore.py compares them). With the
            # written-out end of the call, ~8 900 instructions less a call on the wire
            store = headers._dict
            seg = cur.segment
            plain = cur.sampled is True and not seg.lineage
            if plain:
                root = seg.trace_id_  # a sampled entity's segment is a Segment
            if tracer.use_w3c:
                if (plain and not seg.tracestate and len(root) == 35
                        and root[:2] == "1-"):
                    store.setdefault(keys["traceparent"],
                                     "00-" + root[2:10] + root[11:] + "-" + cur.id + "-01")
                elif keys["traceparent"] not in store:
                    for name, value in tracer.w3c_headers(cur):
                        store[keys[name]] = value
            if plain and tracer.use_xray:
                store.setdefault(keys[_http.TRACE_HEADER],
                                 "Root=" + root + ";Parent=" + cur.id + ";Sampled=1")
                return
            key = keys[_http.TRACE_HEADER]
            if key in store:
                return
            value = tracer.outgoing_header(cur)
            if value is not None:
                store[key] = value
            return
        if tracer.use_w3c and "traceparent" not in headers:
            for name, value in tracer.w3c_headers(cur):
                headers[name] = value
        if _http.TRACE_HEADER in headers:
            return
        value = tracer.outgoing_header(cur)
        if value is not None:
            headers[_http.TRACE_HEADER] = value
    except Exception:  # noqa: BLE001 - an event handler that raises would fail the call
        try:
            _fail("header")
        except Exception:  # noqa: BLE001
            pass


def _describe(client):
    """The client's ``_Client``, made on its first call."""
    # an attribute with a class default: a missing one would go through BaseClient.__getattr__
    # (an event emitted per lookup), and reading __dict__ slows every attribute access after
    meta = client.meta
    info = _Client(_prefix(meta.service_model), str(meta.region_name))
    client._xray_autoinst_events = info
    return info


def _ensure_handler(client, info):
    """Register the header handler on ``client`` once."""
    if not info.header:
        client.meta.events.register_first("before-send", _inject_header,
                                          unique_id=_HANDLER_ID)
        info.header = True


def _prefix(model):
    try:
        return model.endpoint_prefix
    except Exception:  # noqa: BLE001 - a custom model without endpointPrefix
        return model.service_name


def _begin(client, operation, params):
    """The subsegment for this call, _INTERNAL for the agent's own calls, or None."""
    tracer = _tracer_mod.tracer if _tracer_mod._configured else _tracer_mod.get_tracer()
    if not tracer.enabled:
        return None
    info = client._xray_autoinst_events
    if not info:
        info = _describe(client)
    prefix = info.prefix
    if prefix == "xray" or _http.internal.get():
        return _INTERNAL
    hooks = HOOKS.get(prefix)
    if hooks is not None and not hooks.before(client, operation, params):
        return _INTERNAL  # e.g. an SQS poll outside any segment: nothing recorded under it
    cur = _current.get()
    if cur is None:
        if tracer.context_missing == "ignore":
            return None
        if getattr(threading.current_thread(), _http.INTERNAL, False):
            return _INTERNAL
    elif not cur.sampled:
        if not info.header:
            _ensure_handler(client, info)  # Sampled=0 still goes downstream
        return None
    if not info.header:
        _ensure_handler(client, info)
    plan = info.ops.get(operation)
    if plan is None:
        plan = _plan(client, info, operation)
    aws = {"operation": plan.name, "region": info.region}
    if plan.params and isinstance(params, dict):
        try:
            _identifiers(plan.params, params, aws)
        except Exception:  # noqa: BLE001 - the call is still recorded, without them
            _fail("identifiers")
    if cur is not None:  # what tracer.begin_subsegment does, one call less
        sub = _Call(prefix, cur, "aws")
        sub.operation = plan
        _current.set(sub)
    else:
        sub = tracer.begin_subsegment(prefix, "aws")  # XRAY_CONTEXT_MISSING decides
        if sub is None:
            return None
    sub.aws = aws
    return sub


def begin_args(client, args, kwargs):
    """``_begin`` from ``_make_api_call``'s packed arguments (aiobotocore's wrapper)."""
    operation = args[0] if args else kwargs.get("operation_name")
    params = args[1] if len(args) > 1 else kwargs.get("api_params")
    return _begin(client, operation, params)


def _identifiers(wanted, params, aws):
    """The resource identifiers among the call's parameters (strings only, never contents):
    ``wanted`` is the operation's plan, (parameter, aws field, is a map of tables)."""
    for param, field, is_map in wanted:
        value = params.get(param)
        if value is None:
            continue
        if is_map:  # DynamoDB batch calls: the table names are the keys (never the items)
            if isinstance(value, dict) and value:
                aws[field] = [clip(str(k)) for k in value][:50]
        elif isinstance(value, str):
            aws[field] = value if len(value) <= 250 else clip(value)


def _metadata(sub, meta):
    """Request id, retries and the HTTP status from a ResponseMetadata dict."""
    if not isinstance(meta, dict):
        return None
    aws = sub.aws
    rid = meta.get("RequestId")
    if rid:
        aws["request_id"] = rid if type(rid) is str else str(rid)
    host_id = meta.get("HostId")
    if host_id:
        aws["id_2"] = str(host_id)
    retries = meta.get("RetryAttempts")
    if isinstance(retries, int):
        aws["retries"] = retries
    status = meta.get("HTTPStatusCode")
    if isinstance(status, int):
        headers = meta.get("HTTPHeaders")
        length = headers.get("content-length") if isinstance(headers, dict) else None
        if isinstance(length, str) and length.isdigit():
            sub.http = {"response": {"status": status, "content_length": int(length)}}
        else:
            sub.http = {"response": {"status": status}}
        return status
    return None


def _result(sub, result):
    if not isinstance(result, dict):
        return
    meta = result.get("ResponseMetadata")
    if meta is not None:
        status = _metadata(sub, meta)
        if status is not None and status >= 400:
            sub.set_status(status)
    keys = sub.operation.results if type(sub) is _Call else _RESULTS
    if not keys:
        return
    aws = sub.aws
    for key, field in keys:
        value = result.get(key)
        if value is None:
            continue
        if key == "Messages":
            if isinstance(value, list):
                aws[field] = len(value)
        elif key == "MessageId":
            if isinstance(value, str):
                aws[field] = value
        elif isinstance(value, int):
            aws[field] = value


def _error(sub, exc):
    client_error = _state["client_error"]
    if client_error is None or not isinstance(exc, client_error):
        _http.record_exception(sub, exc, remote=isinstance(exc, _state["remote"]))  # fault
        return
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        response = {}
    status = _metadata(sub, response.get("ResponseMetadata"))
    _http.record_exception(sub, exc)
    if isinstance(status, int):  # the service answered: its status decides the flags
        sub.fault = False
        sub.set_status(status)
    error = response.get("Error")
    if isinstance(error, dict) and error.get("Code") in THROTTLE_CODES:
        sub.throttle = True
        sub.error = True
        if isinstance(status, int) and status < 500:
            sub.fault = False


def close(sub, result, exc, fail=_fail) -> None:
    """The call's outcome recorded, its subsegment ended, the service's hook told (shared with
    aiobotocore, which passes its own ``fail``). Never raises."""
    try:
        try:
            if exc is None:
                _result(sub, result)
            else:
                _error(sub, exc)
        finally:
            _tracer_mod.tracer.end_subsegment(sub)
            name = sub.name
            if name in HOOKS:
                HOOKS[name].after(sub, exc)
    except Exception:  # noqa: BLE001
        fail("end")


def internal_reset(token, _result, _exc) -> None:
    """``_calls``'s close of an internal call (the SDK's own credential fetch, ...)."""
    _http.internal.reset(token)


_NO_KWARGS: dict = {}


def _traced_make_api_call(original):
    """The replacement of ``BaseClient._make_api_call``, with its own signature (the generic
    wrapper's bound method and argument packing cost ~1.4 us a call: ``_http.replace_method``);
    ``_calls.call``'s shape, written out: the original runs exactly once, outside any
    instrumentation ``try``, its result and exception untouched.

    The usual call (a client and an operation seen before, a sampled parent, no per-service
    hook) is begun and, when it returns, ended here, in this frame: ``_begin``,
    ``_identifiers`` and ``close`` are what every other case goes through (their three frames
    and repeated checks were ~1 100 instructions of the ~19 000 a stubbed call adds)."""

    def _make_api_call(self, operation_name, api_params):
        sub = None
        try:
            info = self._xray_autoinst_events
            cur = _current.get()
            plan = None
            # info.header: the client was described, its header handler registered
            if info and cur is not None and info.header and cur.sampled:
                plan = info.ops.get(operation_name)
            prefix = info.prefix if plan is not None else "xray"
            if (prefix != "xray" and prefix not in HOOKS and _tracer_mod._configured
                    and _tracer.enabled and not _internal.get()):
                aws = {"operation": plan.name, "region": info.region}
                if plan.params and type(api_params) is dict:
                    try:  # _identifiers written out
                        for param, field, is_map in plan.params:
                            value = api_params.get(param)
                            if value is None:
                                continue
                            if is_map:
                                if isinstance(value, dict) and value:
                                    aws[field] = [clip(str(k)) for k in value][:50]
                            elif isinstance(value, str):
                                aws[field] = value if len(value) <= 250 else clip(value)
                    except Exception:  # noqa: BLE001 - the call is still recorded, without them
                        _fail("identifiers")
                sub = _Call(prefix, cur, "aws")
                sub.operation = plan
                sub.aws = aws
                _current.set(sub)
            else:
                sub = _begin(self, operation_name, api_params)
        except Exception:  # noqa: BLE001
            _fail("begin")
        try:
            if sub is None:
                return original(self, operation_name, api_params)
            if sub is _INTERNAL:
                return _calls.call(_http.internal.set(True), internal_reset,
                                   original, (self, operation_name, api_params), _NO_KWARGS)
            try:
                result = original(self, operation_name, api_params)
            except BaseException as exc:
                close(sub, None, exc)
                raise
            try:  # close(sub, result, None) written out
                try:
                    _result(sub, result)
                finally:
                    _tracer.end_subsegment(sub)
                    name = sub.name
                    if name in HOOKS:
                        HOOKS[name].after(sub, None)
            except Exception:  # noqa: BLE001
                _fail("end")
            return result
        except BaseException as exc:
            hide_frames(exc)
            raise

    return _make_api_call


def load_exceptions(exceptions):
    """What ``_error`` needs from ``botocore.exceptions`` (shared with aiobotocore)."""
    _state["client_error"] = exceptions.ClientError
    _state["remote"] = (exceptions.ClientError, exceptions.HTTPClientError,
                        exceptions.ConnectionError)


def patch():
    from botocore import client as target
    from botocore import exceptions

    if getattr(target, "_xray_autoinst_patched", False):
        return
    load_exceptions(exceptions)
    global _fast_headers
    _fast_headers = _header_store() or (None, {})
    target.BaseClient._xray_autoinst_events = False
    _http.replace_method(target.BaseClient, "_make_api_call", _traced_make_api_call)
    from . import aws_sqs

    aws_sqs.install(target.BaseClient, HOOKS)
    _state["patched"] = True
    target._xray_autoinst_patched = True


def unpatch():
    from botocore import client as target

    from ..core import wrapping

    if not getattr(target, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(target.BaseClient, "_make_api_call")
    if _EVENTS_MARK in target.BaseClient.__dict__:
        del target.BaseClient._xray_autoinst_events
    from . import aws_sqs

    aws_sqs.uninstall(target.BaseClient, HOOKS)
    _state["patched"] = False  # handlers left on existing clients do nothing
    target._xray_autoinst_patched = False
