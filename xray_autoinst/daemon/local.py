"""Make sure a local daemon is listening before ``xray-run --local`` execs the application.

Standard library only, and nothing heavy at import time: the launcher imports this module.
The same helpers (default store path, pid file, status probe) serve ``xray-autoinst daemon``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

SERVICE = "xray-autoinst-daemon"
STATUS_PATH = "/xray-autoinst/status"


def default_store_path(environ: dict) -> str:
    """``$XDG_DATA_HOME/xray-autoinst/traces.db``, else ``~/.local/share/xray-autoinst/...``."""
    base = environ.get("XDG_DATA_HOME") or ""
    if not os.path.isabs(base):  # the XDG spec says to ignore a relative value
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".local", "share")
    return os.path.join(base, "xray-autoinst", "traces.db")


def pid_file_for(store: str) -> str:
    return store + ".pid"


def log_file_for(store: str) -> str:
    return store + ".log"


def format_addr(addr: tuple[str, int]) -> str:
    host, port = addr[0], addr[1]
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def probe(tcp_addr: tuple[str, int], timeout: float = 2.0) -> tuple[str, dict]:
    """Ask whatever listens on ``tcp_addr`` who it is.

    Returns ``("absent", {})`` when nothing accepts the connection, ``("ours", status)`` when an
    xray-autoinst daemon answers its status request, and ``("other", {})`` otherwise (the AWS
    X-Ray daemon, an OpenTelemetry collector, anything else).
    """
    try:
        conn = socket.create_connection(tcp_addr, timeout=timeout)
    except OSError:
        return "absent", {}
    try:
        conn.settimeout(timeout)
        request = (
            f"GET {STATUS_PATH} HTTP/1.1\r\nHost: {format_addr(tcp_addr)}\r\n"
            "Accept: application/json\r\nConnection: close\r\n\r\n"
        )
        conn.sendall(request.encode("ascii"))
        chunks = []
        size = 0
        while size < 1 << 16:
            chunk = conn.recv(8192)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return "other", {}
    finally:
        conn.close()
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or head.split(b" ", 2)[1:2] != [b"200"]:
        return "other", {}
    try:
        status = json.loads(body)
    except ValueError:
        return "other", {}
    if not isinstance(status, dict) or status.get("service") != SERVICE:
        return "other", {}
    return "ours", status


def _is_our_bootstrap_dir(path: str) -> bool:
    """True for a PYTHONPATH entry that holds this agent's ``sitecustomize.py``."""
    candidate = os.path.join(path, "sitecustomize.py")
    try:
        with open(candidate, encoding="utf-8", errors="replace") as f:
            head = f.read(8192)
    except OSError:
        return False
    return "xray_autoinst" in head


def daemon_environment(environ: dict) -> dict:
    """The environment for the daemon process: the agent's bootstrap removed, tracing off."""
    env = dict(environ)
    entries = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    kept = [p for p in entries if not _is_our_bootstrap_dir(p)]
    if kept:
        env["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        env.pop("PYTHONPATH", None)
    env["XRAY_ENABLED"] = "false"
    return env


def _stop_hint(store: str, environ: dict) -> str:
    if store == default_store_path(environ):
        return "xray-autoinst daemon --stop"
    return f"xray-autoinst daemon --stop --store {store}"


def _console_url(store: str) -> str | None:
    """The browser console's URL of the daemon of ``store`` (its pid file says), if any."""
    import json

    try:
        with open(pid_file_for(store), encoding="utf-8") as f:
            url = json.load(f).get("ui")
    except (OSError, ValueError, AttributeError):
        return None
    return url if isinstance(url, str) else None


def _running_line(status: dict, started: bool, environ: dict, ui: bool = False) -> str:
    store = str(status.get("store") or "")
    what = "started a local daemon" if started else "local daemon"
    where = f"stores traces in {store}" if store else "does not store traces (--no-store)"
    line = (
        f"xray-autoinst: {what} (pid {status.get('pid')}) on udp {status.get('udp')}, {where}; "
        f"view them with `xray-autoinst traces`, stop it with `{_stop_hint(store, environ)}`"
    )
    url = _console_url(store) if store else None
    if url:
        line += f"; console on {url}"
    elif ui and store:
        line += (
            "; it serves no console (started without --ui): open one with `xray-autoinst ui"
            + ("" if store == default_store_path(environ) else f" --store {store}") + "`"
        )
    return line


def daemon_command(
    udp_addr: tuple[str, int], tcp_addr: tuple[str, int], store: str | None, ui: bool = False
) -> list[str]:
    listen = f"udp:{format_addr(udp_addr)} tcp:{format_addr(tcp_addr)}"
    cmd = [sys.executable, "-m", "xray_autoinst.daemon", "daemon", "--detach", "--listen", listen]
    if store:
        cmd += ["--store", store]
    if ui:
        cmd.append("--ui")
    return cmd


def ensure_local_daemon(
    udp_addr: tuple[str, int],
    tcp_addr: tuple[str, int],
    store: str | None,
    environ: dict,
    *,
    timeout: float = 20.0,
    ui: bool = False,
) -> str:
    """Start a detached local daemon unless one answers on ``tcp_addr``; return a line to print.

    With ``ui``, a daemon it starts also serves the browser console (``daemon --ui``)."""
    state, status = probe(tcp_addr)
    if state == "ours":
        return _running_line(status, False, environ, ui)
    if state == "other":
        return (
            f"xray-autoinst: {format_addr(tcp_addr)} is answered by something that is not the "
            "xray-autoinst daemon (the AWS X-Ray daemon or an OpenTelemetry collector?); "
            f"sending traces to udp {format_addr(udp_addr)} as is"
        )
    cmd = daemon_command(udp_addr, tcp_addr, store, ui)
    try:
        done = subprocess.run(
            cmd,
            env=daemon_environment(environ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"xray-autoinst: could not start the local daemon ({exc}); traces may be lost"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout or "").strip().splitlines()
        why = lines[-1] if lines else f"exit status {done.returncode}"
        return f"xray-autoinst: could not start the local daemon: {why}; traces may be lost"
    deadline = time.monotonic() + timeout
    while True:
        state, status = probe(tcp_addr)
        if state == "ours":
            return _running_line(status, True, environ, ui)
        if time.monotonic() > deadline:
            return (
                "xray-autoinst: started the local daemon but it does not answer on "
                f"{format_addr(tcp_addr)}; see {log_file_for(store or default_store_path(environ))}"
            )
        time.sleep(0.05)
