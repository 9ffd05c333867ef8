import os
import re
import time

from xray_autoinst.core import ids


def test_formats():
    t = ids.trace_id()
    assert re.fullmatch(r"1-[0-9a-f]{8}-[0-9a-f]{24}", t)
    assert abs(int(t[2:10], 16) - time.time()) < 5
    assert re.fullmatch(r"[0-9a-f]{16}", ids.entity_id())


def test_unique():
    assert len({ids.entity_id() for _ in range(20000)}) == 20000
    assert len({ids.trace_id() for _ in range(20000)}) == 20000


def _ids_in_child(use_os_fork: bool):
    r, w = os.pipe()
    pid = os.fork() if use_os_fork else _raw_fork()
    if pid == 0:
        if not use_os_fork:
            # a C fork runs no os.register_at_fork hook: the uWSGI integration's post-fork
            # hook does this, and the emitter's PID check does it for any other C fork
            from xray_autoinst.core.emitter import Emitter

            Emitter(("127.0.0.1", 9)).check_fork()
        os.close(r)
        os.write(w, (",".join(ids.entity_id() for _ in range(50))).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return set(data.decode().split(","))


def _raw_fork():
    """A fork that skips os.register_at_fork hooks, as uWSGI's C fork does."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.fork()


def test_emitter_pid_check_reseeds_ids_after_a_c_fork():
    from xray_autoinst.core.emitter import Emitter

    em = Emitter(("127.0.0.1", 9))
    assert em.check_fork() is False
    em._pid = ids.pid = -1  # as seen from a C-forked child
    before = ids._rng.getstate()
    assert em.check_fork() is True
    assert ids._rng.getstate() != before


def test_children_never_repeat_parent_ids_even_without_fork_hooks():
    ids.entity_id()  # the parent's generator has state
    for use_os_fork in (True, False):
        a = _ids_in_child(use_os_fork)
        b = _ids_in_child(use_os_fork)
        parent = {ids.entity_id() for _ in range(50)}
        assert len(a) == 50 and len(b) == 50
        assert not (a & b) and not (a & parent) and not (b & parent)
