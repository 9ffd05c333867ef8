"""`xray-run` as a user types it: exec semantics, environment, start-up hook behaviour."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from xray_testing import BIN, ROOT, agent_env, free_port, http_get, stop, wait_http, xray_run

PY = sys.executable


def run(args, env=None, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=60,
                          env=env or agent_env(), **kw)


def test_exit_code_passes_through():
    proc = run(xray_run(PY, "-c", "import sys; sys.exit(7)"))
    assert proc.returncode == 7
    assert proc.stderr == ""


def test_same_pid_and_argv():
    code = "import os, sys, json; print(json.dumps([os.getpid(), sys.argv]))"
    p = subprocess.Popen(xray_run(PY, "-c", code, "a b", "--flag"), stdout=subprocess.PIPE,
                         text=True, env=agent_env())
    out, _ = p.communicate(timeout=30)
    pid, argv = json.loads(out)
    assert pid == p.pid
    assert argv == ["-c", "a b", "--flag"]


def test_command_not_found():
    proc = run(xray_run("no-such-command-xyz", "arg"))
    assert proc.returncode == 127
    assert proc.stderr == "xray-run: command not found: no-such-command-xyz\n"


def test_double_dash_and_usage():
    assert run(xray_run("--", PY, "-c", "pass")).returncode == 0
    proc = run(xray_run())
    assert proc.returncode == 2 and "usage: xray-run" in proc.stderr


def test_signal_reaches_the_program():
    code = "import time, sys; print('ready', flush=True); time.sleep(30)"
    p = subprocess.Popen(xray_run(PY, "-c", code), stdout=subprocess.PIPE, text=True,
                         env=agent_env())
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == -signal.SIGTERM


def test_bootstrap_on_pythonpath_once_even_nested():
    code = "import os; print(os.environ['PYTHONPATH'])"
    proc = run(xray_run(str(BIN / "xray-run"), PY, "-c", code))
    entries = proc.stdout.strip().split(os.pathsep)
    boot = [e for e in entries if e.endswith("_startup")]
    assert len(boot) == 1, entries
    assert (Path(boot[0]) / "sitecustomize.py").is_file()
    # the wheel carries the hook inside the package, never as a top-level module
    assert "site-packages" in boot[0] and Path(boot[0]).parent.name == "xray_autoinst"


def test_agent_is_active_in_the_child():
    code = ("import sys; print('xray_autoinst.bootstrap' in sys.modules, "
            "'xray_autoinst.core.tracer' in sys.modules)")
    proc = run(xray_run(PY, "-c", code))
    # hooks installed; the tracer itself loads only when a traced library is imported
    assert proc.stdout.split() == ["True", "False"], proc.stderr


def test_disabled_patches_nothing():
    code = ("import sys, wsgiref.simple_server as s; "
            "print('xray_autoinst.bootstrap' in sys.modules, "
            "hasattr(s.WSGIServer.set_app, '_xray_autoinst_wrapped'))")
    for var in ("XRAY_ENABLED", "AWS_XRAY_SDK_ENABLED"):
        proc = run(xray_run(PY, "-c", code), env=agent_env(**{var: "false"}))
        assert proc.stdout.split() == ["False", "False"], (var, proc.stderr)
    proc = run(xray_run(PY, "-c", code))
    assert proc.stdout.split() == ["True", "True"], proc.stderr


def test_users_sitecustomize_and_usercustomize_still_run(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import sys; sys.stderr.write('user-site\\n')\n")
    (tmp_path / "usercustomize.py").write_text("import sys; sys.stderr.write('user-custom\\n')\n")
    env = agent_env(PYTHONPATH=str(tmp_path))
    code = "import sys; print('xray_autoinst.bootstrap' in sys.modules)"
    proc = run(xray_run(PY, "-c", code), env=env)
    assert proc.stdout.strip() == "True"
    assert "user-site" in proc.stderr
    if subprocess.run([PY, "-c", "import site, sys; sys.exit(not site.ENABLE_USER_SITE)"],
                      env=env).returncode == 0:
        assert "user-custom" in proc.stderr


def test_another_python_installation_is_left_alone():
    other = os.path.realpath(os.path.join(sys.base_prefix, "bin", "python3"))
    code = "import sys; print('xray_autoinst.bootstrap' in sys.modules)"
    proc = run(xray_run(other, "-c", code))
    assert proc.returncode == 0
    assert proc.stdout.strip() == "False"
    assert proc.stderr == ""


def test_garbage_daemon_address_app_works_with_one_warning():
    port = free_port()
    env = agent_env(AWS_XRAY_DAEMON_ADDRESS="not an address")
    p = subprocess.Popen(xray_run(PY, str(ROOT / "integration/apps/plainapp.py"), str(port)),
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_http(port, proc=p)
        for _ in range(5):
            assert http_get(port, "/")[0] == 200
    finally:
        p.send_signal(signal.SIGTERM)
        _out, err = p.communicate(timeout=10)
    lines = [line for line in err.splitlines() if "xray-autoinst" in line]
    assert len(lines) == 1, err
    assert "AWS_XRAY_DAEMON_ADDRESS='not an address'" in lines[0]
    assert "tracing is off" in lines[0]


def test_unresolvable_daemon_host_never_blocks_requests(daemon):
    port = free_port()
    env = agent_env(AWS_XRAY_DAEMON_ADDRESS="no-such-host.invalid:2000")
    p = subprocess.Popen(xray_run(PY, str(ROOT / "integration/apps/plainapp.py"), str(port)),
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_http(port, proc=p)
        t0 = time.monotonic()
        for _ in range(20):
            assert http_get(port, "/")[0] == 200
        assert time.monotonic() - t0 < 10
    finally:
        p.send_signal(signal.SIGTERM)
        _out, err = p.communicate(timeout=10)
    lines = [line for line in err.splitlines() if "xray-autoinst" in line]
    assert len(lines) <= 1, err


def test_check_reports_configuration_and_integrations():
    proc = run(xray_run("--check"), env=agent_env(XRAY_SERVICE_NAME="orders"))
    assert proc.returncode == 0, proc.stdout
    out = proc.stdout
    assert "XRAY_SERVICE_NAME" in out and "orders  [env]" in out
    assert "AWS_XRAY_DAEMON_ADDRESS" in out and "[default]" in out
    assert "gunicorn" in out and "enabled" in out
    assert "resolves to 127.0.0.1" in out
    same = run([str(BIN / "xray-autoinst"), "check"], env=agent_env(XRAY_SERVICE_NAME="orders"))
    assert same.stdout == out


def test_check_fails_on_invalid_settings():
    proc = run(xray_run("--check"), env=agent_env(XRAY_CONTEXT_MISSING="sometimes"))
    assert proc.returncode == 1
    assert "XRAY_CONTEXT_MISSING='sometimes' is not valid" in proc.stdout


def test_python_dash_m_xray_autoinst_is_the_cli():
    proc = run([PY, "-m", "xray_autoinst", "run", PY, "-c", "import sys; sys.exit(3)"])
    assert proc.returncode == 3
    assert run([PY, "-m", "xray_autoinst", "--help"]).stdout.startswith("usage: xray-autoinst")


def test_container_entrypoint_command_line(daemon, tmp_path):
    """Run exactly ENTRYPOINT + CMD of examples/container/Dockerfile, in the app's directory."""
    dockerfile = (ROOT / "examples/container/Dockerfile").read_text()
    entry = cmd = None
    for line in dockerfile.splitlines():
        if line.startswith("ENTRYPOINT "):
            entry = json.loads(line.split(" ", 1)[1])
        if line.startswith("CMD "):
            cmd = json.loads(line.split(" ", 1)[1])
    assert entry == ["xray-run"]
    port = free_port()
    env = agent_env(daemon, PORT=port, XRAY_SERVICE_NAME="container-app")
    p = subprocess.Popen(entry + cmd, cwd=ROOT / "examples/container", env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(port, proc=p)
        daemon.wait(1)
        status, headers, body = http_get(port, "/")
        assert status == 200 and body == b"hello from the container\n"
        docs = daemon.wait(2)
        assert {d["name"] for d in docs} == {"container-app"}
        assert headers["X-Amzn-Trace-Id"] == "Root=" + docs[-1]["trace_id"]
    finally:
        stop(p)


def test_check_with_a_command_describes_it_and_never_runs_it(tmp_path):
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').close()"
    proc = run(xray_run("--check", PY, "-c", code), env=agent_env(AWS_XRAY_DAEMON_ADDRESS="2000"))
    assert proc.returncode == 1  # the invalid address is a problem
    assert not marker.exists()
    assert "(not run: --check only describes it)" in proc.stdout
    assert "this installation's -- traced" in proc.stdout
    assert "service name: python" in proc.stdout
    assert "no address probed" in proc.stdout and "proxy answers" not in proc.stdout
