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

The package, one job a module: ``standins`` (the sampler and emitter of a bridged recorder),
``facades`` (the SDK-shaped views of the agent's entities) and ``fields`` (what they write,
validated), ``ownership`` (the segments the SDK opened), ``bridged_recorder`` (the recorder's
methods while bridged), ``patch_filter`` (what ``patch_all()`` skips); here the contract,
``patch()``/``unpatch()``/``get_version()``.
"""

from __future__ import annotations

import sys

from ...core import tracer as _tracer_mod
from ._shared import remember_sdk_config
from .bridged_recorder import SAVED as _SAVED  # noqa: F401 - the tests read a recorder's saved pair
from .bridged_recorder import adopt, unwrap_recorder_class, wrap_recorder_class
from .patch_filter import covered_by_agent, unwrap_patcher, wrap_patcher

__all__ = ["covered_by_agent", "get_version", "patch", "unpatch"]


def get_version():
    from aws_xray_sdk.version import VERSION

    return VERSION


def patch():
    from aws_xray_sdk import global_sdk_config
    from aws_xray_sdk.core import patcher, recorder

    if getattr(recorder, "_xray_autoinst_patched", False):
        return
    _tracer_mod.get_tracer()
    remember_sdk_config(global_sdk_config)
    cls = recorder.AWSXRayRecorder
    wrap_recorder_class(cls)
    wrap_patcher(patcher)
    recorder._xray_autoinst_patched = True
    core = sys.modules.get("aws_xray_sdk.core")
    existing = getattr(core, "xray_recorder", None)  # made before this patch ran
    if isinstance(existing, cls):
        adopt(existing)


def unpatch():
    from aws_xray_sdk.core import patcher, recorder

    if not getattr(recorder, "_xray_autoinst_patched", False):
        return
    unwrap_recorder_class(recorder.AWSXRayRecorder)
    unwrap_patcher(patcher)
    recorder._xray_autoinst_patched = False
