"""The daemon at run time: UDP ingest, the store writer, the relay and the sampling proxy.

Threads: one receives datagrams and only queues the raw bytes (so the socket is drained as fast
as the kernel delivers); one checks and decodes them, sends batches of store rows to the writer
process (``writer.py``, which owns SQLite: decoding and writing each need about a core at 20 000
documents a second) and hands the documents to the forwarder; the forwarder sends to X-Ray; the
proxy serves the TCP port. The main thread waits for SIGTERM/SIGINT and logs a summary line
every minute.
"""

from __future__ import annotations

import errno
import gc
import ipaddress
import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass

from xray_autoinst import __version__
from xray_autoinst.daemon import protocol
from xray_autoinst.daemon.local import SERVICE, format_addr

log = logging.getLogger("xray_autoinst.daemon")

RECEIVE_BUFFER_BYTES = 16 * 1024 * 1024  # asked for; the kernel may give less
MAX_BACKLOG_BYTES = 16 * 1024 * 1024  # datagrams received but not yet decoded
MAX_BATCH = 2000
MIN_BATCH = 64
GATHER = 0.002  # seconds


@dataclass(frozen=True)
class DaemonSettings:
    udp: tuple[str, int]
    tcp: tuple[str, int]
    store: str | None  # None: --no-store
    max_traces: int
    max_bytes: int
    forward: bool
    endpoint_url: str | None
    region: str | None
    forward_buffer_bytes: int
    sampling_rules: str | None  # XRAY_SAMPLING_RULES (inline JSON or a path)
    summary_interval: float
    drain_timeout: float


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _resolve(addr: tuple[str, int], kind: int) -> tuple[int, tuple]:
    infos = socket.getaddrinfo(addr[0], addr[1], 0, kind, 0, socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def bind_udp(addr: tuple[str, int]) -> socket.socket:
    family, sockaddr = _resolve(addr, socket.SOCK_DGRAM)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if option is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER_BYTES)
                break
            except OSError:
                continue
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_tcp(addr: tuple[str, int]) -> socket.socket:
    family, sockaddr = _resolve(addr, socket.SOCK_STREAM)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(64)
    except BaseException:
        sock.close()
        raise
    return sock


class Daemon:
    def __init__(self, settings: DaemonSettings, udp_sock: socket.socket, tcp_sock: socket.socket):
        self.settings = settings
        self._udp = udp_sock
        self._tcp = tcp_sock
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = False
        self.started = time.time()
        self.writer = None
        self.forwarder = None
        self.proxy = None
        self._receiver = threading.Thread(target=self._receive, name="xray-udp", daemon=True)
        self._ingestor = threading.Thread(target=self._ingest, name="xray-ingest", daemon=True)
        # Counters; each is written by one thread only.
        self.received = 0
        self.in_bytes = 0
        self.overload = 0
        self.out_bytes = 0
        self.rejected = dict.fromkeys(protocol.REJECT_REASONS, 0)
        self.decoded = 0
        self._last_summary: dict = {}

    # -- start -----------------------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        if s.store is not None:
            from xray_autoinst.daemon.writer import WriterProcess

            self.writer = WriterProcess(
                s.store, max_traces=s.max_traces, max_bytes=s.max_bytes,
                log_level=logging.getLevelName(log.getEffectiveLevel()).lower(),
            )
        rules = None
        if s.sampling_rules:
            from xray_autoinst.core.sampling import load_rules

            try:
                rules = load_rules(s.sampling_rules)
            except ValueError as exc:
                log.warning(
                    "XRAY_SAMPLING_RULES: %s; the sampling proxy answers with the default rule",
                    exc,
                )
        if s.forward:
            from xray_autoinst.daemon import forward
            from xray_autoinst.daemon.proxy import ForwardSampling

            client = forward.make_client(region=s.region, endpoint_url=s.endpoint_url)
            self.forwarder = forward.Forwarder(
                forward.botocore_put(client), max_buffer_bytes=s.forward_buffer_bytes
            )
            proxy_client = forward.make_client(
                region=s.region, endpoint_url=s.endpoint_url, retries=2
            )
            sampling = ForwardSampling(proxy_client)
            self.region = client.meta.region_name
            self.endpoint = client.meta.endpoint_url
        else:
            from xray_autoinst.daemon.proxy import LocalSampling

            sampling = LocalSampling(rules)
        from xray_autoinst.daemon.proxy import SamplingProxy

        self.proxy = SamplingProxy(self._tcp, sampling, self.status)
        if self.forwarder is not None:
            self.forwarder.start()
        self._ingestor.start()
        self._receiver.start()
        self.proxy.start()
        gc.freeze()  # start-up objects: keep them out of the collections the decoder triggers
        self._log_start(rules is not None)

    def _log_start(self, local_rules: bool) -> None:
        s = self.settings
        rcvbuf = self._udp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        where = (
            f"store {s.store} (at most {s.max_traces} traces, {s.max_bytes // (1024 * 1024)} MiB)"
            if s.store is not None
            else "no store"
        )
        if self.forwarder is not None:
            relay = f"forwarding to X-Ray ({self.region}, {self.endpoint})"
            proxy = "sampling proxy: X-Ray"
        else:
            relay = "not forwarding"
            proxy = "sampling proxy: " + ("XRAY_SAMPLING_RULES" if local_rules else "default rule")
        log.info(
            "started, version %s (pid %d): udp %s, tcp %s (%s), %s, %s, receive buffer %d KiB",
            __version__, os.getpid(), self.udp_text, self.tcp_text, proxy, where, relay,
            rcvbuf // 1024,
        )
        for host in {s.udp[0], s.tcp[0]}:
            if not is_loopback(host):
                log.warning(
                    "listening on %s, not loopback: anything that reaches it can send traces "
                    "and use the sampling proxy", host,
                )

    @property
    def udp_text(self) -> str:
        return format_addr(self._udp.getsockname()[:2])

    @property
    def tcp_text(self) -> str:
        return format_addr(self._tcp.getsockname()[:2])

    # -- receive ---------------------------------------------------------------------------
    def _receive(self) -> None:
        recv = self._udp.recv
        put = self._queue.put
        size = protocol.RECV_BUFFER
        limit = MAX_BACKLOG_BYTES
        received = in_bytes = 0
        while True:
            try:
                data = recv(size)
            except OSError as exc:
                if self._stopping:
                    break
                if exc.errno not in (errno.EINTR, errno.EAGAIN, errno.ECONNREFUSED):
                    log.warning("udp receive failed: %s", exc)
                    time.sleep(0.01)
                continue
            if self._stopping:
                if data:  # a document that came in just before the wake-up datagram
                    self.received = received = received + 1
                    self.in_bytes = in_bytes = in_bytes + len(data)
                    put(data)
                self._drain_socket(put)
                break
            received += 1
            self.received = received
            if in_bytes - self.out_bytes > limit:
                self.overload += 1  # the decoder is too far behind: shed load here
                continue
            in_bytes += len(data)
            self.in_bytes = in_bytes
            put(data)
        put(None)

    def _drain_socket(self, put) -> None:
        """After the stop request: take what the kernel still holds, without blocking."""
        self._udp.setblocking(False)
        received = self.received
        while True:
            try:
                data = self._udp.recv(protocol.RECV_BUFFER)
            except OSError:
                break
            if not data:
                continue
            received += 1
            self.received = received
            self.in_bytes += len(data)
            put(data)

    # -- decode and store ------------------------------------------------------------------
    def _ingest(self) -> None:
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        decode = protocol.decode
        rejected = self.rejected
        forwarding = self.forwarder is not None
        finished = False
        while not finished:
            batch = [get()]
            try:
                while len(batch) < MAX_BATCH:
                    batch.append(get_nowait())
            except queue.Empty:
                pass
            if len(batch) < MIN_BATCH and batch[-1] is not None:
                # Traffic is flowing but the queue is short: let a few milliseconds' worth
                # gather, so a busy daemon pays for one wake-up and one write per batch, not
                # per datagram.
                time.sleep(GATHER)
                try:
                    while len(batch) < MAX_BATCH:
                        batch.append(get_nowait())
                except queue.Empty:
                    pass
            now = time.time()
            rows = []
            out = self.out_bytes
            for data in batch:
                if data is None:
                    finished = True
                    continue
                out += len(data)
                reason, row = decode(data, now)
                if reason is not None:
                    rejected[reason] += 1
                    continue
                rows.append(row)
            self.out_bytes = out
            if not rows:
                continue
            self.decoded += len(rows)
            if self.writer is not None:
                self.writer.send(rows)
            if forwarding:
                self.forwarder.submit_many([r[15].decode("utf-8", "replace") for r in rows])

    # -- status and summary ----------------------------------------------------------------
    def counters(self) -> dict:
        w = self.writer.counters if self.writer is not None else {}
        out = {
            "received": self.received,
            "dropped": sum(self.rejected.values()) + self.overload,
            "overload": self.overload,
            **self.rejected,
            "decoded": self.decoded,
            "stored": w.get("stored", 0),
            "store_errors": w.get("store_errors", 0),
            "store_pending": self.writer.pending() if self.writer is not None else 0,
            "traces": w.get("traces", 0),
            "documents": w.get("documents", 0),
            "evicted": w.get("evicted", 0),
            "backlog_bytes": max(0, self.in_bytes - self.out_bytes),
            "sampling_requests": self.proxy.requests if self.proxy is not None else 0,
        }
        f = self.forwarder
        if f is not None:
            out.update(
                forwarded=f.sent, forward_unprocessed=f.unprocessed, forward_failed=f.failed,
                forward_dropped=f.dropped, forward_retries=f.retries, forward_pending=f.pending(),
            )
        return out

    def status(self) -> dict:
        s = self.settings
        return {
            "service": SERVICE,
            "version": __version__,
            "pid": os.getpid(),
            "store": s.store,
            "udp": self.udp_text,
            "tcp": self.tcp_text,
            "forward": s.forward,
            "started": self.started,
            "counters": self.counters(),
        }

    def summary_line(self, final: bool = False) -> str:
        now = self.counters()
        before = self._last_summary
        self._last_summary = now

        def delta(key: str) -> int:
            return now.get(key, 0) - before.get(key, 0)

        reasons = [
            f"{k.replace('_', ' ')} {delta(k)}" for k in (*protocol.REJECT_REASONS, "overload")
            if delta(k)
        ]
        dropped = f"dropped {delta('dropped')}" + (f" ({', '.join(reasons)})" if reasons else "")
        parts = [f"received {delta('received')}", dropped, f"stored {delta('stored')}"]
        if delta("store_errors"):
            parts.append(f"store errors {delta('store_errors')}")
        if self.forwarder is not None:
            fwd = f"forwarded {delta('forwarded')}"
            extra = [
                f"{label} {delta(key)}"
                for key, label in (
                    ("forward_unprocessed", "unprocessed"), ("forward_failed", "failed"),
                    ("forward_dropped", "buffer full"), ("forward_retries", "retries"),
                )
                if delta(key)
            ]
            parts.append(fwd + (f" ({', '.join(extra)})" if extra else ""))
            self.forwarder.reset_log_budget()
        else:
            parts.append("forwarded 0 (not forwarding)")
        if self.writer is not None:
            n = now["traces"]
            parts.append(f"store {n} trace" + ("" if n == 1 else "s"))
        head = "totals" if final else f"last {self.settings.summary_interval:g}s"
        return f"{head}: " + ", ".join(parts)

    def run(self, stop: threading.Event) -> None:
        """Log a summary line each interval until ``stop`` is set."""
        interval = self.settings.summary_interval
        self._last_summary = self.counters()
        next_line = time.monotonic() + interval
        while not stop.wait(max(0.0, next_line - time.monotonic())):
            log.info("%s", self.summary_line())
            next_line += interval
            if next_line < time.monotonic():
                next_line = time.monotonic() + interval

    # -- stop ------------------------------------------------------------------------------
    def _wake_receiver(self) -> None:
        host, port = self._udp.getsockname()[:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.sendto(b"", (host, port))
        except OSError:
            try:
                self._udp.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def abort(self) -> None:
        """Undo a start that failed half way."""
        if self.writer is not None:
            self.writer.close(5)
        if self.forwarder is not None:
            self.forwarder.stop(0)
        self._udp.close()
        self._tcp.close()

    def shutdown(self) -> None:
        """Stop taking traffic, store and send what was received, close the store."""
        totals = self._last_summary
        self._stopping = True
        if self.proxy is not None:
            self.proxy.stop()
        if self._receiver.is_alive():
            self._wake_receiver()
            self._receiver.join(5)
            if self._receiver.is_alive():  # the wake-up datagram got lost: unblock it hard
                try:
                    self._udp.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._receiver.join(5)
                self._queue.put(None)
        self._udp.close()
        if self._ingestor.is_alive():
            self._ingestor.join(self.settings.drain_timeout + 30)
        if self.forwarder is not None:
            self.forwarder.stop(self.settings.drain_timeout)
        if self.writer is not None:
            self.writer.close(self.settings.drain_timeout + 30)
        self._last_summary = {}
        log.info("stopped; %s", self.summary_line(final=True))
        self._last_summary = totals
