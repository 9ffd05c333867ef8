"""The daemon's log lines on stderr: ``2025-01-31 14:00:00 xray-autoinst daemon: ...``.

Its own module, standard library only, so that every process of the daemon (the daemon, its
store writer, its console) sets up the same format without importing the command line.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("xray_autoinst.daemon")


class _DaemonFormatter(logging.Formatter):
    def format(self, record):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        text = f"{stamp} xray-autoinst daemon: {level}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(level: str) -> None:
    """The ``xray_autoinst.daemon`` logger to stderr at ``level`` (debug, info, ...)."""
    for handler in list(log.handlers):
        log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_DaemonFormatter())
    log.addHandler(handler)
    log.setLevel(level.upper())
    log.propagate = False


def current_level() -> str:
    """The level set by ``setup_logging``, as it takes it (a forked child sets it again)."""
    return logging.getLevelName(log.level).lower()
