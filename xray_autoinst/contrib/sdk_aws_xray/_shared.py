"""What every part of the aws-xray-sdk bridge shares: the current entity, the tracer, the one
failure reporter, whether the application left the SDK enabled, and the base of the objects
that stand in for the SDK's (unknown attributes are no-ops, never an AttributeError)."""

from __future__ import annotations

from ... import log as _log
from ...core import tracer as _tracer_mod
from .. import _guard

current = _tracer_mod.current_entity
get_current = current.get
set_current = current.set

fail = _guard.reporter(
    "sdk", "xray-autoinst aws-xray-sdk bridge failed (%s); the application is unaffected")


def tracer():
    return _tracer_mod.get_tracer()


_sdk_config = []  # [aws_xray_sdk.global_sdk_config] once patched


def remember_sdk_config(global_sdk_config):
    if not _sdk_config:
        _sdk_config.append(global_sdk_config)


def sdk_enabled():
    """False while the application turned the SDK off itself (``set_sdk_enabled(False)``)."""
    try:
        return _sdk_config[0].sdk_enabled() if _sdk_config else True
    except Exception:  # noqa: BLE001
        return True


class Tolerant:
    """Unknown attributes are no-op methods (logged once): never an AttributeError."""

    _what = "object"

    def __getattr__(self, name):
        if name.startswith("__") or name.startswith("_self"):
            raise AttributeError(name)
        _log.once("sdk-attr-%s-%s" % (self._what, name), _log.INFO,
                  "aws-xray-sdk %s.%s is not supported under xray-autoinst: ignored",
                  self._what, name)
        return noop


def noop(*_args, **_kwargs):
    return None
