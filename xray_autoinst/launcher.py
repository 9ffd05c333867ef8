"""``xray-run [--check] [--local [--ui]] [--] COMMAND [ARGS...]``

Edits the environment and replaces itself with COMMAND (``os.execvp``): same PID, exit code,
argv and signals as running the command directly. Imports nothing but ``os`` and ``sys`` on the
way to ``exec`` (``shutil`` alone costs milliseconds).
"""

import os
import sys

USAGE = """usage: xray-run [--check] [--local [--ui]] [--] COMMAND [ARGS...]

Runs COMMAND with AWS X-Ray tracing: every Python interpreter it starts from this installation
loads the xray-autoinst start-up hook. Configuration comes from environment variables
(XRAY_SERVICE_NAME, AWS_XRAY_DAEMON_ADDRESS, ...; see `xray-run --check`).

  --check   print the effective configuration and integrations, run nothing; with a
            COMMAND: also its interpreter (traced or not) and the service name it gets;
            exits 1 when a setting is invalid or COMMAND would not be traced
  --local   make sure a local xray-autoinst daemon (store mode) is running first
  --ui      with --local: a daemon started now also serves the browser console
"""


def bootstrap_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    packaged = os.path.join(here, "_startup")
    if os.path.isfile(os.path.join(packaged, "sitecustomize.py")):
        return packaged
    # a source checkout (editable install): <repo>/sitecustomize
    return os.path.join(os.path.dirname(here), "sitecustomize")


def expected_interpreter():
    return "%s|%d.%d" % (sys.prefix, sys.version_info[0], sys.version_info[1])


def prepare_environ(environ):
    """Prepend the bootstrap directory to PYTHONPATH (once) and record the interpreter."""
    boot = bootstrap_dir()
    current = environ.get("PYTHONPATH", "")
    parts = [p for p in current.split(os.pathsep) if p]
    if boot not in parts:
        environ["PYTHONPATH"] = os.pathsep.join([boot] + parts)
    environ["XRAY_AUTOINST_EXPECT"] = expected_interpreter()
    return environ


def main(argv=None, prog="xray-run"):
    args = list(sys.argv[1:] if argv is None else argv)
    check = local = ui = False
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt == "--":
            break
        if opt == "--check":
            check = True
        elif opt == "--local":
            local = True
        elif opt == "--ui":
            ui = True
        elif opt in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        elif opt == "--version":
            from . import __version__

            sys.stdout.write("xray-autoinst %s\n" % __version__)
            return 0
        else:
            sys.stderr.write("%s: unknown option %s\n%s" % (prog, opt, USAGE))
            return 2
    if check:
        from .check import main as check_main

        return check_main(args)  # a COMMAND after --check is described, never run
    if not args:
        sys.stderr.write(USAGE)
        return 2
    if ui and not local:
        sys.stderr.write("%s: --ui goes with --local\n" % prog)
        return 2
    environ = os.environ
    if local:
        from .daemon_address import parse_daemon_address

        try:
            from .daemon.local import ensure_local_daemon
        except ImportError:
            sys.stderr.write("%s: --local needs the local daemon (xray_autoinst.daemon)\n" % prog)
            return 2
        value = environ.get("AWS_XRAY_DAEMON_ADDRESS", "").strip() or "127.0.0.1:2000"
        try:
            udp, tcp = parse_daemon_address(value)
        except ValueError:
            sys.stderr.write(
                "%s: AWS_XRAY_DAEMON_ADDRESS=%r is not valid: expected host:port or "
                "'udp:host:port tcp:host:port'\n" % (prog, value)
            )
            return 2
        line = ensure_local_daemon(udp, tcp, None, dict(environ), ui=ui)
        sys.stderr.write(line.rstrip("\n") + "\n")
    prepare_environ(environ)
    try:
        os.execvp(args[0], args)
    except FileNotFoundError:
        sys.stderr.write("%s: command not found: %s\n" % (prog, args[0]))
        return 127
    except PermissionError:
        sys.stderr.write("%s: permission denied: %s\n" % (prog, args[0]))
        return 126
    except OSError as exc:
        sys.stderr.write("%s: cannot run %s: %s\n" % (prog, args[0], exc.strerror))
        return 126
