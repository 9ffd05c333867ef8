"""AWS Lambda through its runtime interface client (``awslambdaric``): one subsegment per
invocation, under the function's segment that Lambda records itself.

Per invocation, ``awslambdaric.bootstrap.run`` sets ``_X_AMZN_TRACE_ID`` from the invocation's
``Lambda-Runtime-Trace-Id`` header and calls ``handle_event_request``, which runs the handler
and posts its result (``post_invocation_result``) or error (``post_invocation_error``, with the
X-Ray fault the runtime client builds from the exception) to the Runtime API -- the moment
Lambda may freeze the process. Those three are wrapped; the handler itself is not, so the
error and stack trace the runtime reports are exactly what they are without the agent.

- ``handle_event_request``: with ``Sampled=1`` a facade segment (never emitted: Lambda records
  the function's segment) stands for the header's ``Parent``, and one subsegment named after
  the function (``AWS_LAMBDA_FUNCTION_NAME``) holds the invocation, with the calls the handler
  makes (HTTP, AWS, SQL, ...) nested in it. Annotation ``cold_start`` is true on the process's
  first invocation; ``aws.request_id`` is the invocation's request id.
- ``post_invocation_result`` / ``post_invocation_error``: before the post, the subsegment ends
  (an error makes it ``fault`` with the runtime's fault as ``cause``) and is sent as a
  standalone document (``type: subsegment``, ``trace_id`` = Root, ``parent_id`` = Parent) from
  the invocation's own thread: it has left the process before Lambda can freeze it.
- ``Sampled=0`` (or no header: no active tracing) records nothing: the invocation only carries
  an unsampled context, so that downstream calls propagate ``Sampled=0``.

The agent never sends a segment of its own for the function (it would be a duplicate node).
"""

from __future__ import annotations

from .. import config as _config
from ..core import wrapping
from . import _guard

MARKER = "_xray_autoinst_patched"
_state = {"cold": True, "inv": None}  # one invocation at a time per process
FLUSH_TIMEOUT = 1.0  # seconds the handler's thread waits for a sender holding documents


def get_version():
    import awslambdaric

    return awslambdaric.__version__


def patch():
    from awslambdaric import bootstrap

    if getattr(bootstrap, MARKER, False):
        return
    client = _client_class()
    wrapping.wrap(bootstrap, "handle_event_request", _traced_handle_event_request)
    wrapping.wrap(client, "post_invocation_result", _traced_post_invocation_result)
    wrapping.wrap(client, "post_invocation_error", _traced_post_invocation_error)
    setattr(bootstrap, MARKER, True)


def unpatch():
    from awslambdaric import bootstrap

    if not getattr(bootstrap, MARKER, False):
        return
    client = _client_class()
    wrapping.unwrap(bootstrap, "handle_event_request")
    wrapping.unwrap(client, "post_invocation_result")
    wrapping.unwrap(client, "post_invocation_error")
    delattr(bootstrap, MARKER)


def _client_class():
    """The class defining the post methods (BaseLambdaRuntimeClient since awslambdaric 3.1)."""
    from awslambdaric import lambda_runtime_client as mod

    return getattr(mod, "BaseLambdaRuntimeClient", None) or mod.LambdaRuntimeClient


_fail = _guard.reporter(
    "lambda", "xray-autoinst Lambda instrumentation failed (%s); the invocation is unaffected")


def _invoke_id(args, kwargs):
    value = args[2] if len(args) > 2 else kwargs.get("invoke_id")
    return value if isinstance(value, str) else None


def _traced_handle_event_request(wrapped, instance, args, kwargs):
    inv = None
    try:
        inv = _begin(_invoke_id(args, kwargs))
    except Exception:  # noqa: BLE001
        _fail("begin")
    if inv is None:
        return wrapped(*args, **kwargs)
    try:
        return wrapped(*args, **kwargs)
    finally:
        if _state["inv"] is inv:  # nothing was posted (the post itself raised)
            _end(inv, None)


def _traced_post_invocation_result(wrapped, instance, args, kwargs):
    inv = _state["inv"]
    if inv is not None:
        _end(inv, None)
    return wrapped(*args, **kwargs)


def _traced_post_invocation_error(wrapped, instance, args, kwargs):
    inv = _state["inv"]
    if inv is not None:
        fault = args[2] if len(args) > 2 else kwargs.get("xray_fault")
        _end(inv, fault if fault is not None else "")
    return wrapped(*args, **kwargs)


def _begin(request_id):
    """(tracer, facade, token, subsegment or None) for this invocation, or None."""
    _state["inv"] = None
    parse = _state.get("parse")
    if parse is None:  # the tracer loads at the first invocation, not at the runtime's import
        from ..core import header
        from ..core.tracer import after_fork_in_child, get_tracer

        parse = _state["parse"] = header.parse
        _state["get_tracer"] = get_tracer
        _state["after_restore"] = after_fork_in_child
    tracer = _state["get_tracer"]()
    cold = _state["cold"]
    if cold:
        _state["cold"] = False
        # send from the invocation's own thread: no sender thread to start, and every document
        # has left the process when the result is posted (Lambda may freeze it right after)
        tracer.emitter.synchronous = True
        if tracer.config.lambda_snap_start:
            # SnapStart: the first invocation runs in an environment restored from the
            # snapshot taken after init, which every environment of this version shares: its
            # random state (ids) and socket are made its own, as after a fork
            _state["after_restore"]()
    if not tracer.enabled:
        return None
    hdr = parse(_config.lambda_trace_header())
    if hdr is None:
        return None
    name = tracer.config.lambda_function_name or tracer.service_name
    seg, token = tracer.begin_facade(hdr, name)
    sub = None
    if seg is not None and seg.sampled:
        sub = tracer.begin_subsegment(name)
        if sub is not None:
            sub.put_annotation("cold_start", cold)
            if request_id:
                sub.aws = {"request_id": request_id[:250]}
    inv = _state["inv"] = (tracer, seg, token, sub)
    return inv


def _end(inv, fault):
    """End the invocation's subsegment (``fault``: the runtime's X-Ray fault JSON, or None for
    a result) and send it now."""
    try:
        _state["inv"] = None
        tracer, seg, token, sub = inv
        if sub is not None:
            if fault is not None:
                sub.fault = True
                sub.cause = _cause(fault)
            tracer.end_subsegment(sub)
        tracer.end_facade(seg, token)
        emitter = tracer.emitter
        if sub is not None and not getattr(emitter, "synchronous", False):  # else: sent
            emitter.flush(FLUSH_TIMEOUT)
    except Exception:  # noqa: BLE001
        _fail("end")


def _cause(fault):
    """The subsegment's ``cause`` from the fault awslambdaric reports to Lambda (JSON text:
    working_directory, exceptions [{message, type, stack (oldest frame first)}], paths)."""
    import json

    from ..core import ids
    from ..core.entities import MAX_MESSAGE, MAX_STACK, clip

    try:
        data = json.loads(fault) if fault else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    exceptions = []
    for ex in (data.get("exceptions") or [])[:1]:
        if not isinstance(ex, dict):
            continue
        stack = []
        for frame in reversed((ex.get("stack") or [])[-MAX_STACK:]):
            if isinstance(frame, dict):
                line = frame.get("line")
                stack.append({"path": clip(frame.get("path") or "", 1000),
                              "line": line if isinstance(line, int) else 0,
                              "label": clip(frame.get("label") or "", 1000)})
        exceptions.append({"id": ids.entity_id(),
                           "message": clip(ex.get("message", ""), MAX_MESSAGE),
                           "type": clip(ex.get("type", ""), 250) or "Error",
                           "stack": stack})
    if not exceptions:
        exceptions = [{"id": ids.entity_id(), "message": "the handler failed", "type": "Error",
                       "stack": []}]
    wd = data.get("working_directory")
    return {"working_directory": wd if isinstance(wd, str) else "", "exceptions": exceptions}
