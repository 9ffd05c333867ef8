"""The daemon as a process (``daemon.lifecycle``): its pid file, the liveness check that guards
against a recycled pid, the signal that stops it."""

import os
import signal
import subprocess
import sys

import pytest

from xray_autoinst.daemon import lifecycle, local


def test_pid_file_round_trip_is_private(tmp_path):
    path = str(tmp_path / "traces.db.pid")
    lifecycle.write_pid_file(path, {"pid": 123, "udp": "127.0.0.1:2000"})
    assert lifecycle.read_pid_file(path) == {"pid": 123, "udp": "127.0.0.1:2000"}
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["traces.db.pid"]  # written beside, then moved in place


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '{"pid": "123"}', '{"udp": 1}'])
def test_unreadable_pid_files_are_none(tmp_path, text):
    path = tmp_path / "traces.db.pid"
    path.write_text(text)
    assert lifecycle.read_pid_file(str(path)) is None
    assert lifecycle.read_pid_file(str(tmp_path / "missing.pid")) is None


def test_only_the_owner_removes_its_pid_file(tmp_path):
    path = str(tmp_path / "traces.db.pid")
    lifecycle.write_pid_file(path, {"pid": os.getpid() + 1})
    lifecycle.remove_pid_file(path)
    assert os.path.exists(path)
    lifecycle.write_pid_file(path, {"pid": os.getpid()})
    lifecycle.remove_pid_file(path)
    assert not os.path.exists(path)


@pytest.mark.skipif(not os.path.exists("/proc/self/cmdline"), reason="needs /proc (Linux)")
def test_alive_is_a_daemon_of_ours_not_a_recycled_pid(tmp_path):
    sleep = "import time; time.sleep(60)"
    ours = subprocess.Popen([sys.executable, "-c", sleep, "xray_autoinst.daemon"])
    other = subprocess.Popen([sys.executable, "-c", sleep])
    try:
        assert lifecycle.alive(ours.pid)
        assert not lifecycle.alive(other.pid)  # a pid the daemon's was, now another program
        path = str(tmp_path / "traces.db.pid")
        lifecycle.write_pid_file(path, {"pid": ours.pid})
        assert lifecycle.running_daemon(path) == {"pid": ours.pid}
    finally:
        for proc in (ours, other):
            proc.kill()
            proc.wait()
    assert not lifecycle.alive(ours.pid)
    assert lifecycle.running_daemon(path) is None


def test_stop_clears_a_stale_pid_file(tmp_path, capsys):
    store = str(tmp_path / "traces.db")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lifecycle.write_pid_file(local.pid_file_for(store), {"pid": dead.pid})
    assert lifecycle.stop_daemon(store, 1.0) == 0
    assert not os.path.exists(local.pid_file_for(store))
    assert "no daemon is running" in capsys.readouterr().err


def test_stop_event_is_set_by_its_signals():
    before = signal.getsignal(signal.SIGHUP)
    try:
        event = lifecycle.stop_event(signal.SIGHUP)
        assert not event.is_set()
        os.kill(os.getpid(), signal.SIGHUP)
        assert event.wait(5)
    finally:
        signal.signal(signal.SIGHUP, before)


def test_start_errors_say_what_to_do():
    class NoRegionError(Exception):
        pass

    assert "AWS_REGION" in lifecycle._start_error(NoRegionError())
    assert "pip install" in lifecycle._start_error(ImportError("No module named 'botocore'"))
    assert lifecycle._start_error(OSError("boom")) == "cannot start: boom"
