"""``xray-autoinst ui``: a read-only X-Ray console in the browser, over the local trace store.

The standard library's ``http.server`` serves the page (plain JavaScript modules and CSS shipped
in ``ui_static/``) and a small JSON API (documented in docs/console.md), answered by
``console.Console``:

- ``GET /api/traces``: summaries of the traces that match the filters, newest first, with the
  total count and a latency histogram of all of them;
- ``GET /api/traces/ID``: one trace, its documents merged into one tree;
- ``GET /api/map``: the service map of the traces in a time range;
- ``GET /api/status``: the store and its size.

Everything is read-only (GET and HEAD only). Query strings and answers are bounded. The page
is served with a Content-Security-Policy that allows only its own scripts and styles, and the
page builds its DOM with ``textContent``: text from traces is never markup. Bound to loopback,
requests whose ``Host`` is not a loopback name are refused (DNS rebinding).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from xray_autoinst.daemon.console import BadRequest, Console

log = logging.getLogger("xray_autoinst.daemon")

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ui_static")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
DEFAULT_PORT = 2001
MAX_QUERY = 4096  # characters of query string
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


# -- HTTP ------------------------------------------------------------------------------------
def _static_files() -> dict[str, str]:
    out = {}
    try:
        names = os.listdir(STATIC_DIR)
    except OSError:
        return out
    for name in names:
        ext = os.path.splitext(name)[1]
        if ext in CONTENT_TYPES:
            out[name] = os.path.join(STATIC_DIR, name)
    return out


class _Handler(BaseHTTPRequestHandler):
    server_version = "xray-autoinst-ui"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the console polls
        log.debug("ui: " + fmt, *args)

    def _host_allowed(self) -> bool:
        if not self.server.loopback_only:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        if host.startswith("["):
            name = host[: host.find("]") + 1] if "]" in host else host
        else:
            name = host.rsplit(":", 1)[0] if ":" in host else host
        return name in LOOPBACK_NAMES

    def _send(self, status: int, body: bytes, content_type: str, extra=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value) -> None:
        body = json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def do_GET(self):  # noqa: N802
        try:
            self._get()
        except BadRequest as exc:
            self._error(400, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:  # never a stack trace to the browser; once in the log
            log.exception("ui: %s failed", self.path[:200])
            try:
                self._error(500, "internal error (see the log)")
            except OSError:
                pass

    do_HEAD = do_GET  # noqa: N815

    def _refuse(self):
        self._error(405, "read-only: GET and HEAD only")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # noqa: N815

    def _get(self) -> None:
        if not self._host_allowed():
            self._error(403, "this console answers on loopback names only")
            return
        parts = urlsplit(self.path)
        if len(parts.query) > MAX_QUERY:
            raise BadRequest(f"query string: at most {MAX_QUERY} characters")
        try:
            params = parse_qs(parts.query, keep_blank_values=False, max_num_fields=50)
        except ValueError:
            raise BadRequest("query string: at most 50 parameters") from None
        path = parts.path
        console: Console = self.server.console
        if path in ("/", "/index.html"):
            self._static("index.html")
        elif path.startswith("/static/"):
            self._static(path[len("/static/"):])
        elif path == "/api/traces":
            self._json(200, console.traces(params))
        elif path.startswith("/api/traces/"):
            text = unquote(path[len("/api/traces/"):]).strip()
            if not text or len(text) > 64:
                raise BadRequest("trace id: 1 to 64 characters")
            merged = console.trace(text)
            if merged is None:
                self._error(404, "no such trace (or the prefix matches several)")
            else:
                self._json(200, merged)
        elif path == "/api/map":
            self._json(200, console.graph(params))
        elif path == "/api/status":
            self._json(200, console.status())
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._error(404, "not found")

    def _static(self, name: str) -> None:
        files = self.server.static_files
        if name not in files:  # a fixed list of names: no path from the request is opened
            self._error(404, "not found")
            return
        with open(files[name], "rb") as f:
            body = f.read()
        self._send(200, body, CONTENT_TYPES[os.path.splitext(name)[1]])


class ConsoleServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, console: Console, *, loopback_only: bool = True):
        host = address[0]
        if ":" in host:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.console = console
        self.loopback_only = loopback_only
        self.static_files = _static_files()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if ":" in host:
            host = f"[{host}]"
        elif host == "0.0.0.0":
            host = "127.0.0.1"
        return f"http://{host}:{port}/"


def is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def make_server(store_path: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                *, fallback: bool = False) -> ConsoleServer:
    """Bind the console; with ``fallback``, a busy port gives way to a free one."""
    console = Console(store_path)
    host = host.strip("[]")
    loopback = is_loopback(host)
    try:
        return ConsoleServer((host, port), console, loopback_only=loopback)
    except OSError:
        if not fallback or port == 0:
            raise
        return ConsoleServer((host, 0), console, loopback_only=loopback)


def serve_in_thread(server: ConsoleServer, *, warm: bool = True) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="xray-autoinst-ui",
                              kwargs={"poll_interval": 0.25}, daemon=True)
    thread.start()
    if warm:  # read the store once now, so that the first page does not wait for it
        threading.Thread(target=server.console.warm, name="xray-autoinst-ui-warm",
                         daemon=True).start()
    return thread


def run(store_path: str, host: str, port: int, stop: threading.Event | None = None,
        announce=None, *, fallback: bool = False, parent: int | None = None) -> int:
    """Serve until ``stop`` is set (or forever, or until the process ``parent`` is no longer
    this one's parent); ``announce(url)`` once listening."""
    server = make_server(store_path, host, port, fallback=fallback)
    if announce is not None:
        announce(server.url)
    stop = stop or threading.Event()
    thread = serve_in_thread(server)
    try:
        while not stop.wait(0.5):
            if parent is not None and os.getppid() != parent:
                break
    finally:
        server.shutdown()
        server.server_close()
        server.console.close()
        thread.join(5)
    return 0
