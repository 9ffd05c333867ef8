"""The virtualenvs the benchmarks run in, one per tracer, under ``.bench/venvs/<name>``.

Each is created on first use and cached: a stamp file records what was installed, and the
environment is rebuilt only when that list changes. This agent is installed as a user gets it
(``pip install .``, not editable), reinstalled when its sources change.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from benchlib import ROOT

VENV_DIR = Path(ROOT) / ".bench" / "venvs"
COMMON = ["flask", "requests", "botocore", "psycopg[binary]", "gunicorn", "uvicorn[standard]"]

SPECS = {
    "xray-autoinst": COMMON,
    "aws-xray-sdk": ["aws-xray-sdk==2.15.0", "psycopg-pool", *COMMON],
    "opentelemetry": [
        "opentelemetry-distro", "opentelemetry-sdk", "opentelemetry-instrumentation-wsgi",
        "opentelemetry-instrumentation-flask", "opentelemetry-instrumentation-asgi",
        "opentelemetry-sdk-extension-aws", "opentelemetry-propagator-aws-xray",
        "opentelemetry-instrumentation-requests",
        "opentelemetry-instrumentation-botocore", "opentelemetry-instrumentation-sqlite3",
        "opentelemetry-instrumentation-psycopg", "opentelemetry-instrumentation-urllib3",
        *COMMON,
    ],
    "ddtrace": ["ddtrace", *COMMON],
    # bench_http_async.py: OpenTelemetry's httpx and aiohttp client instrumentations only
    "opentelemetry-http-async": [
        "opentelemetry-sdk", "opentelemetry-instrumentation-httpx",
        "opentelemetry-instrumentation-aiohttp-client", "opentelemetry-sdk-extension-aws",
        "opentelemetry-propagator-aws-xray", "httpx", "aiohttp",
    ],
}

# distributions whose versions the results record
REPORTED = {
    "xray-autoinst", "aws-xray-sdk", "ddtrace", "opentelemetry-api", "opentelemetry-sdk",
    "opentelemetry-distro", "opentelemetry-instrumentation", "opentelemetry-instrumentation-wsgi",
    "opentelemetry-instrumentation-flask", "opentelemetry-sdk-extension-aws",
    "opentelemetry-propagator-aws-xray", "flask", "werkzeug", "requests", "botocore", "psycopg",
    "gunicorn", "wrapt", "opentelemetry-instrumentation-asgi", "uvicorn", "uvloop", "httptools",
    "httpx", "aiohttp", "opentelemetry-instrumentation-httpx",
    "opentelemetry-instrumentation-aiohttp-client",
}


class Venv:
    def __init__(self, name: str, path: Path):
        self.name = name
        self.path = path
        self.bin = path / "bin"
        self.python = str(self.bin / "python")

    def script(self, name: str) -> str:
        return str(self.bin / name)

    def versions(self) -> dict:
        code = (
            "import json, importlib.metadata as m\n"
            "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))"
        )
        # isolated (-I), from /: nothing but the environment's own site-packages is seen
        out = subprocess.run([self.python, "-I", "-c", code], capture_output=True, text=True,
                             check=True, cwd="/").stdout
        found = json.loads(out)
        return {k: v for k, v in sorted(found.items()) if k in REPORTED}


def current() -> Venv:
    """The interpreter running the benchmarks (quick mode: no virtualenv is built)."""
    return Venv("current", Path(sys.prefix))


def _source_hash() -> str:
    h = hashlib.sha256()
    root = Path(ROOT)
    files = [root / "pyproject.toml"]
    for top in ("xray_autoinst", "sitecustomize"):
        files += sorted((root / top).rglob("*.py"))
    for f in files:
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _pip(venv: Venv, args, log) -> None:
    cmd = [venv.python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    log("  pip install " + " ".join(args))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(
            f"pip failed in {venv.path} ({proc.returncode}):\n{proc.stdout[-2000:]}"
            f"{proc.stderr[-4000:]}")


def ensure(name: str, log=print) -> Venv:
    """Create (or reuse) the virtualenv ``name``; returns it ready to run."""
    venv = Venv(name, VENV_DIR / name)
    stamp = venv.path / ".bench-stamp.json"
    wanted = {"requirements": SPECS[name], "python": sys.version.split()[0]}
    if name == "xray-autoinst":
        wanted["source"] = _source_hash()
    have = {}
    if stamp.exists() and Path(venv.python).exists():
        try:
            have = json.loads(stamp.read_text())
        except ValueError:
            have = {}
    if have == wanted:
        return venv
    if not Path(venv.python).exists() or have.get("python") != wanted["python"]:
        log(f"creating virtualenv {venv.path}")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv.path)], check=True)
        have = {}
    if have.get("requirements") != wanted["requirements"]:
        log(f"installing into {name}")
        _pip(venv, SPECS[name], log)
    if name == "xray-autoinst" and have.get("source") != wanted.get("source"):
        log("installing this agent (pip install .)")
        _pip(venv, ["--no-deps", "--force-reinstall", "."], log)
    stamp.write_text(json.dumps(wanted))
    return venv


def interpreter_facts() -> dict:
    facts = {"python": sys.version.split()[0], "implementation": sys.implementation.name,
             "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    facts["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    facts["kernel"] = os.uname().release
    return facts
