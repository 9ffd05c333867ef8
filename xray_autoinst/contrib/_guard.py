"""The one guard for the instrumentation's own bookkeeping at call time.

Every wrapper keeps its bookkeeping (opening a subsegment, recording a response, ending a
segment) in an ``except Exception`` block of its own, outside the wrapped call, and reports a
failure there through its module's reporter::

    fail = _guard.reporter("sql", "xray-autoinst SQL instrumentation failed (%s); "
                                  "the query is unaffected")
    try:
        ...bookkeeping...
    except Exception:  # noqa: BLE001
        fail("begin")

The reporter logs ``message % what`` as a warning through the ``xray_autoinst`` logger, with the
traceback, at most once a minute per ``area-what``, and returns: the application's call, its
result and its exception go on untouched. Only under the tests' switch
(``XRAY_AUTOINST_RAISE``, ``tracer.config.reraise``) does it re-raise the instrumentation's
exception, so that a bug fails the test that found it. (Failures while *patching* go through the
bootstrap's import-hook guard instead.)
"""

from __future__ import annotations

from .. import log as _log
from ..core import tracer as _tracer_mod


def reporter(area: str, message: str):
    """The ``fail(what)`` of one instrumentation ``area``; call it in an ``except`` block."""

    def fail(what: str) -> None:
        _log.limited(area + "-" + what, _log.WARNING, message, what, exc_info=True)
        if getattr(getattr(_tracer_mod.tracer, "config", None), "reraise", False):
            raise  # the exception the caller is handling

    return fail
