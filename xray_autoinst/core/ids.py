"""Trace and entity ids from a fast generator that never repeats across processes.

The generator is reseeded from ``os.urandom`` in every new process: by ``os.register_at_fork``
for Python's own forks (os.fork, multiprocessing, gunicorn), by the uWSGI integration's
post-fork hook for uWSGI's C fork (where ``os.register_at_fork`` hooks never run), and by the
emitter whenever it sees the PID change. ``os.getpid()`` is a real system call (0.5 us here,
more than the whole unsampled request budget), so it is not checked per id.
"""

import os
import random
import time

_rng = random.Random(os.urandom(32))
_bits = _rng.getrandbits
_time = time.time
pid = os.getpid()


# Ids are cut from pools of random hex made in bulk: one getrandbits and one hex() per 128
# ids costs far less than formatting each id (0.36 us for a 96-bit id here).
_POOL = 128
_trace_pool: list = []
_entity_pool: list = []
# the second the trace id prefix was made for: [_start, _next)
_start = 0.0
_next = 0.0
_prefix = ""


def reseed() -> None:
    global pid
    _rng.seed(os.urandom(32))
    _trace_pool.clear()
    _entity_pool.clear()
    pid = os.getpid()


def _refill(pool, nbytes):
    # bytes.hex with a separator every ``nbytes`` bytes, then split: the ids are cut in C
    # (a slice per id in a comprehension cost ~1 500 instructions an id)
    pool[:] = _bits(nbytes * 8 * _POOL).to_bytes(nbytes * _POOL, "big").hex(" ", nbytes).split()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reseed)


def entity_id() -> str:
    """16 hex digits."""
    try:
        return _entity_pool.pop()
    except IndexError:
        _refill(_entity_pool, 8)
        return _entity_pool.pop()


def trace_id(now=None) -> str:
    """``1-<8 hex epoch seconds>-<24 hex>``."""
    global _start, _next, _prefix
    if now is None:
        now = _time()
    # two float comparisons tell whether ``now`` is still in the prefix's second: a floor
    # division (``// 1``, an fmod inside) was ~350 instructions a call, int() a type call more
    if not _start <= now < _next:
        second = now // 1
        _prefix = "1-%08x-" % int(second)
        _start = second
        _next = second + 1.0
    try:
        return _prefix + _trace_pool.pop()
    except IndexError:
        _refill(_trace_pool, 12)
        return _prefix + _trace_pool.pop()
