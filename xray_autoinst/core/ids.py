"""Trace and entity ids from a fast generator that never repeats across processes.

``random.Random`` is reseeded by ``os.register_at_fork`` for the module's global instance only,
and uWSGI forks in C where those hooks never run, so this generator checks the PID on use and
reseeds from ``os.urandom`` in a new process.
"""

from __future__ import annotations

import os
import random
import time

_rng = random.Random(os.urandom(32))
_pid = os.getpid()
_bits = _rng.getrandbits


def _reseed() -> None:
    global _pid
    _rng.seed(os.urandom(32))
    _pid = os.getpid()


def _check_fork() -> None:
    if os.getpid() != _pid:
        _reseed()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def entity_id() -> str:
    """16 hex digits."""
    if os.getpid() != _pid:
        _reseed()
    return "%016x" % _bits(64)


def trace_id(now: float | None = None) -> str:
    """``1-<8 hex epoch seconds>-<24 hex>``."""
    if os.getpid() != _pid:
        _reseed()
    return "1-%08x-%024x" % (int(time.time() if now is None else now), _bits(96))
