"""UDP emitter speaking the daemon protocol, off the request's critical path.

A request thread only appends the finished entity to a bounded queue; a daemon thread encodes
it and sends one datagram per document. The sender polls while there is traffic and sleeps on an
event when idle (the producer wakes it only then), so a busy service pays no wake-up per request.
The queue is bounded (drops are counted), the thread restarts lazily after a fork (the PID is
checked on use: uWSGI forks in C where ``os.register_at_fork`` hooks never run), and ``flush``
drains it at exit. A hostname that does not resolve yet is retried in the background, never per
request; errors are logged at most once a minute.
"""

from __future__ import annotations

# the C module: socket.py would add selectors, array and enum conversions (1.5-3 ms at start-up
# here, in every traced process; AWS Lambda's runtime client never imports it)
import _socket as socket
import collections
import os
import threading
import time
import weakref

from .. import log as _log
from . import encoder, ids

QUEUE_MAX = 10000
POLL = 0.005  # seconds between drains while busy
IDLE_POLLS = 200  # ~1 s without traffic: sleep until woken
RESOLVE_RETRY = 5.0


def _is_ip(host):
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(fam, host)
            return fam
        except OSError:
            pass
    return None


class Emitter:
    def __init__(self, address: tuple[str, int]):
        self.host, self.port = address
        self.sent = 0
        self.dropped = 0
        self.errors = 0
        self._addr = None
        self._family = _is_ip(self.host)
        if self._family is not None:
            self._addr = (self.host, self.port)
        self._lock = threading.Lock()
        # send inline, from the request's thread (uWSGI without threads: no thread would run)
        self.synchronous = False
        self._init_process()
        _emitters.add(self)

    # -- per process state -------------------------------------------------------------------
    def _init_process(self):
        self._pid = os.getpid()
        self._queue = collections.deque()
        self._sock = None
        self._thread = None
        self._idle = True
        self._wake = threading.Event()
        self._resolver = None
        # held while a batch is encoded and sent, so flush() at exit cannot return while the
        # sender still holds a document it has taken from the queue
        self._drain_lock = threading.Lock()

    def _socket(self):
        sock = self._sock
        if sock is None:
            sock = socket.socket(self._family or socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._sock = sock
        return sock

    def _start_thread(self):
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            t = threading.Thread(target=self._run, name="xray-autoinst-emitter", daemon=True)
            t._xray_autoinst_internal = True
            self._thread = t
            t.start()
        from . import resources

        resources.start_pending()  # where the service runs, if a fork deferred its detection

    # -- producer side (request threads) -----------------------------------------------------
    def check_fork(self) -> bool:
        """Start afresh if this is a new process (a C fork no hook told us about)."""
        pid = os.getpid()
        if ids.pid != pid:
            ids.reseed()
        if self._pid != pid:
            self._init_process()
            return True
        return False

    def submit(self, entity) -> None:
        # The PID is checked only where it is cheap to afford: when the sender must be woken
        # (rare under load) or when documents pile up (no sender runs in this process).
        q = self._queue
        if self.synchronous:
            self.check_fork()
            self._drain(collections.deque((entity,)))
            return
        if len(q) >= 64 and self.check_fork():
            q = self._queue
        if len(q) >= QUEUE_MAX:
            self.dropped += 1
            _log.limited("queue-full", _log.WARNING,
                         "emitter queue full (%d); dropping documents", QUEUE_MAX)
            return
        q.append(entity)
        if self._idle:
            if self.check_fork():
                self._queue.append(entity)
            self._idle = False
            if self._thread is None:
                self._start_thread()
            else:
                self._wake.set()

    # -- sender thread -----------------------------------------------------------------------
    def _run(self):
        idle = 0
        q = self._queue
        while True:
            if q:
                idle = 0
                with self._drain_lock:
                    self._drain(q)
            else:
                idle += 1
                if idle >= IDLE_POLLS:
                    self._idle = True
                    if q:  # raced with a producer that saw _idle False
                        self._idle = False
                        continue
                    self._wake.wait()
                    self._wake.clear()
                    idle = 0
                    continue
                time.sleep(POLL)

    def _drain(self, q):
        while q:
            try:
                entity = q.popleft()
            except IndexError:
                return
            try:
                docs = encoder.documents(entity)
            except Exception:  # noqa: BLE001 - never let the sender die
                self.errors += 1
                _log.limited("encode", _log.WARNING, "could not encode a document",
                             exc_info=True)
                continue
            for doc in docs:
                self.send_document(doc)

    def send_document(self, doc: str) -> bool:
        """Send one document now (any thread)."""
        addr = self._addr
        if addr is None:
            self._resolve_later()
            self.dropped += 1
            return False
        data = encoder.datagram(doc)
        try:
            self._socket().sendto(data, addr)
            self.sent += 1
            return True
        except OSError as exc:
            self.errors += 1
            _log.limited(
                "send", _log.WARNING,
                "cannot send to the X-Ray daemon at %s:%s (%s); the application is unaffected",
                self.host, self.port, exc,
            )
            return False

    def _resolve_later(self):
        if self._resolver is not None and self._resolver.is_alive():
            return
        t = threading.Thread(target=self._resolve_loop, name="xray-autoinst-resolve", daemon=True)
        t._xray_autoinst_internal = True
        self._resolver = t
        t.start()

    def _resolve_loop(self):
        while self._addr is None:
            try:
                info = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_DGRAM)
                fam, _, _, _, sockaddr = info[0]
                self._family = fam
                self._sock = None
                self._addr = sockaddr[:2] if fam == socket.AF_INET else sockaddr
                return
            except OSError as exc:
                _log.limited(
                    "resolve", _log.WARNING,
                    "daemon address %s does not resolve yet (%s); retrying in the background "
                    "(set AWS_XRAY_DAEMON_ADDRESS to fix it)", self.host, exc,
                )
                time.sleep(RESOLVE_RETRY)

    def start_resolution(self):
        if self._addr is None:
            self._resolve_later()

    def flush(self, timeout: float = 2.0) -> None:
        """Send everything queued, from the calling thread (used at exit and in tests)."""
        if self.check_fork():
            return
        if not self._drain_lock.acquire(timeout=timeout):
            return
        try:
            self._drain(self._queue)
        finally:
            self._drain_lock.release()


_emitters: weakref.WeakSet[Emitter] = weakref.WeakSet()


def after_fork_in_child() -> None:
    """A new process: every emitter gets its own queue, socket and sender thread."""
    for emitter in list(_emitters):
        emitter._init_process()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=after_fork_in_child)
