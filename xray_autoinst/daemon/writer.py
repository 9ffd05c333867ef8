"""The store writer: a child process of the daemon that owns the SQLite connection.

Decoding JSON and writing SQLite each take a core's worth of time at tens of thousands of
documents a second, and one Python process has one GIL: so the daemon decodes, and this process
writes. It reads frames from stdin (a 4-byte big-endian length, then a pickled list of store
rows; length 0 means stop) and reports its counters as JSON lines on stdout. It ignores SIGINT
and SIGTERM: the daemon stops it by closing the pipe once everything is sent.

Run only by the daemon: ``python -m xray_autoinst.daemon.writer --store PATH ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time

log = logging.getLogger("xray_autoinst.daemon")

_FRAME = struct.Struct(">I")
REPORT_EVERY = 0.2  # seconds between counter lines while busy
EVICT_EVERY = 1.0  # seconds between store bound checks while busy
IDLE_AFTER = 0.1  # seconds without a frame: check the bounds and report now


def _emit(out, payload: dict) -> None:
    try:
        out.write((json.dumps(payload) + "\n").encode())
        out.flush()
    except OSError:  # the daemon is gone: nobody to tell
        pass


def _read_exactly(inp, size: int) -> bytes:
    """``size`` bytes from an unbuffered stream (fewer only at end of input)."""
    chunks, got = [], 0
    while got < size:
        chunk = inp.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def serve(store_path: str, max_traces: int, max_bytes: int, inp, out) -> int:
    """Write the frames read from ``inp`` (unbuffered: select() must see what is pending)."""
    from xray_autoinst.daemon.store import Store

    try:
        store = Store.open_writer(store_path, max_traces=max_traces, max_bytes=max_bytes)
        counts = {"traces": store.count_traces(), "documents": store.count_documents()}
    except Exception as exc:
        _emit(out, {"error": f"cannot open the store {store_path}: {exc}"})
        return 1
    stored = errors = 0
    _emit(out, {"ready": True, "stored": 0, "store_errors": 0, "evicted": 0, **counts})
    last_report = last_evict = time.monotonic()
    dirty = reported = False
    fd = inp.fileno()

    def bound_and_count() -> dict:
        try:
            store.evict()
            return {"traces": store.count_traces(), "documents": store.count_documents()}
        except Exception as exc:
            log.error("store: eviction failed: %s", exc)
            return counts

    while True:
        # Busy: check the bounds once a second. Idle for a moment: check them and report,
        # then block until the next frame.
        if dirty or not reported:
            if not select.select([fd], [], [], IDLE_AFTER)[0]:
                if dirty:
                    counts = bound_and_count()
                    last_evict = time.monotonic()
                    dirty = False
                _emit(out, {"stored": stored, "store_errors": errors, "evicted": store.evicted,
                            **counts})
                last_report = time.monotonic()
                reported = True
                continue
        head = _read_exactly(inp, _FRAME.size)
        if len(head) < _FRAME.size:
            break
        (size,) = _FRAME.unpack(head)
        if size == 0:
            break
        frame = _read_exactly(inp, size)
        if len(frame) < size:
            break
        rows = pickle.loads(frame)
        reported = False
        try:
            store.write(rows)
            stored += len(rows)
            dirty = True
        except Exception as exc:  # disk full, a damaged file: count, say so, keep going
            errors += len(rows)
            if errors == len(rows) or errors % 10000 < len(rows):
                log.error("store: cannot write %d documents: %s", len(rows), exc)
        now = time.monotonic()
        if dirty and now - last_evict >= EVICT_EVERY:
            counts = bound_and_count()
            last_evict = now
            dirty = False
        if now - last_report >= REPORT_EVERY:
            _emit(out, {"stored": stored, "store_errors": errors, "evicted": store.evicted,
                        **counts})
            last_report = now
    counts = bound_and_count()
    try:
        store.close()
    except Exception as exc:
        log.error("store: close failed: %s", exc)
    _emit(out, {"stored": stored, "store_errors": errors, "evicted": store.evicted, "final": True,
                **counts})
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="xray_autoinst.daemon.writer")
    p.add_argument("--store", required=True)
    p.add_argument("--max-traces", type=int, required=True)
    p.add_argument("--max-bytes", type=int, required=True)
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from xray_autoinst.daemon.logsetup import setup_logging

    setup_logging(args.log_level)
    with open(sys.stdin.fileno(), "rb", buffering=0, closefd=False) as inp:
        return serve(args.store, args.max_traces, args.max_bytes, inp, sys.stdout.buffer)


class WriterProcess:
    """The daemon's handle on its writer process."""

    def __init__(self, store: str, *, max_traces: int, max_bytes: int, log_level: str = "info",
                 timeout: float = 30.0):
        import xray_autoinst

        package_root = os.path.dirname(os.path.dirname(os.path.abspath(xray_autoinst.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        env["XRAY_ENABLED"] = "false"
        cmd = [
            sys.executable, "-m", "xray_autoinst.daemon.writer", "--store", store,
            "--max-traces", str(max_traces), "--max-bytes", str(max_bytes),
            "--log-level", log_level,
        ]
        self.counters = {"stored": 0, "store_errors": 0, "evicted": 0, "traces": 0, "documents": 0}
        self.sent = 0
        self._broken = False
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env,
            cwd=os.path.dirname(os.path.abspath(store)),
        )
        try:
            import fcntl

            fcntl.fcntl(self.proc.stdin.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        except (ImportError, OSError):
            pass
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        try:
            first = json.loads(line) if line else {"error": "the store writer did not start"}
        except ValueError:
            first = {"error": f"the store writer said {line[:200]!r}"}
        if "error" in first:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(first["error"])
        self._update(first)
        self._reader = threading.Thread(target=self._read, name="xray-store-writer", daemon=True)
        self._reader.start()

    def _update(self, payload: dict) -> None:
        self.counters = {k: payload.get(k, v) for k, v in self.counters.items()}

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self._update(json.loads(line))
            except ValueError:
                continue

    def send(self, rows: list[tuple]) -> bool:
        if self._broken:
            return False
        frame = pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._write_all(_FRAME.pack(len(frame)) + frame)
        except OSError as exc:
            self._broken = True
            log.error("store writer exited (%s, status %s): traces are no longer stored",
                      exc, self.proc.poll())
            return False
        self.sent += len(rows)
        return True

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        fd = self.proc.stdin.fileno()
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def pending(self) -> int:
        c = self.counters
        return max(0, self.sent - c["stored"] - c["store_errors"])

    def close(self, timeout: float = 30.0) -> None:
        try:
            if not self._broken:
                self._write_all(_FRAME.pack(0))
            self.proc.stdin.close()
        except OSError:
            pass
        self._broken = True  # nothing more is sent
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("store writer did not finish in %gs; killing it", timeout)
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)


if __name__ == "__main__":
    sys.exit(main())
