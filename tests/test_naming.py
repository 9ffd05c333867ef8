"""The default service name: what the user started, decided once, never changed mid-run."""

import pytest
from xray_testing import need

from xray_autoinst.contrib import _web


@pytest.mark.parametrize("target, name", [
    ("app:app", "app"),
    ("app", "app"),
    ("shop.wsgi", "shop"),
    ("shop.wsgi:application", "shop"),
    ("src.orders.main:app", "orders"),
    ("django.core.handlers.wsgi", None),
    ("fastapi.applications", None),
    ("__main__", None),
    ("/srv/app.py:app", None),
    ("", None),
    (None, None),
])
def test_project_name(target, name):
    assert _web.project_name(target) == name


def test_first_hint_wins_and_a_used_name_never_changes(tracer):
    t, emitter = tracer
    t.set_name_hint("orders")
    t.set_name_hint("django")  # a later server (a live test server) does not rename
    assert t.service_name == "orders"


def test_a_name_already_used_is_kept(tracer):
    """A run whose first segment was named after its program (a test runner, a script) keeps
    that name when it later starts a server."""
    t, emitter = tracer
    first = t.service_name  # used by a first segment
    t.set_name_hint("liveserver")
    seg, token = t.begin_segment()
    t.end_segment(seg, token)
    assert emitter.documents[-1]["name"] == first != "liveserver"


def test_explicit_name_wins(monkeypatch):
    from xray_testing import install_tracer

    t, _ = install_tracer({"XRAY_SERVICE_NAME": "checkout"})
    t.set_name_hint("shop")
    assert t.service_name == "checkout"


def test_framework_objects_are_named_after_their_project(tmp_path, monkeypatch):
    need("starlette")
    (tmp_path / "billing_app.py").write_text(
        "from starlette.applications import Starlette\napp = Starlette()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import billing_app

    assert _web.app_project(billing_app.app) == "billing_app"
