"""Downstream servers for the outbound HTTP and AWS tests (imported by tests/test_http_*.py,
tests/test_botocore.py and integration/test_outbound_http.py, test_botocore.py): a recording
HTTP/1.1 server (plain or TLS with a self-signed certificate made here), an AWS-shaped JSON
endpoint that records the headers it receives, and a moto server process."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

from xray_testing import BIN, free_port


def make_cert(directory) -> tuple[str, str]:
    """A self-signed certificate for localhost and 127.0.0.1: (certfile, keyfile)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = Path(directory)
    certfile = directory / "cert.pem"
    keyfile = directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(certfile), str(keyfile)


class _Handler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive. ``/status/<code>`` answers that status; anything else 200.
    Every request is recorded (method, path, headers) on the server."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
             "body": body, "conn": id(self.connection)}
        )
        status, headers, payload = self.server.answer(self)
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


class LocalServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, certfile=None, keyfile=None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict] = []
        self.tls = certfile is not None
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.port = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def handle_error(self, request, client_address):  # TLS refusals are expected in tests
        pass

    def url(self, path="/", host="127.0.0.1"):
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    def answer(self, handler):
        path = handler.path
        if "/status/" in path:
            code = int(path.split("/status/", 1)[1].split("?")[0].split("/")[0])
            return code, [("Content-Type", "text/plain")], b"status %d" % code
        return 200, [("Content-Type", "text/plain")], b"hello"

    def trace_headers(self) -> list[str | None]:
        return [_header(r["headers"], "x-amzn-trace-id") for r in self.requests]

    def close(self):
        self.shutdown()
        self.server_close()


def _header(headers: dict, name: str):
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


class FakeAWS(LocalServer):
    """An AWS-shaped JSON endpoint: answers each request with the next queued
    ``(status, json_body)`` (default: 200 ``{}``), with an ``x-amzn-RequestId``."""

    def __init__(self):
        self.queue: list[tuple[int, dict]] = []
        self.count = 0
        super().__init__()

    def answer(self, handler):
        self.count += 1
        status, body = self.queue.pop(0) if self.queue else (200, {})
        headers = [("Content-Type", "application/x-amz-json-1.0"),
                   ("x-amzn-RequestId", "fake-request-%d" % self.count)]
        return status, headers, json.dumps(body).encode()


def start_moto() -> tuple[subprocess.Popen, int]:
    """A moto server process on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "python"), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("the moto server did not start") from None
            time.sleep(0.1)


def parse_trace_header(value: str) -> dict:
    return dict(part.split("=", 1) for part in value.split(";"))


def test_certificate_is_trusted_for_localhost_and_loopback_ip(tmp_path):
    certfile, keyfile = make_cert(tmp_path)
    server = LocalServer(certfile, keyfile)
    try:
        ctx = ssl.create_default_context(cafile=certfile)
        for host in ("localhost", "127.0.0.1"):
            with socket.create_connection((host, server.port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname=host) as tls:
                    assert tls.version()
    finally:
        server.close()
