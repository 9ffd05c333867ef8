"""Helpers for the local daemon's end-to-end tests: the real ``xray-autoinst daemon`` process,
a real moto server for the X-Ray API, and a loopback fake of the X-Ray API whose answers a test
scripts (throttling, 5xx, slow answers, the sampling operations)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from xray_testing import BIN

XRAY_AUTOINST = str(BIN / "xray-autoinst")
HEADER = b'{"format": "json", "version": 1}\n'


def free_udp_tcp_port() -> int:
    """A loopback port free for both UDP and TCP (the daemon takes both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")


def base_env(**extra) -> dict:
    """The environment of a user's shell: no agent variables, fake AWS credentials."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XRAY_", "AWS_", "PYTHONPATH"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def wait_until(cond, timeout=15.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def datagram(doc: dict) -> bytes:
    return HEADER + json.dumps(doc).encode()


def segment(trace_id: str, ident: str, start: float, end: float | None = None, **extra) -> dict:
    doc = {"name": extra.pop("name", "web"), "id": ident, "trace_id": trace_id,
           "start_time": start}
    if end is None:
        doc["in_progress"] = True
    else:
        doc["end_time"] = end
    doc.update(extra)
    return doc


def trace_id(n: int, now: float | None = None) -> str:
    return f"1-{int(now or time.time()):08x}-{n:024x}"


class Daemon:
    """``xray-autoinst daemon`` in the foreground, as a user starts it."""

    def __init__(self, tmp: Path, *args: str, env: dict | None = None, wait: bool = True):
        self.port = free_udp_tcp_port()
        self.store = str(tmp / "traces.db")
        self.log_path = tmp / f"daemon-{self.port}.log"
        self.env = env or base_env()
        cmd = [XRAY_AUTOINST, "daemon", "--listen", f"127.0.0.1:{self.port}",
               "--store", self.store, *args]
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self._log, stderr=self._log,
                                     stdin=subprocess.DEVNULL)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if wait:
            wait_until(self._up, timeout=20, what=f"the daemon on {self.port}: {self.log()}")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited {self.proc.returncode}: {self.log()}")
        try:
            self.status()
            return True
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def status(self) -> dict:
        url = f"http://127.0.0.1:{self.port}/xray-autoinst/status"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return json.load(answer)

    def counters(self) -> dict:
        return self.status()["counters"]

    def send(self, *items) -> None:
        for item in items:
            data = item if isinstance(item, bytes) else datagram(item)
            self.sock.sendto(data, ("127.0.0.1", self.port))

    def wait_counter(self, key: str, value: int, timeout: float = 15.0) -> dict:
        try:
            return wait_until(lambda: (c := self.counters()).get(key, 0) >= value and c,
                              timeout=timeout, what=f"{key} >= {value}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; counters {self.counters()}; log:\n{self.log()}"
                                 ) from None

    def settled(self, received: int, timeout: float = 15.0) -> dict:
        """Wait until ``received`` datagrams arrived and each was stored or dropped."""
        def done():
            c = self.counters()
            ok = (c["received"] >= received and c["backlog_bytes"] == 0
                  and c["store_pending"] == 0
                  and c["stored"] + c["dropped"] + c["store_errors"] >= c["received"])
            return ok and c
        return wait_until(done, timeout=timeout, what=f"{received} datagrams settled")

    def view(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([XRAY_AUTOINST, *args, "--store", self.store],
                              capture_output=True, text=True, timeout=60, env=self.env)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    def view_json(self, *args: str):
        return json.loads(self.view(*args, "--json").stdout)

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.sock.close()
        self._log.close()
        return self.proc.returncode


class MotoServer:
    """A real moto server process standing in for the X-Ray API."""

    def __init__(self, tmp: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(tmp / "moto.log", "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=self._log, env=base_env(),
        )
        wait_until(self._up, timeout=30, what="moto server")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError("moto server exited")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def client(self):
        import boto3

        return boto3.client("xray", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


class FakeXRay:
    """A loopback X-Ray API: PutTraceSegments, GetSamplingRules and GetSamplingTargets.

    ``script`` is a list of (status, body, delay) answers for PutTraceSegments, used in turn
    (then 200 with no unprocessed segments); ``requests`` records every request.
    """

    def __init__(self, script=(), delay: float = 0.0):
        self.script = list(script)
        self.delay = delay
        self.requests: list[dict] = []
        self.accepted: list[str] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, payload, error = fake.answer(self.path, dict(self.headers), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                if error:
                    self.send_header("x-amzn-ErrorType", error)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, path, headers, body):
        request = json.loads(body or b"{}")
        with self.lock:
            self.requests.append({"path": path, "headers": headers, "body": request})
        if path == "/TraceSegments":
            with self.lock:
                step = self.script.pop(0) if self.script else (200, None, 0.0)
            status, payload, delay = step
            time.sleep(delay or self.delay)
            if status != 200:
                return status, payload, payload.get("__type")
            docs = request["TraceSegmentDocuments"]
            unprocessed = (payload or {}).get("UnprocessedTraceSegments", [])
            bad = {u["Id"] for u in unprocessed}
            with self.lock:
                self.accepted += [d for d in docs if json.loads(d)["id"] not in bad]
            return 200, {"UnprocessedTraceSegments": unprocessed}, None
        if path == "/GetSamplingRules":
            return 200, {"SamplingRuleRecords": [{"SamplingRule": {
                "RuleName": "from-xray", "RuleARN": "arn:aws:xray:us-east-1:1:sampling-rule/x",
                "ResourceARN": "*", "Priority": 5, "FixedRate": 0.25, "ReservoirSize": 7,
                "ServiceName": "*", "ServiceType": "*", "Host": "*", "HTTPMethod": "*",
                "URLPath": "/orders/*", "Version": 1, "Attributes": {}},
                "CreatedAt": 1700000000.0, "ModifiedAt": 1700000100.0}]}, None
        if path == "/SamplingTargets":
            names = [d["RuleName"] for d in request.get("SamplingStatisticsDocuments", [])]
            return 200, {"SamplingTargetDocuments": [
                {"RuleName": n, "FixedRate": 0.25, "ReservoirQuota": 3,
                 "ReservoirQuotaTTL": 1700000300.0, "Interval": 10} for n in names],
                "LastRuleModification": 1700000100.0, "UnprocessedStatistics": []}, None
        return 404, {"__type": "UnknownOperationException", "message": path}, "UnknownOperation"

    def paths(self) -> list[str]:
        with self.lock:
            return [r["path"] for r in self.requests]

    def batches(self) -> list[list[str]]:
        with self.lock:
            return [r["body"]["TraceSegmentDocuments"] for r in self.requests
                    if r["path"] == "/TraceSegments"]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
