"""``python -m xray_autoinst.daemon [daemon|traces|trace|map|ui] ARGS...`` (default: daemon)."""

import sys

from xray_autoinst.daemon.cli import COMMANDS, main_daemon

args = sys.argv[1:]
if args and args[0] in COMMANDS:
    sys.exit(COMMANDS[args[0]](args[1:]))
sys.exit(main_daemon(args))
