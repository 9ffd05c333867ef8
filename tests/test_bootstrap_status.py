"""The registry's rows and each integration's status are small named types: ``Integration``
(targets, patcher, distribution) and ``IntegrationStatus`` (state, error), the latter asked of
the bootstrap through ``integration_status(name)``."""

import json
import os
import subprocess
import sys

import pytest

from xray_autoinst import bootstrap
from xray_autoinst.bootstrap import IntegrationStatus, integration_status
from xray_autoinst.registry import INTEGRATIONS, Integration


def test_every_registry_row_is_an_integration():
    for name, row in INTEGRATIONS.items():
        assert isinstance(row, Integration), name
        assert isinstance(row.targets, tuple) and row.targets, name
        assert all(isinstance(t, str) and t for t in row.targets), name
        assert row.patcher.startswith("xray_autoinst.contrib."), name
        dist = row.distribution
        assert dist is None or isinstance(dist, str) or (
            isinstance(dist, tuple) and all(isinstance(d, str) for d in dist)), name
    assert INTEGRATIONS["aws_xray_sdk"].patcher == "xray_autoinst.contrib.sdk_aws_xray"
    assert INTEGRATIONS["psycopg2"].distribution == ("psycopg2-binary", "psycopg2")


def test_integration_fields_and_repr():
    row = Integration(("json",), "some.patcher")
    assert (row.targets, row.patcher, row.distribution) == (("json",), "some.patcher", None)
    assert repr(row) == "Integration(('json',), 'some.patcher', None)"
    with pytest.raises(AttributeError):
        row.other = 1  # __slots__: a typo is an error, not a new field


def test_the_start_up_path_imports_no_collections_or_typing():
    """The registry is imported at every interpreter start: its named type costs no import
    (``collections.namedtuple`` / ``typing.NamedTuple`` would import collections / typing)."""
    code = ("import sys; before = set(sys.modules); import xray_autoinst.bootstrap; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert "xray_autoinst.registry" in out
    assert not {"collections", "typing", "dataclasses", "enum"} & set(out), out


@pytest.mark.parametrize("status,text,off", [
    (IntegrationStatus("waiting"), "waiting", False),
    (IntegrationStatus("patched"), "patched", False),
    (IntegrationStatus("disabled"), "disabled", True),
    (IntegrationStatus("failed", "RuntimeError: boom"), "failed: RuntimeError: boom", True),
])
def test_integration_status_text_and_off(status, text, off):
    assert str(status) == text
    assert status.off is off
    assert status == IntegrationStatus(status.state, status.error)
    assert status != IntegrationStatus("failed", "ValueError: other")
    assert hash(status) == hash(IntegrationStatus(status.state, status.error))


def test_integration_status_unknown_before_start(monkeypatch):
    monkeypatch.setattr(bootstrap, "status", {})
    monkeypatch.setattr(bootstrap, "_waiting", set())
    assert integration_status("sqlite3") is None
    assert integration_status("no-such-integration") is None


SCRIPT = r"""
import json, sys, types
broken = types.ModuleType("broken_patcher")
def patch():
    raise RuntimeError("injected")
broken.patch = patch
sys.modules["broken_patcher"] = broken
from xray_autoinst import bootstrap, registry
registry.INTEGRATIONS["broken"] = registry.Integration(("colorsys",), "broken_patcher")
sys.modules.pop("colorsys", None)
bootstrap.start()
out = {"before": {n: str(bootstrap.integration_status(n)) for n in ("broken", "sqlite3")}}
import colorsys, sqlite3  # the hooks run: one patcher raises, one patches
names = ("broken", "sqlite3", "httplib", "nothing")
out["after"] = {n: str(bootstrap.integration_status(n)) for n in names}
st = bootstrap.integration_status("broken")
out["broken"] = [st.state, st.error, st.off]
out["disabled"] = [bootstrap.integration_status("httplib").state,
                   bootstrap.integration_status("httplib").off]
out["patched_off"] = bootstrap.integration_status("sqlite3").off
print(json.dumps(out))
"""


def test_integration_status_through_the_bootstrap():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XRAY_", "AWS_XRAY"))}
    env["XRAY_DISABLED_INSTRUMENTATIONS"] = "httplib"
    env["XRAY_SAMPLING"] = "local"
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["before"] == {"broken": "waiting", "sqlite3": "waiting"}
    assert out["after"] == {"broken": "failed: RuntimeError: injected", "sqlite3": "patched",
                            "httplib": "disabled", "nothing": "None"}
    assert out["broken"] == ["failed", "RuntimeError: injected", True]
    assert out["disabled"] == ["disabled", True]
    assert out["patched_off"] is False
    assert "could not be applied" in proc.stderr  # the one warning, as before

