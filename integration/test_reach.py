"""What a PYTHONPATH start-up hook reaches (issue 12): a child Python that inherits the
environment is traced; one started with -I or -E, or with a replaced PYTHONPATH, is not, as the
README and ``xray-run --check`` say."""

import json
import subprocess
import sys

from xray_testing import agent_env, xray_run

PARENT = r"""
import json, os, subprocess, sys
probe = "import sys; print('xray_autoinst.bootstrap' in sys.modules)"
def child(*flags, env=None):
    out = subprocess.run([sys.executable, *flags, "-c", probe], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    return out == "True"
replaced = dict(os.environ, PYTHONPATH="/nonexistent")
print(json.dumps({"parent": "xray_autoinst.bootstrap" in sys.modules, "child": child(),
                  "-I": child("-I"), "-E": child("-E"),
                  "replaced PYTHONPATH": child(env=replaced)}))
"""


def test_children_reached_and_not():
    proc = subprocess.run(xray_run(sys.executable, "-c", PARENT), env=agent_env(None),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"parent": True, "child": True, "-I": False, "-E": False,
                                       "replaced PYTHONPATH": False}


def test_check_and_debug_log_say_what_is_not_reached():
    check = subprocess.run(xray_run("--check"), env=agent_env(None), capture_output=True,
                           text=True, timeout=60)
    assert "start-up hook:" in check.stdout and "-I or -E" in check.stdout
    run = subprocess.run(xray_run(sys.executable, "-c", "pass"),
                         env=agent_env(None, XRAY_LOG_LEVEL="debug"), capture_output=True,
                         text=True, timeout=60)
    assert run.stdout == ""
    assert "run untraced" in run.stderr and "-I or -E" in run.stderr
