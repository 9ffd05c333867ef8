"""``xray-autoinst ui`` and ``xray-run --local --ui`` as a user runs them (real processes)."""

import json
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from daemon_testing import XRAY_AUTOINST, base_env, free_udp_tcp_port
from xray_testing import xray_run

from xray_autoinst.daemon.protocol import decode, encode
from xray_autoinst.daemon.store import Store


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_ui_serves_a_store_until_stopped(tmp_path):
    store = tmp_path / "traces.db"
    s = Store.open_writer(str(store))
    doc = {"name": "api", "id": "a" * 16, "trace_id": "1-6553f100-" + "0" * 24,
           "start_time": 1_700_000_000.0, "end_time": 1_700_000_000.5}
    s.write([decode(encode(doc), 1_700_000_000.0)[1]])
    s.close()
    proc = subprocess.Popen([XRAY_AUTOINST, "ui", "--store", str(store), "--port", "0"],
                            env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stderr.readline()
        match = re.search(r"console of (.+) on (http://127\.0\.0\.1:\d+/) \(Ctrl-C stops it\)",
                          line)
        assert match and match.group(1) == str(store), line
        url = match.group(2)
        assert get_json(url + "api/traces")["traces"][0]["service"] == "api"
        with urllib.request.urlopen(url, timeout=10) as r:
            assert b"/static/app.js" in r.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and out == ""  # nothing on stdout


def test_ui_warns_when_it_is_not_loopback(tmp_path):
    proc = subprocess.Popen([XRAY_AUTOINST, "ui", "--store", str(tmp_path / "none.db"),
                             "--port", "0", "--bind", "0.0.0.0"],
                            env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        first = proc.stderr.readline()
        second = proc.stderr.readline()
        third = proc.stderr.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert "warning: listening on 0.0.0.0, not loopback" in first
    assert "no trace store at" in second
    url = re.search(r"on (http://\S+) ", third).group(1)
    assert url.startswith("http://127.0.0.1:")


@pytest.fixture
def home(tmp_path):
    env = base_env(HOME=tmp_path, AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{free_udp_tcp_port()}")
    env.pop("XDG_DATA_HOME", None)
    yield env
    subprocess.run([XRAY_AUTOINST, "daemon", "--stop"], env=env, capture_output=True,
                   timeout=60)


def test_xray_run_local_ui_starts_a_daemon_with_its_console(home):
    done = subprocess.run(xray_run("--local", "--ui", sys.executable, "-c", "pass"), env=home,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    match = re.search(r"; console on (http://127\.0\.0\.1:\d+/)$", done.stderr.strip())
    assert match, done.stderr
    status = get_json(match.group(1) + "api/status")
    store = Path(home["HOME"]) / ".local/share/xray-autoinst/traces.db"
    assert status["store"] == str(store)
    # the next run finds the same daemon and says where its console is
    again = subprocess.run(xray_run("--local", sys.executable, "-c", "pass"), env=home,
                           capture_output=True, text=True, timeout=60)
    assert again.stderr.startswith("xray-autoinst: local daemon (pid ")
    assert f"console on {match.group(1)}" in again.stderr
    status = subprocess.run([XRAY_AUTOINST, "daemon", "--status"], env=home,
                            capture_output=True, text=True, timeout=60)
    assert json.loads(status.stdout)["ui"] == match.group(1)
    bad = subprocess.run(xray_run("--ui", sys.executable, "-c", "pass"), env=home,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--ui goes with --local" in bad.stderr


def _answers(url) -> bool:
    try:
        get_json(url + "api/status")
        return True
    except OSError:
        return False


def test_the_daemons_console_is_its_child_and_ends_with_it(tmp_path):
    """``daemon --ui`` runs the console as a child process (its reading of the store never takes
    the daemon's CPU); it ends when the daemon stops, and when the daemon is killed."""
    import os

    from daemon_testing import wait_until

    env = base_env()
    store = tmp_path / "traces.db"
    for how in ("stop", "kill"):
        listen = f"127.0.0.1:{free_udp_tcp_port()}"
        started = subprocess.run(
            [XRAY_AUTOINST, "daemon", "--detach", "--listen", listen, "--store", str(store),
             "--ui", "--ui-port", "0"], env=env, capture_output=True, text=True, timeout=60)
        assert started.returncode == 0, started.stderr
        url = re.search(r"console on (http://\S+)$", started.stderr.strip()).group(1)
        assert _answers(url)
        info = json.loads(Path(f"{store}.pid").read_text())
        assert info["ui"] == url
        if how == "stop":
            subprocess.run([XRAY_AUTOINST, "daemon", "--stop", "--store", str(store)], env=env,
                           capture_output=True, timeout=60)
        else:
            os.kill(info["pid"], signal.SIGKILL)
        wait_until(lambda url=url: not _answers(url), timeout=20, what=f"the console gone ({how})")
        Path(f"{store}.pid").unlink(missing_ok=True)
