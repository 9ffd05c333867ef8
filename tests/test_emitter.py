"""The UDP emitter against real loopback sockets: a socket connected once per process, the
daemon down (ECONNREFUSED counted, never raised, nothing lost once it is back), a fork, a
hostname, IPv6, and the sender thread's batching (one wake-up per interval, idle when traffic
stops, every document within the interval)."""

import json
import logging
import os
import socket
import threading
import time

import pytest
from xray_testing import HEADER, skip_or_fail, validate

from xray_autoinst.core import emitter as emitter_mod
from xray_autoinst.core import ids
from xray_autoinst.core.emitter import Emitter
from xray_autoinst.core.entities import Segment


def segment(name="s"):
    now = time.time()
    seg = Segment(name, ids.trace_id(now), None, start_time=now)
    seg.end_time = now + 0.001
    return seg


def names(daemon):
    return sorted(d["name"] for d in daemon.documents)


def closed_port(family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def receive(sock, count, timeout=5.0):
    """The names of ``count`` documents arriving on ``sock``."""
    sock.settimeout(timeout)
    out = []
    while len(out) < count:
        data = sock.recv(70000)
        assert data.startswith(HEADER)
        out.append(json.loads(data[len(HEADER):])["name"])
    return sorted(out)


def test_documents_go_out_through_one_connected_socket(daemon):
    em = Emitter(("127.0.0.1", daemon.port))
    for i in range(5):
        em.submit(segment(f"doc{i}"))
    daemon.wait(5, timeout=5)
    assert names(daemon) == [f"doc{i}" for i in range(5)]
    for d in daemon.documents:
        validate(d)
    assert em._sock.getpeername() == ("127.0.0.1", daemon.port)
    sock = em._sock
    assert em.send_document('{"name": "direct"}') is True
    em.submit(segment("later"))
    daemon.wait(7, timeout=5)
    assert em._sock is sock  # connected once, not per document
    em.flush()  # waits for the sender's batch, counted at its end
    assert (em.sent, em.errors, em.dropped, em.refused) == (7, 0, 0, 0)


def test_every_datagram_is_the_header_and_one_document(daemon):
    em = Emitter(("127.0.0.1", daemon.port))
    em.submit(segment())
    em.flush()
    daemon.wait(1, timeout=5)
    [data] = daemon.datagrams
    assert data.startswith(HEADER)
    assert json.loads(data[len(HEADER):])["name"] == "s"


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def agent_log():
    """The records the agent's logger writes, at every level."""
    logger = emitter_mod._log.get()
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_daemon_down_is_counted_once_said_and_nothing_lost_when_it_is_back(agent_log):
    port = closed_port()
    em = Emitter(("127.0.0.1", port))
    emitter_mod._log._last.pop("refused", None)
    for i in range(6):
        assert em.send_document('{"name": "lost%d"}' % i) is True  # sent, to nobody
        time.sleep(0.01)  # the ICMP port unreachable comes back
    assert em.refused >= 2 and em.errors == 0
    said = [r for r in agent_log if "connection refused" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO
    # the daemon starts on that port: the very next documents arrive (the send the kernel
    # refused for the last ICMP is made again)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as back:
        back.bind(("127.0.0.1", port))
        for i in range(3):
            em.submit(segment(f"back{i}"))
        em.flush()
        assert receive(back, 3) == ["back0", "back1", "back2"]
    assert em.errors == 0


def test_daemon_down_never_reaches_the_sender_thread_as_an_exception():
    em = Emitter(("127.0.0.1", closed_port()))
    for i in range(20):
        em.submit(segment(f"d{i}"))
        time.sleep(0.005)
    deadline = time.monotonic() + 5
    while em.sent < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert em.sent == 20 and em.errors == 0 and em.refused >= 1
    assert em._thread.is_alive()


def test_a_send_error_is_counted_and_a_new_socket_opened_for_the_next(daemon):
    em = Emitter(("127.0.0.1", daemon.port))
    assert em.send_document('{"name": "first"}')
    sock = em._sock
    assert em.send_document("x" * 70000) is False  # EMSGSIZE: counted, never raised
    assert em.errors == 1
    assert em.send_document('{"name": "second"}')
    assert em._sock is not sock
    daemon.wait(2, timeout=5)
    assert names(daemon) == ["first", "second"]


def test_a_hostname_is_resolved_in_the_background_then_connected(daemon):
    em = Emitter(("localhost", daemon.port))
    assert em._addr is None
    em.start_resolution()
    deadline = time.monotonic() + 10
    while em._addr is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if em._family != socket.AF_INET:
        skip_or_fail("localhost resolves to IPv6 first here; the fake daemon is IPv4")
    em.submit(segment("by-name"))
    daemon.wait(1, timeout=5)
    assert names(daemon) == ["by-name"]
    assert em._sock.getpeername()[0] == "127.0.0.1"


def _ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_an_ipv6_daemon_address():
    rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    rx.bind(("::1", 0))
    rx.settimeout(5)
    try:
        em = Emitter(("::1", rx.getsockname()[1]))
        em.submit(segment("v6"))
        em.flush()
        assert receive(rx, 1) == ["v6"]
        assert em._sock.family == socket.AF_INET6
    finally:
        rx.close()


def test_a_route_that_connect_refuses_falls_back_to_sendto(monkeypatch, daemon):
    em = Emitter(("127.0.0.1", daemon.port))
    real = emitter_mod.socket.socket

    class NoConnect:
        def __init__(self, *a):
            self._s = real(*a)

        def connect(self, addr):
            raise OSError(101, "Network is unreachable")

        def __getattr__(self, name):
            return getattr(self._s, name)

    monkeypatch.setattr(emitter_mod.socket, "socket", NoConnect)
    em.submit(segment("unconnected"))
    em.flush()
    daemon.wait(1, timeout=5)
    assert names(daemon) == ["unconnected"] and em.errors == 0


def test_a_forked_child_gets_its_own_socket_and_sender(daemon):
    em = Emitter(("127.0.0.1", daemon.port))
    em.submit(segment("parent"))
    em.flush()
    daemon.wait(1, timeout=5)
    parent_sock, parent_thread = em._sock, em._thread
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(r)
            fresh = em._sock is None and em._thread is None and not em._queue
            for i in range(3):
                em.submit(segment(f"child{i}"))
            deadline = time.monotonic() + 5
            while em.sent < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            own = em._sock is not parent_sock and em._thread is not parent_thread
            os.write(w, json.dumps([fresh, own, em.sent]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    out = b""
    while chunk := os.read(r, 1000):
        out += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert json.loads(out) == [True, True, 4]  # the counters go on from the parent's
    daemon.wait(4, timeout=5)
    assert names(daemon) == ["child0", "child1", "child2", "parent"]
    em.submit(segment("parent-again"))  # the parent's own sender and socket go on
    daemon.wait(5, timeout=5)
    assert em._sock is parent_sock and em._thread is parent_thread


def test_the_sender_wakes_once_an_interval_and_sleeps_when_traffic_stops(daemon, monkeypatch):
    wakes = []
    real_sleep = time.sleep

    class CountingTime:
        @staticmethod
        def sleep(s):
            wakes.append(s)
            real_sleep(s)

        monotonic = staticmethod(time.monotonic)

    monkeypatch.setattr(emitter_mod, "time", CountingTime)
    em = Emitter(("127.0.0.1", daemon.port))
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 0.5:  # ~1 000 documents over 10 intervals
        em.submit(segment(f"b{n}"))
        n += 1
        real_sleep(0.0005)
    daemon.wait(n, timeout=10)
    elapsed = time.monotonic() - t0
    assert len(daemon.documents) == n
    # one sleep per interval (plus the empty one that ends it), however many documents
    assert len(wakes) <= elapsed / emitter_mod.INTERVAL + 3, (len(wakes), n)
    real_sleep(emitter_mod.INTERVAL * 3)
    assert em._idle is True
    idle = len(wakes)
    real_sleep(emitter_mod.INTERVAL * 4)
    assert len(wakes) == idle  # idle: no wake-up at all
    # the next document wakes it, and arrives within the interval (plus scheduling slack)
    t1 = time.monotonic()
    em.submit(segment("after-idle"))
    daemon.wait(n + 1, timeout=5)
    assert time.monotonic() - t1 < emitter_mod.INTERVAL + 0.5


def test_producers_racing_the_sender_going_idle_lose_nothing(daemon):
    em = Emitter(("127.0.0.1", daemon.port))
    total = 0
    lock = threading.Lock()

    def produce(k):
        nonlocal total
        for i in range(200):
            em.submit(segment(f"t{k}-{i}"))
            with lock:
                total += 1
            if i % 20 == 0:  # gaps long enough for the sender to go idle now and then
                time.sleep(emitter_mod.INTERVAL * 1.2)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    daemon.wait(800, timeout=20)
    assert len(daemon.documents) == total == 800
    assert len({d["id"] for d in daemon.documents}) == 800


def test_flush_sends_what_is_queued_at_once(daemon):
    em = Emitter(("127.0.0.1", daemon.port))
    for i in range(50):
        em.submit(segment(f"q{i}"))
    em.flush()  # before the sender's interval ends
    assert em.sent == 50 and not em._queue


def test_a_full_queue_drops_and_counts(monkeypatch):
    monkeypatch.setattr(emitter_mod, "QUEUE_MAX", 100)
    em = Emitter(("127.0.0.1", closed_port()))
    em._idle = False  # a sender that never drains: nothing takes documents off the queue
    em._thread = threading.current_thread()
    for _ in range(150):
        em.submit(segment())
    # full at the first length submit() looks at from QUEUE_MAX on (every 64th: 127)
    assert len(em._queue) == 127 and em.dropped == 23
    em._queue.popleft()  # the sender takes one: room for one
    em.submit(segment())
    em.submit(segment())
    assert len(em._queue) == 127 and em.dropped == 24


def test_a_sender_that_died_is_started_again():
    em = Emitter(("127.0.0.1", closed_port()))
    em._idle = False
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    em._thread = dead
    for _ in range(emitter_mod.CHECK_EVERY + 1):
        em.submit(segment())
    assert em._thread is not dead and em._thread.is_alive()
    em.flush()
    assert em.sent == emitter_mod.CHECK_EVERY + 1


def test_a_dead_sender_is_started_again_even_when_the_queue_is_full(monkeypatch):
    monkeypatch.setattr(emitter_mod, "QUEUE_MAX", 100)
    em = Emitter(("127.0.0.1", closed_port()))
    em._idle = False
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    em._thread = dead
    for _ in range(127):
        em._queue.append(segment())
    em.submit(segment())  # dropped, but a sender runs again and empties the queue
    assert em.dropped == 1 and em._thread is not dead and em._thread.is_alive()
    deadline = time.monotonic() + 5
    while em._queue and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not em._queue


def test_synchronous_mode_sends_from_the_calling_thread(daemon):
    em = Emitter(("127.0.0.1", daemon.port))
    em.synchronous = True
    em.submit(segment("inline"))
    assert em.sent == 1 and em._thread is None
    daemon.wait(1, timeout=5)
