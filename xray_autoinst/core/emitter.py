"""UDP emitter speaking the daemon protocol, off the request's critical path.

A request thread only appends the finished entity to a bounded queue; a daemon thread encodes
what has gathered and sends one datagram per document, at most ``INTERVAL`` after it was queued.
While documents keep coming the sender wakes once an interval and drains everything queued; an
interval with nothing queued sends it to sleep on a lock, which the next document releases (the
only wake-up a request thread ever pays for). The queue is bounded (drops are counted), the
thread restarts lazily after a fork (the PID is checked on use: uWSGI forks in C where
``os.register_at_fork`` hooks never run), and ``flush`` drains it at exit.

The socket is connected to the daemon once per process (``send`` then skips the address lookup
``sendto`` pays for every datagram). A connected UDP socket reports the ICMP "port unreachable"
of an earlier datagram as ``ECONNREFUSED`` on a later send, and that send is not made: it is
counted, said once, and made again, so that no document is lost when the daemon comes back. A
hostname that does not resolve yet is retried in the background, never per request; other errors
are logged at most once a minute.
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

# documents queued at most: the queue is full at the first length submit() looks at (every
# 64th: 64k - 1) from this one on, 10 047, and stays there, looked at on every submit, until the
# sender takes documents off it
QUEUE_MAX = 10000
# the longest a document waits before the sender takes it (plus the time to encode the batch):
# one wake-up per interval however many documents came, none at all once traffic stops
INTERVAL = 0.05
# submit() looks at the queue when its length is 63 modulo this (a literal there: a mask is the
# cheapest test): the PID (a C-forked child, with no sender of its own, finds out within 64
# documents), whether the sender still runs, whether the queue is full
CHECK_EVERY = 64
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
        self.refused = 0  # sends the kernel refused: no daemon listened when an earlier arrived
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
        self._send = None  # data -> None: the socket's send, or sendto when it is unconnected
        self._thread = None
        self._idle = True
        # held by the sender while it sleeps idle; the producer that finds it idle releases it
        self._wake = threading.Lock()
        self._resolver = None
        # held while a batch is encoded and sent, so flush() at exit cannot return while the
        # sender still holds a document it has taken from the queue
        self._drain_lock = threading.Lock()

    def _sender(self):
        """The process's send function (opened on first use), or None: no address yet."""
        send = self._send
        if send is not None:
            return send
        addr = self._addr
        if addr is None:
            self._resolve_later()
            return None
        with self._lock:
            if self._send is None:
                sock = socket.socket(self._family or socket.AF_INET, socket.SOCK_DGRAM)
                sock.setblocking(False)
                try:
                    sock.connect(addr)  # no packet: sets the peer, checks there is a route
                    send = sock.send
                except OSError as exc:
                    # the same as before connected sockets: sendto, which fails (counted) for as
                    # long as the route is missing and works once it is back
                    _log.limited(
                        "connect", _log.WARNING,
                        "cannot connect a UDP socket to the X-Ray daemon at %s:%s (%s); sending "
                        "each datagram to the address instead", self.host, self.port, exc,
                    )
                    sendto = sock.sendto

                    def send(data, sendto=sendto, addr=addr):
                        return sendto(data, addr)

                self._sock = sock
                self._send = send
            return self._send

    def _start_thread(self):
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            t = threading.Thread(target=self._run, name="xray-autoinst-emitter", daemon=True)
            t._xray_autoinst_internal = True
            self._wake = threading.Lock()  # a dead sender may have held the old one
            try:
                t.start()
                self._thread = t
            except RuntimeError:  # the interpreter is shutting down: no new thread
                t = None
                self._idle = True
        if t is None:
            self.flush()  # sent from here (the exit's own flush may have run already)
            return
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
        # (at most once an interval) or every CHECK_EVERY queued documents.
        if self.synchronous:
            self.check_fork()
            self._drain(collections.deque((entity,)))
            return
        q = self._queue
        if len(q) & 63 == 63:  # CHECK_EVERY - 1
            q = self._crowded(len(q))
            if q is None:
                return
        q.append(entity)
        if self._idle:
            if self.check_fork():
                self._queue.append(entity)
            self._idle = False
            if self._thread is None:
                self._start_thread()
            else:
                try:
                    self._wake.release()
                except RuntimeError:  # another producer woke it first
                    pass

    def _crowded(self, n):
        """Every CHECK_EVERY documents: the queue to append to, or None (the queue is full: the
        document is dropped, and its length stays where every submit looks)."""
        if self.check_fork():  # a C fork: the queue held the parent's documents
            return self._queue
        thread = self._thread
        if thread is not None and not thread.is_alive():  # never expected: start another
            self._thread = None
            self._idle = False
            self._start_thread()
        if n >= QUEUE_MAX:
            self.dropped += 1
            _log.limited("queue-full", _log.WARNING,
                         "emitter queue full (%d); dropping documents", QUEUE_MAX)
            return None
        return self._queue

    # -- sender thread -----------------------------------------------------------------------
    def _run(self):
        q = self._queue
        wake = self._wake
        sleep = time.sleep
        while True:
            wake.acquire()  # at once the first time; then until a producer releases it
            while True:
                sleep(INTERVAL)  # let the documents of the interval gather
                if not q:
                    self._idle = True
                    if not q:
                        break
                    self._idle = False  # raced with a producer that saw _idle False
                try:
                    with self._drain_lock:
                        self._drain(q)
                except Exception:  # noqa: BLE001 - never let the sender die
                    self.errors += 1
                    _log.limited("sender", _log.WARNING, "the emitter's sender failed",
                                 exc_info=True)

    def _drain(self, q):
        """Encode and send everything in ``q``, each document as one datagram."""
        send = self._sender()
        documents = encoder.documents
        header = encoder.HEADER
        sent = 0
        try:
            while q:
                try:
                    entity = q.popleft()
                except IndexError:
                    return
                try:
                    docs = documents(entity)
                except Exception:  # noqa: BLE001 - never let the sender die
                    self.errors += 1
                    _log.limited("encode", _log.WARNING, "could not encode a document",
                                 exc_info=True)
                    continue
                if send is None:
                    send = self._sender()
                    if send is None:
                        self.dropped += len(docs)
                        continue
                for doc in docs:
                    data = header + doc.encode("utf-8", "replace")  # encoder.datagram, inline
                    try:
                        send(data)
                        sent += 1
                    except OSError as exc:
                        sent += self._failed(send, data, exc)
        finally:
            self.sent += sent

    def _failed(self, send, data, exc) -> int:
        """After a send raised: 1 if the datagram went out after all, else 0 (counted)."""
        if isinstance(exc, ConnectionRefusedError):
            # an earlier datagram found no daemon listening; this one was not sent: send it
            # again (the error is cleared), so the first document after a restart arrives
            self.refused += 1
            _log.once("refused", _log.INFO,
                      "no X-Ray daemon listens at %s:%s (connection refused); documents sent "
                      "until one does are lost, the application is unaffected",
                      self.host, self.port)
            try:
                send(data)
                return 1
            except ConnectionRefusedError:  # another ICMP came back in between
                self.refused += 1
                return 0
            except OSError as again:
                exc = again
        self.errors += 1
        self._send = None  # a new socket for the next batch (the route may have changed)
        _log.limited(
            "send", _log.WARNING,
            "cannot send to the X-Ray daemon at %s:%s (%s); the application is unaffected",
            self.host, self.port, exc,
        )
        return 0

    def send_document(self, doc: str) -> bool:
        """Send one document now (any thread)."""
        send = self._send or self._sender()
        if send is None:
            self.dropped += 1
            return False
        data = encoder.datagram(doc)
        try:
            send(data)
        except OSError as exc:
            if not self._failed(send, data, exc):
                return False
        self.sent += 1
        return True

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
