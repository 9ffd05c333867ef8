"""The SDK's ``patch_all()``/``patch()`` while bridged: the libraries the agent traces itself are
skipped (each call would otherwise get two subsegments); the others stay patched by the SDK and
record through the bridge. Which integration is working is asked of the bootstrap
(``integration_status``), never read from its state."""

from __future__ import annotations

from ... import log as _log
from ...core import wrapping
from ._shared import fail, sdk_enabled, tracer

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


def covered_by_agent(sdk_module):
    """The agent's integration recording the calls the SDK's ``sdk_module`` patch would record,
    or None. Integrations turned off (XRAY_DISABLED_INSTRUMENTATIONS) or failed do not count."""
    from ...bootstrap import integration_status
    from ...registry import INTEGRATIONS

    prefixes = COVERS.get(sdk_module, (sdk_module,))
    disabled = tracer().config.disabled_instrumentations
    for name, integration in INTEGRATIONS.items():
        if name == "aws_xray_sdk" or name in disabled:
            continue
        status = integration_status(name)
        if status is not None and status.off:
            continue
        for target in integration.targets:
            for p in prefixes:
                if target == p or target.startswith(p + "."):
                    return name
    return None


def _traced_patch_module(wrapped, instance, args, kwargs):
    covered = None
    module = args[0] if args else kwargs.get("module_to_patch")
    try:
        if isinstance(module, str) and sdk_enabled():
            covered = covered_by_agent(module)
    except Exception:  # noqa: BLE001
        fail("patch_module")
    if covered is not None:
        _log.once("sdk-skip-" + module, _log.INFO,
                  "aws-xray-sdk patch of %r skipped: xray-autoinst traces it already "
                  "(integration %r); each call would otherwise be recorded twice",
                  module, covered)
        return None
    return wrapped(*args, **kwargs)


def wrap_patcher(patcher):
    """Filter ``aws_xray_sdk.core.patcher._patch_module`` (what ``patch``/``patch_all`` call for
    each library)."""
    if hasattr(patcher, "_patch_module"):
        wrapping.wrap(patcher, "_patch_module", _traced_patch_module)
    else:
        _log.once("sdk-no-patch-filter", _log.WARNING,
                  "this aws-xray-sdk version has no patcher._patch_module: its patch_all() "
                  "may record calls the agent records too")


def unwrap_patcher(patcher):
    wrapping.unwrap(patcher, "_patch_module")
