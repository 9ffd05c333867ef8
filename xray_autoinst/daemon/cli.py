"""``xray-autoinst daemon | traces | trace | map | ui``: argument parsers and ``main_*``.

What the commands do lives beside: the daemon process in ``lifecycle.py`` (pid file, stop,
status, signals, detach) and ``server.py``, the views in ``views.py`` and ``servicemap.py``, the
browser console in ``ui.py`` and ``console.py``, the log format in ``logsetup.py``.

Every environment variable these commands read is named here, and read only through the
``environ`` mapping handed to the parsers (tests pass their own).
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import signal
import sys
import time

from xray_autoinst.daemon import lifecycle, local, logsetup

# Environment variables (their defaults are in docs/daemon.md).
DAEMON_ADDRESS = "AWS_XRAY_DAEMON_ADDRESS"  # --listen default
ENDPOINT_URL = "AWS_ENDPOINT_URL_XRAY"  # --endpoint-url default (botocore reads it too)
SAMPLING_RULES = "XRAY_SAMPLING_RULES"  # local rules for the sampling proxy
XDG_DATA_HOME = "XDG_DATA_HOME"  # store default: $XDG_DATA_HOME/xray-autoinst/traces.db
NO_COLOR = "NO_COLOR"  # views: no ANSI colors


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


def daemon_main(argv: list[str], environ=None) -> int:
    environ = os.environ if environ is None else environ
    args = daemon_parser().parse_args(argv)
    logsetup.setup_logging(args.log_level)
    store_for_files = _store_path(args, environ)
    if args.stop:
        return lifecycle.stop_daemon(store_for_files, args.drain_timeout + 10)
    if args.status:
        return lifecycle.show_status(store_for_files)
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
    return lifecycle.start(settings, store_for_files, detach=args.detach, ui=ui,
                           store_named=args.store is not None)


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


def _moment(p, text, option="--since"):
    """``parse_since`` of an option's value (None when it is not given); a bad value is the
    parser's usage error, naming ``option``."""
    if not text:
        return None
    try:
        return parse_since(text)
    except ValueError as exc:
        p.error(str(exc).replace("--since", option))


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


def _show(args, environ, render, data, as_json=None) -> int:
    """Write a view's result: with --json its JSON (of ``as_json(data)`` when given), else
    ``render(data)`` at the output's width and style."""
    from xray_autoinst.daemon import views

    if args.json:
        sys.stdout.write(views.dumps(data if as_json is None else as_json(data)))
    else:
        sys.stdout.write(render(data, width=_width(args), style=_style(environ)))
    return 0


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
    since = _moment(p, args.since)
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

    return _show(args, environ, views.render_traces, summaries, views.traces_json)


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
    return _show(args, environ, views.render_trace, merged)


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
    since = _moment(p, args.since)
    until = _moment(p, args.until, "--until")
    from xray_autoinst.daemon import servicemap, views
    from xray_autoinst.daemon.tree import merged_trace

    store = _open_store(_store_path(args, environ))
    traces = []
    if store is not None:
        try:
            for trace_id in store.trace_ids(since=since, until=until, limit=args.limit):
                traces.append(merged_trace(trace_id, store.documents(trace_id)))
        finally:
            store.close_reader()
    graph = servicemap.build_map(traces)
    if args.service:
        graph = servicemap.focus_map(graph, args.service)
    if args.dot:  # (not with --json: refused above)
        sys.stdout.write(views.render_dot(graph))
        return 0
    return _show(args, environ, views.render_map, graph)


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
    stop = lifecycle.stop_event(signal.SIGTERM, signal.SIGINT)

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
