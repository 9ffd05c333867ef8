"""A loopback stand-in for the AWS Lambda Runtime API (what ``awslambdaric`` talks to), for the
Lambda tests and benchmark: queued invocations are handed out by ``GET .../invocation/next``
with their headers; responses and errors are recorded, each with a snapshot taken the moment it
arrived (``on_post``: e.g. the documents the daemon stand-in had received by then)."""

from __future__ import annotations

import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"


class QuietServer(ThreadingHTTPServer):
    """A client that goes away mid-request (a runtime killed while it waits for the next
    invocation) is normal here: no traceback on stderr."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


class RuntimeAPI:
    def __init__(self, on_post=None):
        self.invocations: queue.Queue = queue.Queue()
        self.results: dict[str, dict] = {}  # request id -> {"kind", "body", "headers", "seen"}
        self.init_errors: list = []
        self.on_post = on_post
        self._cond = threading.Condition()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, code, body=b"", headers=None):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != PREFIX + "/invocation/next":
                    return self._reply(404)
                item = api.invocations.get()
                if item is None:  # stop(): the runtime client fails and its process exits
                    return self._reply(500, b'{"errorMessage": "stop"}')
                request_id, body, headers = item
                hdrs = {
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30000),
                    "Lambda-Runtime-Invoked-Function-Arn":
                        "arn:aws:lambda:us-east-1:123456789012:function:fn",
                    "Content-Type": "application/json",
                }
                hdrs.update(headers)
                self._reply(200, body, hdrs)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                parts = self.path[len(PREFIX):].strip("/").split("/")
                if parts[:2] == ["init", "error"]:
                    api.init_errors.append(body)
                    return self._reply(202)
                if len(parts) == 3 and parts[0] == "invocation" and parts[2] in (
                    "response", "error"
                ):
                    seen = api.on_post() if api.on_post is not None else None
                    with api._cond:
                        api.results[parts[1]] = {
                            "kind": parts[2], "body": body, "headers": dict(self.headers),
                            "seen": seen, "at": time.perf_counter(),
                        }
                        api._cond.notify_all()
                    return self._reply(202)
                self._reply(404)

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.address = "127.0.0.1:%d" % self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def invoke(self, request_id, event, trace_id=None, headers=None):
        hdrs = dict(headers or {})
        if trace_id is not None:
            hdrs["Lambda-Runtime-Trace-Id"] = trace_id
        self.invocations.put((request_id, json.dumps(event).encode(), hdrs))

    def stop(self):
        """The next ``next`` request fails: the runtime client exits (how a benchmark ends a
        runtime that must exit by itself, e.g. under valgrind)."""
        self.invocations.put(None)

    def wait(self, request_id, timeout=30.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while request_id not in self.results:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no result for {request_id}: {self.results.keys()}")
                self._cond.wait(left)
            return self.results[request_id]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class PollingDaemon:
    """A loopback UDP listener read only when asked (``drain``), from the caller's thread.

    Loopback delivery is synchronous (a datagram is in the receive buffer when ``sendto``
    returns), so draining from the Runtime API's handler when a result arrives tells exactly
    which documents had left the function's process before its result was posted."""

    HEADER = b'{"format": "json", "version": 1}\n'

    def __init__(self):
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.documents: list[dict] = []
        self.sizes: list[int] = []
        self.bad: list[bytes] = []
        self._lock = threading.Lock()

    def drain(self) -> list[dict]:
        with self._lock:
            while True:
                try:
                    data = self.sock.recv(70000)
                except (BlockingIOError, InterruptedError):
                    break
                self.sizes.append(len(data))
                if not data.startswith(self.HEADER) or len(data) > 64 * 1024:
                    self.bad.append(data)
                    continue
                try:
                    self.documents.append(json.loads(data[len(self.HEADER):]))
                except ValueError:
                    self.bad.append(data)
            return list(self.documents)

    def close(self):
        self.sock.close()
