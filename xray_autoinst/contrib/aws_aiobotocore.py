"""aiobotocore (and what is built on it: aioboto3, s3fs): one ``aws`` subsegment per API call,
the same as botocore's, from the same code.

``AioBaseClient._make_api_call`` (a coroutine: it overrides botocore's, so botocore's wrapper
never runs for these clients) is wrapped with a coroutine function that uses
``aws_botocore``'s own ``_begin``/``_end`` (name, ``aws`` fields, resource identifiers,
request id, retries, status, error/throttle/fault) and its ``before-send`` handler (the trace
header on every attempt; aiobotocore's event emitter calls plain handlers too). Only the
awaiting differs. The subsegment is the current entity of the awaiting task during the call,
so concurrent calls of concurrent requests on one loop each land under their own request.
"""

from __future__ import annotations

from ..core import wrapping
from . import _calls, _guard, _http, aws_botocore

# aws_botocore's helpers are looked up on each call (not bound here): what that module records
# (and any service it learns to handle) is what aiobotocore calls record
_bc = aws_botocore
_INTERNAL = aws_botocore._INTERNAL


def get_version():
    import aiobotocore

    return aiobotocore.__version__


_fail = _guard.reporter(
    "aiobotocore", "xray-autoinst AWS SDK instrumentation failed (%s); the call is unaffected")


def _close(sub, result, exc) -> None:
    _bc.close(sub, result, exc, _fail)


async def _traced_make_api_call(wrapped, instance, args, kwargs):
    sub = _calls.attempt(_fail, "begin", _bc.begin_args, instance, args, kwargs)
    if sub is _INTERNAL:
        token = _http.internal.set(True)
        return await _calls.acall(token, _bc.internal_reset, wrapped, args, kwargs)
    return await _calls.acall(sub, _close, wrapped, args, kwargs)


def patch():
    from aiobotocore import client as target
    from botocore import exceptions

    if getattr(target, "_xray_autoinst_patched", False):
        return
    aws_botocore.load_exceptions(exceptions)
    if aws_botocore._fast_headers[0] is None:
        aws_botocore._fast_headers = aws_botocore._header_store() or (None, {})
    target.AioBaseClient._xray_autoinst_events = False  # see aws_botocore._ensure_handler
    wrapping.wrap_async(target.AioBaseClient, "_make_api_call", _traced_make_api_call)
    aws_botocore._state["aio"] = True
    target._xray_autoinst_patched = True


def unpatch():
    from aiobotocore import client as target

    if not getattr(target, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(target.AioBaseClient, "_make_api_call")
    if aws_botocore._EVENTS_MARK in target.AioBaseClient.__dict__:
        del target.AioBaseClient._xray_autoinst_events
    aws_botocore._state["aio"] = False  # handlers left on existing clients do nothing
    target._xray_autoinst_patched = False
