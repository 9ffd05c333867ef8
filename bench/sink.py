"""A UDP sink standing in for the daemon: counts datagrams (and those that are not well-formed
daemon datagrams) until SIGTERM, then prints its counts as one JSON line.

    python bench/sink.py      # prints "PORT <n>", then runs until SIGTERM
"""

from __future__ import annotations

import json
import signal
import socket
import sys

HEADER = b'{"format": "json", "version": 1}\n'
# aws-xray-sdk writes the same header without the spaces; the daemon takes either
HEADERS = (HEADER, b'{"format":"json","version":1}\n')


def main() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    counts = {"datagrams": 0, "bytes": 0, "malformed": 0}
    stopping = []

    def stop(_sig, _frame):
        stopping.append(True)
        sock.close()

    signal.signal(signal.SIGTERM, stop)
    sys.stdout.write("PORT %d\n" % sock.getsockname()[1])
    sys.stdout.flush()
    buf = bytearray(70000)
    view = memoryview(buf)
    (head, n_head), (compact, n_compact) = ((h, len(h)) for h in HEADERS)
    while not stopping:
        try:
            n = sock.recv_into(buf)
        except OSError:
            break
        counts["datagrams"] += 1
        counts["bytes"] += n
        if view[:n_head] != head and view[:n_compact] != compact:
            counts["malformed"] += 1
    sys.stdout.write(json.dumps(counts) + "\n")
    sys.stdout.flush()
    return 0



class Sink:
    """Runs this sink in a child process: ``with Sink() as s: s.address``; ``s.counts`` after."""

    def __init__(self, cpu=None):
        self.cpu = cpu
        self.counts = None

    def __enter__(self):
        import subprocess

        prefix = pin(self.cpu) if self.cpu is not None else []
        self.proc = subprocess.Popen([*prefix, sys.executable, __file__],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        self.port = int(line.split()[1])
        self.address = "127.0.0.1:%d" % self.port
        return self

    def __exit__(self, *exc):
        import time

        time.sleep(0.2)  # let the last datagrams arrive
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        try:
            self.counts = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.counts = None


def pin(cpu) -> list:
    """``taskset -c CPU`` when the machine has taskset and more than one CPU, else nothing."""
    import os
    import shutil

    if cpu is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", str(cpu)]


if __name__ == "__main__":
    sys.exit(main())
