"""xray-autoinst: zero-code AWS X-Ray auto-instrumentation for Python services.

This module is imported by the ``xray-run`` launcher, so it must stay tiny: the public API
(``current_trace_id``, ``annotate``, ``add_metadata``, ``set_user``, ``subsegment``; see
``xray_autoinst.api``) loads on first use.
"""

__version__ = "0.1.0"
__all__ = ["current_trace_id", "current_entity_id", "annotate", "add_metadata", "set_user",
           "subsegment"]


def __getattr__(name):
    if name in __all__:
        from . import api

        value = getattr(api, name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'xray_autoinst' has no attribute {name!r}")
