"""The daemon as a process: its pid file, liveness, ``--stop`` and ``--status``, the signals
that stop it, serving in the foreground, ``--detach`` and the ``--ui`` console child.

The command line (``cli.py``) parses the options into ``DaemonSettings`` and hands over to
``start``, ``stop_daemon`` or ``show_status`` here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time

from xray_autoinst.daemon import local
from xray_autoinst.daemon.logsetup import current_level, log, setup_logging


def stop_event(*signals: int) -> threading.Event:
    """An event set when one of ``signals`` arrives (the handler only sets it)."""
    event = threading.Event()

    def on_signal(signum, frame):
        event.set()

    for sig in signals:
        signal.signal(sig, on_signal)
    return event


def read_pid_file(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        return None
    return info


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = f"/proc/{pid}/cmdline"
    if os.path.exists(cmdline):  # guard against a recycled pid
        try:
            with open(cmdline, "rb") as f:
                text = f.read().replace(b"\0", b" ")
        except OSError:
            return True
        return b"xray_autoinst" in text or b"xray-autoinst" in text
    return True


def running_daemon(pid_path: str) -> dict | None:
    info = read_pid_file(pid_path)
    if info is None or not alive(info["pid"]):
        return None
    return info


def write_pid_file(path: str, info: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(info, f)
        f.write("\n")
    os.replace(tmp, path)


def remove_pid_file(path: str) -> None:
    info = read_pid_file(path)
    if info is not None and info.get("pid") == os.getpid():
        try:
            os.unlink(path)
        except OSError:
            pass


def stop_daemon(store: str, timeout: float) -> int:
    """``daemon --stop``: SIGTERM to the daemon using ``store``, then wait for it to exit."""
    pid_path = local.pid_file_for(store)
    info = running_daemon(pid_path)
    if info is None:
        if os.path.exists(pid_path):
            try:
                os.unlink(pid_path)  # stale
            except OSError:
                pass
        sys.stderr.write(f"xray-autoinst: no daemon is running for store {store}\n")
        return 0
    pid = info["pid"]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            sys.stderr.write(f"xray-autoinst: stopped the daemon (pid {pid}) for store {store}\n")
            return 0
        time.sleep(0.05)
    sys.stderr.write(f"xray-autoinst: the daemon (pid {pid}) did not stop in {timeout:g}s\n")
    return 1


def show_status(store: str) -> int:
    """``daemon --status``: the status of the daemon using ``store`` as JSON on stdout."""
    info = running_daemon(local.pid_file_for(store))
    if info is None:
        sys.stderr.write(f"xray-autoinst: no daemon is running for store {store}\n")
        return 1
    from xray_autoinst.daemon.protocol import parse_listen

    tcp = parse_listen(str(info.get("tcp"))).tcp
    state, status = local.probe(tcp)
    if state != "ours":
        sys.stderr.write(f"xray-autoinst: daemon pid {info['pid']} does not answer on {tcp}\n")
        return 1
    if info.get("ui"):
        status["ui"] = info["ui"]  # the browser console (daemon --ui)
    sys.stdout.write(json.dumps(status, indent=2) + "\n")
    return 0


def _serve(settings, udp_sock, tcp_sock, pid_path: str, ready_fd: int | None,
           ui: int | None = None) -> int:
    """Run the daemon in this process until SIGTERM/SIGINT; ``ui``: the console's port
    (-1: the default one, else a free one), None: no console."""
    from xray_autoinst.daemon.server import Daemon

    def report(message: str) -> None:
        if ready_fd is not None:
            try:
                os.write(ready_fd, message.encode("utf-8", "replace") + b"\n")
                os.close(ready_fd)
            except OSError:
                pass

    stop = stop_event(signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    daemon = Daemon(settings, udp_sock, tcp_sock)
    try:
        daemon.start()
    except Exception as exc:
        message = _start_error(exc)
        log.error("%s", message)
        report("error " + message)
        daemon.abort()
        return 1
    write_pid_file(
        pid_path,
        {
            "pid": os.getpid(), "udp": daemon.udp_text, "tcp": daemon.tcp_text,
            "store": settings.store, "started": daemon.started,
        },
    )
    console = _start_console(settings, ui, pid_path) if ui is not None else None
    report(f"ok {os.getpid()}" + (f" {console[1]}" if console is not None else ""))
    try:
        daemon.run(stop)
    finally:
        if console is not None:
            _stop_console(console[0])
        daemon.shutdown()
        remove_pid_file(pid_path)
    return 0


def _start_console(settings, ui: int, pid_path: str):
    """``daemon --ui``: the console as a child process (``xray-autoinst ui``), so that its
    reading of the store never takes the daemon's CPU; (process, url) or None."""
    import subprocess

    # default: the port after the daemon's TCP port (2001 beside 2000), else a free one
    port = ui if ui >= 0 else (settings.tcp[1] + 1 if 0 < settings.tcp[1] < 65535 else 0)
    argv = [sys.executable, "-m", "xray_autoinst.daemon", "ui", "--store", settings.store,
            "--port", str(port), "--exit-with-parent"]
    if ui < 0:
        argv.append("--any-port-if-busy")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, errors="replace")
    except OSError as exc:
        log.error("cannot start the console: %s", exc)
        return None
    match = None
    for _ in range(5):  # its first lines: a note or two, then where it listens
        line = proc.stderr.readline().strip()
        match = re.search(r"console of .* on (http://\S+) ", line)
        if match is not None or not line:
            break
    if match is None:
        log.error("the console did not start: %s", line or f"exit status {proc.wait()}")
        _stop_console(proc)
        return None

    def relay():  # what the console says later goes to the daemon's log
        for text in proc.stderr:
            if text.strip():
                log.warning("console: %s", text.strip())

    threading.Thread(target=relay, name="xray-autoinst-ui-log", daemon=True).start()
    url = match.group(1)
    log.info("console on %s (pid %d)", url, proc.pid)
    info = read_pid_file(pid_path) or {}
    info["ui"] = url
    write_pid_file(pid_path, info)
    return proc, url


def _stop_console(proc) -> None:
    import subprocess

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _start_error(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "NoRegionError":
        return "--forward needs an AWS region: set AWS_REGION (or AWS_DEFAULT_REGION) or --region"
    if isinstance(exc, ImportError) and "botocore" in str(exc):
        return "--forward needs botocore: pip install 'xray-autoinst[forward]'"
    return f"cannot start: {exc}"


def _detach(settings, udp_sock, tcp_sock, pid_path: str, log_path: str,
            ui: int | None = None) -> int:
    """Fork into the background; the first process waits until the daemon is up."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(write_fd)
        udp_sock.close()
        tcp_sock.close()
        chunks = []
        while True:
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(read_fd)
        os.waitpid(pid, 0)
        answer = b"".join(chunks).decode("utf-8", "replace").strip()
        if answer.startswith("ok "):
            where = f"stores traces in {settings.store}" if settings.store else "stores nothing"
            pid_text, _, url = answer[3:].partition(" ")
            console = f"; console on {url}" if url else ""
            sys.stderr.write(
                f"xray-autoinst: daemon started (pid {pid_text}) on udp "
                f"{local.format_addr(settings.udp)}, {where}; log {log_path}{console}\n"
            )
            return 0
        message = answer[6:] if answer.startswith("error ") else f"see {log_path}"
        sys.stderr.write(f"xray-autoinst daemon: {message}\n")
        return 1
    # first child: a new session, then fork again so the daemon is no session leader
    try:
        os.close(read_fd)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
        setup_logging(current_level())
        code = _serve(settings, udp_sock, tcp_sock, pid_path, write_fd, ui)
    except BaseException:
        code = 1
        try:
            import traceback

            traceback.print_exc()
        except BaseException:
            pass
    os._exit(code)



def start(settings, store: str, *, detach: bool, ui: int | None, store_named: bool) -> int:
    """Bind the daemon's sockets, then serve in this process or ``detach``; the exit status.

    ``store`` is the store path the pid and log files go beside (also with ``--no-store``);
    ``store_named``: it was given with ``--store`` (the advice to stop a running one says so).
    """
    pid_path = local.pid_file_for(store)
    running = running_daemon(pid_path)
    if running is not None:
        sys.stderr.write(
            f"xray-autoinst daemon: a daemon (pid {running['pid']}, udp {running.get('udp')}) "
            f"already uses store {store}; stop it with `xray-autoinst daemon --stop"
            + (f" --store {store}" if store_named else "") + "`\n"
        )
        return 1
    try:
        os.makedirs(os.path.dirname(store), mode=0o700, exist_ok=True)
    except OSError as exc:
        sys.stderr.write(f"xray-autoinst daemon: cannot create {store}: {exc}\n")
        return 1
    from xray_autoinst.daemon.server import bind_tcp, bind_udp

    try:
        udp_sock = bind_udp(settings.udp)
    except OSError as exc:
        sys.stderr.write(
            f"xray-autoinst daemon: cannot listen on udp {local.format_addr(settings.udp)}: "
            f"{exc.strerror or exc}\n"
        )
        return 1
    try:
        tcp_sock = bind_tcp(settings.tcp)
    except OSError as exc:
        udp_sock.close()
        sys.stderr.write(
            f"xray-autoinst daemon: cannot listen on tcp {local.format_addr(settings.tcp)}: "
            f"{exc.strerror or exc}\n"
        )
        return 1
    if detach:
        if not hasattr(os, "fork"):
            sys.stderr.write("xray-autoinst daemon: --detach needs a POSIX system\n")
            return 2
        return _detach(settings, udp_sock, tcp_sock, pid_path, local.log_file_for(store), ui)
    return _serve(settings, udp_sock, tcp_sock, pid_path, None, ui)
