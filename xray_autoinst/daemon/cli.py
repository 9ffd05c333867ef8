"""``xray-autoinst daemon | traces | trace | map``.

Every environment variable these commands read is named here, and read only through the
``environ`` mapping handed to the parsers (tests pass their own).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time

from xray_autoinst.daemon import local

# Environment variables (their defaults are in docs/daemon.md).
DAEMON_ADDRESS = "AWS_XRAY_DAEMON_ADDRESS"  # --listen default
ENDPOINT_URL = "AWS_ENDPOINT_URL_XRAY"  # --endpoint-url default (botocore reads it too)
SAMPLING_RULES = "XRAY_SAMPLING_RULES"  # local rules for the sampling proxy
XDG_DATA_HOME = "XDG_DATA_HOME"  # store default: $XDG_DATA_HOME/xray-autoinst/traces.db
NO_COLOR = "NO_COLOR"  # views: no ANSI colors

log = logging.getLogger("xray_autoinst.daemon")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main_* can return the status."""

    def exit(self, status=0, message=None):
        if message:
            sys.stderr.write(message)
        raise _Exit(status)


class _Exit(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def _run(fn, argv) -> int:
    try:
        return fn(list(argv))
    except _Exit as exc:
        return exc.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `xray-autoinst traces | head`
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        except OSError:
            pass
        return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def _store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", metavar="PATH",
        help="trace store (default: $XDG_DATA_HOME/xray-autoinst/traces.db, "
        "i.e. ~/.local/share/xray-autoinst/traces.db)",
    )


def _store_path(args, environ) -> str:
    return os.path.abspath(os.path.expanduser(args.store or local.default_store_path(environ)))


# -- daemon ----------------------------------------------------------------------------------
def daemon_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="xray-autoinst daemon",
        description="A local X-Ray daemon: receives segment documents on UDP, keeps them in a "
        "SQLite store for `xray-autoinst traces|trace|map`, relays them to AWS X-Ray with "
        "--forward, and serves the sampling proxy on TCP.",
    )
    p.add_argument(
        "--listen", metavar="ADDR",
        help="where to listen: host:port (UDP and TCP) or 'udp:host:port tcp:host:port' "
        f"(default: ${DAEMON_ADDRESS}, else 127.0.0.1:2000)",
    )
    _store_arg(p)
    p.add_argument("--no-store", action="store_true", help="keep nothing (relay only)")
    p.add_argument(
        "--max-traces", type=_positive_int, default=10_000, metavar="N",
        help="evict the oldest traces beyond N (default: 10000)",
    )
    p.add_argument(
        "--max-store-mb", type=_positive_int, default=256, metavar="MB",
        help="evict the oldest traces while the store holds more than MB MiB (default: 256)",
    )
    p.add_argument("--forward", action="store_true", help="also relay documents to AWS X-Ray")
    p.add_argument(
        "--endpoint-url", metavar="URL",
        help=f"X-Ray API endpoint for --forward (default: ${ENDPOINT_URL}, else AWS's)",
    )
    p.add_argument("--region", help="AWS region for --forward (default: the AWS configuration)")
    p.add_argument(
        "--forward-buffer-mb", type=_positive_int, default=16, metavar="MB",
        help="documents waiting to be relayed; the oldest are dropped beyond it (default: 16)",
    )
    p.add_argument(
        "--summary-interval", type=_positive_float, default=60.0, metavar="SECONDS",
        help="seconds between summary lines on stderr (default: 60)",
    )
    p.add_argument(
        "--drain-timeout", type=_positive_float, default=10.0, metavar="SECONDS",
        help="on SIGTERM/SIGINT, time allowed to relay what is buffered (default: 10)",
    )
    p.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error"),
        help="default: info",
    )
    p.add_argument(
        "--ui", action="store_true",
        help="also serve the browser console (as `xray-autoinst ui`) from this process",
    )
    p.add_argument(
        "--ui-port", type=int, default=None, metavar="PORT",
        help="port of the console with --ui (default: the TCP port + 1, i.e. 2001, else a "
        "free one; 0: a free one)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--detach", action="store_true",
        help="run in the background; pid file STORE.pid, log file STORE.log",
    )
    mode.add_argument("--stop", action="store_true", help="stop the daemon using the store")
    mode.add_argument("--status", action="store_true", help="show the daemon using the store")
    return p


def daemon_settings(args, environ):
    """Options and environment to DaemonSettings; raises ValueError with a readable message."""
    from xray_autoinst.daemon.protocol import parse_listen
    from xray_autoinst.daemon.server import DaemonSettings

    listen = args.listen
    source = "--listen"
    if listen is None and (environ.get(DAEMON_ADDRESS) or "").strip():
        listen, source = environ[DAEMON_ADDRESS], DAEMON_ADDRESS
    try:
        addrs = parse_listen(listen or "127.0.0.1:2000")
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    endpoint = args.endpoint_url
    if endpoint and not args.forward:
        raise ValueError("--endpoint-url is for --forward")
    if args.region and not args.forward:
        raise ValueError("--region is for --forward")
    if args.forward and not endpoint:
        endpoint = (environ.get(ENDPOINT_URL) or "").strip() or None
    return DaemonSettings(
        udp=addrs.udp,
        tcp=addrs.tcp,
        store=None if args.no_store else _store_path(args, environ),
        max_traces=args.max_traces,
        max_bytes=args.max_store_mb * 1024 * 1024,
        forward=args.forward,
        endpoint_url=endpoint,
        region=args.region,
        forward_buffer_bytes=args.forward_buffer_mb * 1024 * 1024,
        sampling_rules=(environ.get(SAMPLING_RULES) or "").strip() or None,
        summary_interval=args.summary_interval,
        drain_timeout=args.drain_timeout,
    )


class _DaemonFormatter(logging.Formatter):
    def format(self, record):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        text = f"{stamp} xray-autoinst daemon: {level}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(level: str) -> None:
    for handler in list(log.handlers):
        log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_DaemonFormatter())
    log.addHandler(handler)
    log.setLevel(level.upper())
    log.propagate = False


def _read_pid_file(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        return None
    return info


def _alive(pid: int) -> bool:
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


def _running_daemon(pid_path: str) -> dict | None:
    info = _read_pid_file(pid_path)
    if info is None or not _alive(info["pid"]):
        return None
    return info


def _write_pid_file(path: str, info: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(info, f)
        f.write("\n")
    os.replace(tmp, path)


def _remove_pid_file(path: str) -> None:
    info = _read_pid_file(path)
    if info is not None and info.get("pid") == os.getpid():
        try:
            os.unlink(path)
        except OSError:
            pass


def _stop(store: str, timeout: float) -> int:
    pid_path = local.pid_file_for(store)
    info = _running_daemon(pid_path)
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
        if not _alive(pid):
            sys.stderr.write(f"xray-autoinst: stopped the daemon (pid {pid}) for store {store}\n")
            return 0
        time.sleep(0.05)
    sys.stderr.write(f"xray-autoinst: the daemon (pid {pid}) did not stop in {timeout:g}s\n")
    return 1


def _status(store: str) -> int:
    info = _running_daemon(local.pid_file_for(store))
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

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    daemon = Daemon(settings, udp_sock, tcp_sock)
    try:
        daemon.start()
    except Exception as exc:
        message = _start_error(exc)
        log.error("%s", message)
        report("error " + message)
        daemon.abort()
        return 1
    _write_pid_file(
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
        _remove_pid_file(pid_path)
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
    info = _read_pid_file(pid_path) or {}
    info["ui"] = url
    _write_pid_file(pid_path, info)
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
        setup_logging(logging.getLevelName(log.level).lower())
        code = _serve(settings, udp_sock, tcp_sock, pid_path, write_fd, ui)
    except BaseException:
        code = 1
        try:
            import traceback

            traceback.print_exc()
        except BaseException:
            pass
    os._exit(code)


def daemon_main(argv: list[str], environ=None) -> int:
    environ = os.environ if environ is None else environ
    args = daemon_parser().parse_args(argv)
    setup_logging(args.log_level)
    store_for_files = _store_path(args, environ)
    if args.stop:
        return _stop(store_for_files, args.drain_timeout + 10)
    if args.status:
        return _status(store_for_files)
    try:
        settings = daemon_settings(args, environ)
    except ValueError as exc:
        sys.stderr.write(f"xray-autoinst daemon: {exc}\n")
        return 2
    ui = None
    if args.ui:
        if settings.store is None:
            sys.stderr.write("xray-autoinst daemon: --ui shows the store: not with --no-store\n")
            return 2
        ui = -1 if args.ui_port is None else args.ui_port
    elif args.ui_port is not None:
        sys.stderr.write("xray-autoinst daemon: --ui-port is for --ui\n")
        return 2
    pid_path = local.pid_file_for(store_for_files)
    running = _running_daemon(pid_path)
    if running is not None:
        sys.stderr.write(
            f"xray-autoinst daemon: a daemon (pid {running['pid']}, udp {running.get('udp')}) "
            f"already uses store {store_for_files}; stop it with `xray-autoinst daemon --stop"
            + ("" if args.store is None else f" --store {store_for_files}") + "`\n"
        )
        return 1
    try:
        os.makedirs(os.path.dirname(store_for_files), mode=0o700, exist_ok=True)
    except OSError as exc:
        sys.stderr.write(f"xray-autoinst daemon: cannot create {store_for_files}: {exc}\n")
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
    if args.detach:
        if not hasattr(os, "fork"):
            sys.stderr.write("xray-autoinst daemon: --detach needs a POSIX system\n")
            return 2
        return _detach(settings, udp_sock, tcp_sock, pid_path,
                       local.log_file_for(store_for_files), ui)
    return _serve(settings, udp_sock, tcp_sock, pid_path, None, ui)


def main_daemon(argv: list[str]) -> int:
    return _run(daemon_main, argv)


# -- views -----------------------------------------------------------------------------------
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float | None = None) -> float:
    """``15m``, ``2h``, ``30s``, ``1d``, ``1w`` ago, or an ISO-8601 time; epoch seconds."""
    now = time.time() if now is None else now
    match = _SINCE.match(text)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2).lower()]
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"--since {text!r}: use a duration like 15m, 2h, 1d or a time like 2025-01-31T14:00"
        ) from None
    return moment.timestamp()  # a naive time is local time


def _style(environ, stream=None):
    from xray_autoinst.daemon.views import Style

    stream = stream or sys.stdout
    tty = hasattr(stream, "isatty") and stream.isatty()
    color = tty and NO_COLOR not in environ and environ.get("TERM") != "dumb"
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
    return Style(color=color, unicode=encoding in ("utf8", "utf16", "utf32"))


def _width(args) -> int:
    if getattr(args, "width", None):
        return args.width
    return shutil.get_terminal_size((120, 24)).columns


def _open_store(path: str, quiet: bool = False):
    from xray_autoinst.daemon.store import Store, StoreMissing

    try:
        return Store.open_reader(path)
    except StoreMissing:
        if not quiet:
            sys.stderr.write(
                f"xray-autoinst: no trace store at {path} yet: start `xray-autoinst daemon` "
                "or run an app with `xray-run --local`\n"
            )
        return None


def _view_parser(prog: str, description: str) -> _Parser:
    p = _Parser(prog=prog, description=description)
    _store_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--width", type=_positive_int, help="output width (default: the terminal's)")
    return p


def traces_main(argv: list[str], environ=None) -> int:
    environ = os.environ if environ is None else environ
    p = _view_parser("xray-autoinst traces", "List recent traces in the store, newest first.")
    p.add_argument("--service", help="only traces with a segment of this name (* wildcards)")
    p.add_argument("--status", metavar="CODE", help="root HTTP status: 500, or a class like 5xx")
    p.add_argument("--min-duration", type=float, metavar="SECONDS", help="at least this long")
    p.add_argument("--since", metavar="WHEN", help="started since 15m, 2h, 1d ago, or an ISO time")
    p.add_argument("--limit", type=_positive_int, default=50, metavar="N", help="default: 50")
    args = p.parse_args(argv)
    if args.status is not None and not re.fullmatch(r"\d{3}|[1-5][xX][xX]", args.status.strip()):
        p.error(f"--status {args.status!r}: give a code like 500 or a class like 5xx")
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        p.error(str(exc))
    store = _open_store(_store_path(args, environ))
    if store is None:
        sys.stdout.write("[]\n" if args.json else "")
        return 0
    try:
        summaries = store.summaries(
            since=since, limit=args.limit, service=args.service, status=args.status,
            min_duration=args.min_duration,
        )
    finally:
        store.close_reader()
    from xray_autoinst.daemon import views

    if args.json:
        sys.stdout.write(views.dumps(views.traces_json(summaries)))
    else:
        sys.stdout.write(views.render_traces(summaries, width=_width(args), style=_style(environ)))
    return 0


def trace_main(argv: list[str], environ=None) -> int:
    environ = os.environ if environ is None else environ
    p = _view_parser(
        "xray-autoinst trace", "Show one trace as a timeline of its segments and subsegments."
    )
    p.add_argument("trace_id", metavar="TRACE_ID", help="a trace id, a unique prefix, or 'latest'")
    args = p.parse_args(argv)
    store = _open_store(_store_path(args, environ))
    if store is None:
        return 1
    try:
        matches = store.resolve_trace_id(args.trace_id.strip())
        if len(matches) != 1:
            if matches:
                sys.stderr.write(
                    f"xray-autoinst: {args.trace_id!r} matches several traces: "
                    + ", ".join(matches[:5]) + "\n"
                )
            else:
                sys.stderr.write(f"xray-autoinst: no trace {args.trace_id!r} in {store.path}\n")
            return 1
        trace_id = matches[0]
        documents = store.documents(trace_id)
    finally:
        store.close_reader()
    from xray_autoinst.daemon import views
    from xray_autoinst.daemon.tree import merged_trace

    merged = merged_trace(trace_id, documents)
    if args.json:
        sys.stdout.write(views.dumps(merged))
    else:
        sys.stdout.write(views.render_trace(merged, width=_width(args), style=_style(environ)))
    return 0


def map_main(argv: list[str], environ=None) -> int:
    environ = os.environ if environ is None else environ
    p = _view_parser("xray-autoinst map", "Show the service map of the stored traces.")
    p.add_argument("--dot", action="store_true", help="print Graphviz DOT")
    p.add_argument("--since", metavar="WHEN", help="traces started since 15m, 2h, 1d, ISO time")
    p.add_argument("--until", metavar="WHEN", help="traces started until 15m, 2h, 1d ago, ISO time")
    p.add_argument(
        "--service", metavar="NAME",
        help="only the services named NAME (* wildcards) and their direct neighbours",
    )
    p.add_argument(
        "--limit", type=_positive_int, default=1000, metavar="N",
        help="use the N newest traces (default: 1000)",
    )
    args = p.parse_args(argv)
    if args.json and args.dot:
        p.error("--json and --dot do not go together")
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        p.error(str(exc))
    try:
        until = parse_since(args.until) if args.until else None
    except ValueError as exc:
        p.error(str(exc).replace("--since", "--until"))
    from xray_autoinst.daemon import views
    from xray_autoinst.daemon.tree import merged_trace

    store = _open_store(_store_path(args, environ))
    traces = []
    if store is not None:
        try:
            for trace_id in store.trace_ids(since=since, until=until, limit=args.limit):
                traces.append(merged_trace(trace_id, store.documents(trace_id)))
        finally:
            store.close_reader()
    graph = views.build_map(traces)
    if args.service:
        graph = views.focus_map(graph, args.service)
    if args.json:
        sys.stdout.write(views.dumps(graph))
    elif args.dot:
        sys.stdout.write(views.render_dot(graph))
    else:
        sys.stdout.write(views.render_map(graph, width=_width(args), style=_style(environ)))
    return 0


def ui_main(argv: list[str], environ=None) -> int:
    environ = os.environ if environ is None else environ
    from xray_autoinst.daemon import ui

    p = _Parser(
        prog="xray-autoinst ui",
        description="Serve the read-only X-Ray console (trace list, timeline, service map) "
        "of the store in the browser.",
    )
    _store_arg(p)
    p.add_argument(
        "--port", type=int, default=None, metavar="PORT",
        help=f"TCP port (default: {ui.DEFAULT_PORT}, else a free one; 0: a free one)",
    )
    p.add_argument(
        "--bind", metavar="HOST", default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1). Anything else than loopback lets "
        "others on the network read your traces.",
    )
    # for daemon --ui, which runs the console as its child
    p.add_argument("--any-port-if-busy", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.port is not None and not 0 <= args.port <= 65535:
        p.error(f"--port {args.port}: 0 to 65535")
    store = _store_path(args, environ)
    if not ui.is_loopback(args.bind.strip("[]")):
        sys.stderr.write(
            f"xray-autoinst ui: warning: listening on {args.bind}, not loopback: anyone who "
            "reaches it can read the traces (URLs, SQL, user agents). There is no login.\n"
        )
    if not os.path.exists(store):
        sys.stderr.write(
            f"xray-autoinst ui: no trace store at {store} yet; the console shows it once a "
            "daemon writes it (`xray-run --local` or `xray-autoinst daemon`)\n"
        )
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    def announce(url: str) -> None:
        sys.stderr.write(f"xray-autoinst ui: console of {store} on {url} (Ctrl-C stops it)\n")
        sys.stderr.flush()

    port = ui.DEFAULT_PORT if args.port is None else args.port
    parent = os.getppid() if args.exit_with_parent else None
    try:
        return ui.run(store, args.bind, port, stop, announce,
                      fallback=args.any_port_if_busy or args.port is None, parent=parent)
    except OSError as exc:
        sys.stderr.write(
            f"xray-autoinst ui: cannot listen on {args.bind}:{port}: {exc.strerror or exc}\n"
        )
        return 1


def main_ui(argv: list[str]) -> int:
    return _run(ui_main, argv)


def main_traces(argv: list[str]) -> int:
    return _run(traces_main, argv)


def main_trace(argv: list[str]) -> int:
    return _run(trace_main, argv)


def main_map(argv: list[str]) -> int:
    return _run(map_main, argv)


COMMANDS = {
    "daemon": main_daemon, "traces": main_traces, "trace": main_trace, "map": main_map,
    "ui": main_ui,
}
