"""The registry contract, for every integration, each case in a fresh interpreter:
import-then-patch, patch-then-import, patch twice, unpatch -- never a double wrap, never a
failed import."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from xray_testing import skip_or_fail

from xray_autoinst.registry import INTEGRATIONS

CI = os.environ.get("CI", "").lower() == "true"

SCRIPT = r"""
import importlib, json, sys
from xray_autoinst import bootstrap
from xray_autoinst.core.wrapping import MARK
from xray_autoinst.registry import INTEGRATIONS

name, case = sys.argv[1], sys.argv[2]
targets, patcher = INTEGRATIONS[name].targets, INTEGRATIONS[name].patcher


def wrapped_objects(modules):
    found = []
    for mod in modules:
        for attr, obj in list(vars(mod).items()):
            cands = [(attr, obj)]
            try:  # lazy objects (django.conf.settings) raise on any look
                own_class = isinstance(obj, type) and obj.__module__ == mod.__name__
            except Exception:
                continue
            if own_class:
                cands += [(attr + "." + k, v) for k, v in vars(obj).items()]
            for label, cand in cands:
                try:
                    inner = getattr(getattr(cand, "__func__", cand), MARK, None)
                except Exception:  # lazy proxies (flask.current_app) raise on access
                    continue
                if inner is not None:
                    double = getattr(getattr(inner, "__func__", inner), MARK, None) is not None
                    found.append((label, double))
    if name == "flask":  # patched by connecting a signal receiver, not by wrapping
        import flask
        from xray_autoinst.contrib import web_flask

        receivers = list(flask.got_request_exception.receivers.values())
        found += [("got_request_exception", False)] * sum(
            r is web_flask._on_exception for r in receivers)
    return found


out = {}
if case == "import-then-patch":
    mods = [importlib.import_module(t) for t in targets]
    bootstrap.start()
    out["status"] = str(bootstrap.integration_status(name))
elif case == "patch-then-import":
    bootstrap.start()
    assert name not in bootstrap.status, bootstrap.status
    mods = [importlib.import_module(t) for t in targets]
    out["status"] = str(bootstrap.integration_status(name))
mod = importlib.import_module(patcher)
mod.patch()
mod.patch()
out["after_twice"] = wrapped_objects(mods)
out["version"] = str(mod.get_version())
mod.unpatch()
out["after_unpatch"] = wrapped_objects(mods)
mod.patch()
out["after_repatch"] = wrapped_objects(mods)
print(json.dumps(out))
"""


def _installed(name):
    targets = INTEGRATIONS[name].targets
    try:
        return importlib.util.find_spec(targets[0].split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


# uwsgi's module exists only inside the uWSGI server: integration/test_uwsgi.py covers it
CONTRACT = sorted(name for name in INTEGRATIONS if name != "uwsgi")


@pytest.mark.parametrize("case", ["import-then-patch", "patch-then-import"])
@pytest.mark.parametrize("name", CONTRACT)
def test_contract(name, case):
    if not _installed(name):
        skip_or_fail(f"{name} is not installed in the test environment")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XRAY_", "AWS_XRAY"))}
    env["XRAY_AUTOINST_RAISE"] = "1"
    env["XRAY_SAMPLING"] = "local"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, name, case], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["status"] == "patched", out
    assert out["after_twice"], "patch() wrapped nothing visible on the target modules"
    assert not any(double for _label, double in out["after_twice"]), out["after_twice"]
    assert out["after_unpatch"] == [], out["after_unpatch"]
    assert sorted(out["after_repatch"]) == sorted(out["after_twice"])
