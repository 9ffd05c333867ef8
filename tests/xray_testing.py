"""Test helpers shared by tests/ and integration/: a loopback UDP listener standing in for the
X-Ray daemon, schema validation of documents, and running ``xray-run`` as a user would."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[1]
CI = os.environ.get("CI", "").lower() == "true"  # under CI everything a test needs is there


def skip_or_fail(msg: str):
    """A test's prerequisite (a service, a package, a browser) is missing: skip it on a
    developer's machine; under CI=true fail, so a missing piece is never a silent skip."""
    if CI:
        pytest.fail(msg + " -- under CI=true this is a failure")
    pytest.skip(msg)


def need(module: str):
    """``pytest.importorskip`` that fails under CI=true: the module, imported."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        skip_or_fail(f"{module} is not installed ({exc})")


SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "xray-segment-schema-v1.0.0.json"
SHARED_SCHEMA = ROOT.parent / "shared" / "xray-segment-schema-v1.0.0.json"
HEADER = b'{"format": "json", "version": 1}\n'
BIN = Path(sys.executable).parent


def _validator():
    schema = json.loads(SCHEMA_PATH.read_text())
    return jsonschema.Draft4Validator(schema)


VALIDATOR = _validator()


def validate(doc: dict) -> None:
    """Raise if ``doc`` is not a valid segment document (the official schema, plus the
    required end_time-or-in_progress rule the schema leaves out)."""
    errors = sorted(VALIDATOR.iter_errors(doc), key=str)
    assert not errors, f"schema errors: {[e.message for e in errors][:5]} in {doc}"
    assert "end_time" in doc or doc.get("in_progress") is True, doc
    if doc.get("type") == "subsegment":
        assert "parent_id" in doc and "trace_id" in doc, doc


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeDaemon:
    """Collects datagrams on a loopback UDP port; checks each is a well-formed daemon datagram."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.datagrams: list[bytes] = []
        self.documents: list[dict] = []
        self.bad: list[bytes] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                data = self.sock.recv(70000)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._cond:
                self.datagrams.append(data)
                if not data.startswith(HEADER) or len(data) > 64 * 1024:
                    self.bad.append(data)
                else:
                    try:
                        self.documents.append(json.loads(data[len(HEADER):]))
                    except ValueError:
                        self.bad.append(data)
                self._cond.notify_all()

    def wait(self, count: int = 1, timeout: float = 10.0, predicate=None) -> list[dict]:
        """Wait until ``count`` documents (matching ``predicate``) arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                docs = [d for d in self.documents if predicate is None or predicate(d)]
                if len(docs) >= count:
                    return docs
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} documents, got {len(docs)}: {self.documents[-5:]}"
                    )
                self._cond.wait(left)

    def segments(self) -> list[dict]:
        return [d for d in self.documents if d.get("type") != "subsegment"]

    def clear(self):
        with self._cond:
            self.datagrams.clear()
            self.documents.clear()
            self.bad.clear()

    def close(self):
        self._stop = True
        self.sock.close()


def agent_env(daemon: FakeDaemon | None = None, **extra) -> dict:
    """A copy of the environment for a traced child, pointing at ``daemon``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XRAY_", "AWS_XRAY_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    env["XRAY_SAMPLING"] = "local"
    env["XRAY_SAMPLING_RULES"] = '{"version": 2, "default": {"fixed_target": 0, "rate": 1.0}}'
    env["XRAY_AUTOINST_RAISE"] = "1"
    # never a real metadata address from a test, whatever machine runs it
    env["XRAY_AUTOINST_IMDS_ENDPOINT"] = "http://127.0.0.1:9"
    if daemon is not None:
        env["AWS_XRAY_DAEMON_ADDRESS"] = daemon.address
    env.update({k: str(v) for k, v in extra.items()})
    return env


def xray_run(*args: str) -> list[str]:
    return [str(BIN / "xray-run"), *args]


def start_traced(cmd, daemon, cwd, warmup="/warmup", timeout=40.0, **env):
    """Start ``xray-run <cmd>`` (``{port}`` in it replaced by a free port) and wait until it
    answers ``warmup`` and that request's segment arrived; returns (process, port)."""
    port = free_port()
    full = [c.replace("{port}", str(port)) for c in cmd]
    p = subprocess.Popen(xray_run(*full), cwd=cwd, env=agent_env(daemon, **env),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(port, warmup, proc=p, timeout=timeout)
        daemon.wait(1, timeout=15)  # the warm-up request's segment
        daemon.clear()
    except BaseException:
        print(stop(p))
        raise
    return p, port


def wait_http(port: int, path: str = "/", timeout: float = 20.0, proc=None) -> None:
    """Wait until a server on 127.0.0.1:port answers."""
    import http.client

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"server exited with {proc.returncode}: {out}")
        try:
            # a refused connect returns at once; an answer may be slow (a worker still
            # importing): never give up on it and ask again, which would be a second request
            conn = http.client.HTTPConnection(
                "127.0.0.1", port, timeout=max(2.0, deadline - time.monotonic()))
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise AssertionError(f"server on port {port} did not answer: {last}")


def http_get(port: int, path: str = "/", headers=None, method="GET"):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), body


def stop(proc: subprocess.Popen, sig=None, timeout: float = 10.0) -> str:
    import signal

    if proc.poll() is None:
        proc.send_signal(sig or signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out = proc.stdout.read() if proc.stdout else ""
    return out or ""


class CollectingEmitter:
    """An in-process emitter: encodes at once and keeps the documents (for unit tests)."""

    def __init__(self):
        self.documents: list[dict] = []
        self.raw: list[str] = []

    def submit(self, entity):
        from xray_autoinst.core import encoder

        for doc in encoder.documents(entity):
            self.send_document(doc)

    def send_document(self, doc: str) -> bool:
        from xray_autoinst.core import encoder

        assert len(encoder.datagram(doc)) <= 64 * 1024
        self.raw.append(doc)
        self.documents.append(json.loads(doc))
        return True

    def flush(self, timeout=0):
        pass


def install_tracer(env: dict | None = None):
    """Configure the process tracer for an in-process test; returns (tracer, emitter)."""
    from xray_autoinst import config
    from xray_autoinst.core import tracer as tracer_mod

    base = {
        "XRAY_SAMPLING_RULES": '{"version": 2, "default": {"fixed_target": 0, "rate": 1.0}}',
        "XRAY_AUTOINST_RAISE": "1",
        "XRAY_AUTOINST_IMDS_ENDPOINT": "http://127.0.0.1:9",
    }
    base.update(env or {})
    emitter = CollectingEmitter()
    t = tracer_mod.install(config.from_env(base), emitter=emitter)
    return t, emitter


@contextlib.contextmanager
def segment(t, name="svc"):
    """An open segment for the duration of the block (in-process tests)."""
    seg, token = t.begin_segment(name)
    try:
        yield seg
    finally:
        t.end_segment(seg, token)


def only_doc(emitter):
    """The one document an in-process emitter holds, schema-validated."""
    [doc] = emitter.documents
    validate(doc)
    return doc


def subs(doc):
    return doc.get("subsegments", [])


def names(doc):
    return [s["name"] for s in subs(doc)]
