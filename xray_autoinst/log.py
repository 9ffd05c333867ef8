"""The agent's own logging: logger ``xray_autoinst``, to stderr, never the application's stdout.

``logging`` is imported on first use: the start-up path of a process that never logs stays free
of it.
"""


import sys
import time

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
_last: dict = {}
_level = None  # None: XRAY_LOG_LEVEL as parsed by the bootstrap, else WARNING
_logger = None


def configure(level: str = "warning") -> None:
    global _level
    _level = level.upper()
    if _logger is not None:
        _logger.setLevel(_level)


def _configured_level():
    if _level is not None:
        return _level
    boot = sys.modules.get("xray_autoinst.bootstrap")
    cfg = getattr(boot, "_config_obj", None)
    return cfg.log_level.upper() if cfg is not None else "WARNING"


def get():
    """The ``xray_autoinst`` logger, with its stderr handler."""
    global _logger
    if _logger is None:
        import logging

        logger = logging.getLogger("xray_autoinst")
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("xray-autoinst: %(levelname)s: %(message)s"))
            logger.addHandler(handler)
            logger.propagate = False
        logger.setLevel(_configured_level())
        _logger = logger
    return _logger


class _Lazy:
    def __getattr__(self, name):
        return getattr(get(), name)


log = _Lazy()


def limited(key: str, level: int, msg: str, *args, interval: float = 60.0, exc_info=None) -> None:
    """Log at most once per ``interval`` seconds for ``key``."""
    now = time.monotonic()
    last = _last.get(key)
    if last is not None and now - last < interval:
        return
    _last[key] = now
    get().log(level, msg, *args, exc_info=exc_info)


def once(key: str, level: int, msg: str, *args, exc_info=None) -> None:
    if key in _last:
        return
    _last[key] = 0.0
    get().log(level, msg, *args, exc_info=exc_info)
