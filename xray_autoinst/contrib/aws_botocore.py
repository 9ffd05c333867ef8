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
_EVENTS_MARK = "_xray_autoinst_events"
_HANDLER_ID = "xray-autoinst-trace-header"
_INTERNAL = object()
# "aio": aiobotocore's patch (aws_aiobotocore) uses this module's handler and helpers too
_state = {"patched": False, "aio": False, "remote": (), "client_error": None}
# Per-service hooks, endpoint prefix -> object with ``before(client, args, kwargs) -> bool``
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


def _inject_header(request=None, **_kwargs):
    """``before-send`` handler: the trace header on the prepared request (every attempt)."""
    try:
        if not (_state["patched"] or _state["aio"]) or request is None:
            return
        cur = _current.get()
        if cur is None:
            return
        if cur.sampled and cur.aws is not None and cur.namespace == "aws":
            attempts = cur.aws.get("retries", -1) + 1
            cur.aws["retries"] = attempts
        headers = request.headers
        tracer = _tracer_mod.tracer
        if tracer.use_w3c and "traceparent" not in headers:
            for name, value in tracer.w3c_headers(cur):
                headers[name] = value
        if _http.TRACE_HEADER in headers:
            return
        value = tracer.outgoing_header(None)
        if value is not None:
            headers[_http.TRACE_HEADER] = value
    except Exception:  # noqa: BLE001 - an event handler that raises would fail the call
        try:
            _fail("header")
        except Exception:  # noqa: BLE001
            pass


def _ensure_handler(client, prefix=None):
    """Register the header handler on ``client`` once; ``client._xray_autoinst_events`` then
    holds what every call of that client records alike: (endpoint prefix, region)."""
    # an attribute with a class default: a missing one would go through BaseClient.__getattr__
    # (an event emitted per lookup), and reading __dict__ slows every attribute access after
    if client._xray_autoinst_events:
        return
    meta = client.meta
    meta.events.register_first("before-send", _inject_header, unique_id=_HANDLER_ID)
    client._xray_autoinst_events = (prefix or _prefix(meta.service_model),
                                    str(meta.region_name))


def _prefix(model):
    try:
        return model.endpoint_prefix
    except Exception:  # noqa: BLE001 - a custom model without endpointPrefix
        return model.service_name


def _begin(client, args, kwargs):
    """The subsegment for this call, _INTERNAL for the agent's own calls, or None."""
    tracer = _tracer_mod.tracer if _tracer_mod._configured else _tracer_mod.get_tracer()
    if not tracer.enabled:
        return None
    known = client._xray_autoinst_events  # (prefix, region) once the handler is registered
    prefix = known[0] if known else _prefix(client.meta.service_model)
    if prefix == "xray" or _http.internal.get():
        return _INTERNAL
    hooks = HOOKS.get(prefix)
    if hooks is not None and not hooks.before(client, args, kwargs):
        return _INTERNAL  # e.g. an SQS poll outside any segment: nothing recorded under it
    cur = _current.get()
    if cur is None:
        if tracer.context_missing == "ignore":
            return None
        if getattr(threading.current_thread(), _http.INTERNAL, False):
            return _INTERNAL
    elif not cur.sampled:
        _ensure_handler(client, prefix)  # Sampled=0 still goes downstream
        return None
    if not known:
        _ensure_handler(client, prefix)
        known = client._xray_autoinst_events
    operation = args[0] if args else kwargs.get("operation_name")
    params = args[1] if len(args) > 1 else kwargs.get("api_params")
    aws = {"operation": operation if type(operation) is str else str(operation),
           "region": known[1]}
    if isinstance(params, dict):
        try:
            _identifiers(prefix, params, aws)
        except Exception:  # noqa: BLE001 - the call is still recorded, without them
            _fail("identifiers")
    if cur is not None:  # what tracer.begin_subsegment does, one call less
        sub = Subsegment(prefix, cur, "aws")
        _current.set(sub)
    else:
        sub = tracer.begin_subsegment(prefix, "aws")  # XRAY_CONTEXT_MISSING decides
        if sub is None:
            return None
    sub.aws = aws
    return sub


def _identifiers(prefix, params, aws):
    """The resource identifiers among the call's parameters (strings only, never contents)."""
    extra = SERVICE_IDENTIFIERS.get(prefix)
    for param, value in params.items():
        field = IDENTIFIERS.get(param)
        if field is None and extra is not None:
            field = extra.get(param)
        if field is not None:
            if isinstance(value, str):
                aws[field] = value if len(value) <= 250 else clip(value)
        elif param in _TABLE_MAPS and isinstance(value, dict) and value:
            aws["table_names"] = [clip(str(k)) for k in value][:50]


def _metadata(sub, meta):
    """Request id, retries and the HTTP status from a ResponseMetadata dict."""
    if not isinstance(meta, dict):
        return None
    aws = sub.aws
    rid = meta.get("RequestId")
    if rid:
        aws["request_id"] = str(rid)
    host_id = meta.get("HostId")
    if host_id:
        aws["id_2"] = str(host_id)
    retries = meta.get("RetryAttempts")
    if isinstance(retries, int):
        aws["retries"] = retries
    status = meta.get("HTTPStatusCode")
    if isinstance(status, int):
        resp = {"status": status}
        headers = meta.get("HTTPHeaders")
        if isinstance(headers, dict):
            length = headers.get("content-length")
            if isinstance(length, str) and length.isdigit():
                resp["content_length"] = int(length)
        sub.http = {"response": resp}
    return status


def _result(sub, result):
    if not isinstance(result, dict):
        return
    status = _metadata(sub, result.get("ResponseMetadata"))
    if isinstance(status, int):
        sub.set_status(status)
    aws = sub.aws
    mid = result.get("MessageId")
    if isinstance(mid, str):
        aws["message_id"] = mid
    messages = result.get("Messages")
    if isinstance(messages, list):
        aws["message_count"] = len(messages)
    for key, field in (("Count", "count"), ("ScannedCount", "scanned_count")):
        value = result.get(key)
        if isinstance(value, int):
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


def _end(sub, result=None, exc=None):
    try:
        if exc is None:
            _result(sub, result)
        else:
            _error(sub, exc)
    finally:
        _tracer_mod.tracer.end_subsegment(sub)
        hooks = HOOKS.get(sub.name)
        if hooks is not None:
            hooks.after(sub, exc)


def close(sub, result, exc, fail=_fail) -> None:
    """``_calls``'s close: the call's outcome recorded by ``_end`` (shared with aiobotocore,
    which passes its own ``fail``)."""
    try:
        _end(sub, result, exc)
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
    instrumentation ``try``, its result and exception untouched."""

    def _make_api_call(self, operation_name, api_params):
        sub = None
        try:
            sub = _begin(self, (operation_name, api_params), _NO_KWARGS)
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
            close(sub, result, None)
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
