"""``xray-autoinst SUBCOMMAND``: run, check, daemon, traces, trace, map, ui, lambda-layer."""

import sys

USAGE = """usage: xray-autoinst COMMAND [ARGS...]

commands:
  run [--local] [--] CMD ...   run CMD traced (same as xray-run)
  check [CMD ...]              print the effective configuration and integrations (and
                               what CMD would get, without running it)
  daemon [...]                 local X-Ray daemon: store traces, relay with --forward
  traces [...]                 list stored traces
  trace TRACE_ID               show one trace as a timeline
  map                          show the service map of stored traces
  ui [--port N] [--bind HOST]  the X-Ray console in the browser (traces, timeline, map)
  lambda-layer -o LAYER.zip    build an AWS Lambda layer (exec wrapper /opt/xray-run)
"""

_DAEMON_COMMANDS = {
    "daemon": "main_daemon",
    "traces": "main_traces",
    "trace": "main_trace",
    "map": "main_map",
    "ui": "main_ui",
}


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd == "--version":
        from . import __version__

        sys.stdout.write("xray-autoinst %s\n" % __version__)
        return 0
    if cmd in ("run", "_xray-run"):  # _xray-run: the shell launcher handing over
        from .launcher import main as run

        return run(rest, prog="xray-run" if cmd == "_xray-run" else "xray-autoinst run")
    if cmd == "check":
        from .check import main as check

        return check(rest)
    if cmd == "lambda-layer":
        from .lambda_layer import main as lambda_layer

        return lambda_layer(rest)
    if cmd in _DAEMON_COMMANDS:
        from .daemon import cli as daemon_cli

        return getattr(daemon_cli, _DAEMON_COMMANDS[cmd])(rest)
    sys.stderr.write("xray-autoinst: unknown command %r\n%s" % (cmd, USAGE))
    return 2
