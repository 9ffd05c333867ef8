"""The one guard (contrib/_guard.py): what a reporter logs, when it re-raises, and that it is
the only one in the package."""

import logging
import pathlib
import re

import pytest
from xray_testing import install_tracer

from xray_autoinst import log as _log
from xray_autoinst.contrib import _guard

PACKAGE = pathlib.Path(_guard.__file__).resolve().parent.parent


@pytest.fixture
def records(monkeypatch):
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    logger = _log.get()
    handler = Keep(logging.DEBUG)
    logger.addHandler(handler)
    monkeypatch.setattr(_log, "_last", {})
    yield seen
    logger.removeHandler(handler)


def _fail_in(report, what):
    try:
        raise RuntimeError("instrumentation bug")
    except RuntimeError:
        report(what)


def test_a_failure_is_logged_once_a_minute_with_its_traceback_and_not_raised(records):
    install_tracer({"XRAY_AUTOINST_RAISE": "0"})
    report = _guard.reporter("area", "xray-autoinst thing failed (%s); the call is unaffected")
    _fail_in(report, "begin")
    _fail_in(report, "begin")  # within the minute: not again
    _fail_in(report, "end")
    assert [r.getMessage() for r in records] == [
        "xray-autoinst thing failed (begin); the call is unaffected",
        "xray-autoinst thing failed (end); the call is unaffected"]
    assert all(r.levelno == logging.WARNING and r.name == "xray_autoinst" for r in records)
    assert records[0].exc_info[0] is RuntimeError


def test_the_tests_switch_re_raises_the_instrumentation_s_exception(records):
    install_tracer({"XRAY_AUTOINST_RAISE": "1"})
    report = _guard.reporter("area", "failed (%s)")
    with pytest.raises(RuntimeError, match="instrumentation bug"):
        _fail_in(report, "begin")


def test_no_module_has_a_guard_of_its_own():
    """The test switch (parsed in config.py) is read in one place for call-time failures;
    the bootstrap's patch-time guard and the wrapper's frame hiding read it for their own
    jobs."""
    readers = sorted(
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
        if re.search(r"[.\"']reraise\b", p.read_text(encoding="utf-8")))
    assert readers == [
        "bootstrap.py", "config.py", "contrib/_guard.py", "core/wrapping.py"]
