"""End to end, as Lambda runs a function: the layer built by ``xray-autoinst lambda-layer``,
unzipped into a directory laid out like ``/opt``; the real ``awslambdaric`` (from PyPI,
installed with ``pip --target`` like Lambda's ``/var/runtime``) started through the layer's
exec wrapper by a plain interpreter (no virtualenv); a loopback stand-in for the Runtime API;
a loopback UDP listener at ``AWS_XRAY_DAEMON_ADDRESS``."""

import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import zipfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from lambda_testing import PollingDaemon, QuietServer, RuntimeAPI
from xray_testing import BIN, ROOT, skip_or_fail, validate

CI = os.environ.get("CI", "").lower() == "true"
PYENV_312 = Path.home() / ".pyenv" / "versions" / "3.12.1" / "bin" / "python"

HANDLER = textwrap.dedent('''
    """A function with no tracing code."""
    import http.client
    import os

    DOWNSTREAM = int(os.environ["T_DOWNSTREAM"])


    def call(path):
        conn = http.client.HTTPConnection("127.0.0.1", DOWNSTREAM, timeout=5)
        conn.request("GET", path)
        conn.getresponse().read()
        conn.close()


    def handler(event, context):
        for i in range(event.get("calls", 0)):
            call("/%s/%d" % (context.aws_request_id, i))
        if event.get("raise"):
            raise ValueError("the handler failed")
        return {"ok": context.aws_request_id}
''')


_skip_or_fail = skip_or_fail


def _plain_python():
    """An interpreter outside any virtualenv: pyenv's 3.12.1 here, else this venv's base."""
    if PYENV_312.exists():
        return str(PYENV_312)
    base = Path(sys.base_prefix) / "bin" / ("python%d.%d" % sys.version_info[:2])
    if sys.base_prefix != sys.prefix and base.exists():
        return str(base)
    _skip_or_fail("no interpreter outside a virtualenv to run the layer with")


def _version(python):
    out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def extract(zip_path, dest):
    """Unzip keeping the file modes, as Lambda does."""
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            path = zf.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(path, mode)


@pytest.fixture(scope="module")
def lam(tmp_path_factory):
    """(python, version, runtime dir, built layer zip, opt dir) -- built once per module."""
    python = _plain_python()
    version = _version(python)
    base = tmp_path_factory.mktemp("lambda")
    runtime = base / "var-runtime"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--target", str(runtime), "--only-binary=:all:", "--implementation", "cp",
         "--python-version", version, "--platform", "manylinux2014_x86_64",
         "--platform", "manylinux2014_aarch64", "awslambdaric>=2"],
        capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0:
        _skip_or_fail("cannot install awslambdaric from PyPI: " + proc.stderr[-500:])
    layer = base / "layer.zip"
    env = dict(os.environ, PATH=f"{Path(python).parent}{os.pathsep}{os.environ['PATH']}")
    build = subprocess.run([str(BIN / "xray-autoinst"), "lambda-layer", "-o", str(layer),
                            "--python", version], capture_output=True, text=True, env=env,
                           timeout=120)
    assert build.returncode == 0, build.stderr
    assert "AWS_LAMBDA_EXEC_WRAPPER=/opt/xray-run" in build.stderr
    assert "note:" not in build.stderr  # byte-compiled for the target
    opt = base / "opt"
    extract(layer, opt)
    task = base / "var-task"
    task.mkdir()
    (task / "app.py").write_text(HANDLER)
    return python, version, runtime, layer, opt, task


class Downstream:
    """An HTTP server the function calls; keeps the trace header of each request."""

    def __init__(self):
        seen = self.headers = {}

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                seen[self.path] = self.headers.get("X-Amzn-Trace-Id")
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = QuietServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def world():
    daemon = PollingDaemon()
    api = RuntimeAPI(on_post=daemon.drain)
    down = Downstream()
    yield daemon, api, down
    api.close()
    down.close()
    daemon.close()


def start(lam, world, opt=None, **extra):
    python, _version, runtime, _layer, default_opt, task = lam
    daemon, api, down = world
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": str(runtime),  # Lambda's /var/runtime
        "LAMBDA_TASK_ROOT": str(task),
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_XRAY_DAEMON_ADDRESS": daemon.address,
        "AWS_LAMBDA_FUNCTION_NAME": "orders-fn",
        "T_DOWNSTREAM": str(down.port),
        "XRAY_AUTOINST_RAISE": "1",
    }
    env.update(extra)
    wrapper = Path(opt or default_opt) / "xray-run"
    return subprocess.Popen([str(wrapper), python, "-m", "awslambdaric", "app.handler"],
                            cwd=str(task), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(proc):
    proc.kill()
    out, _ = proc.communicate(timeout=10)
    return out


def trace(n, sampled="1"):
    root = "1-5759e988-%024x" % (0xbd862e3fe1be46a994272700 + n)
    parent = "%016x" % (0x53995c3f42cd8a00 + n)
    return root, parent, f"Root={root};Parent={parent};Sampled={sampled}"


def test_invocations_under_the_layer(lam, world):
    daemon, api, down = world
    proc = start(lam, world)
    r1, p1, h1 = trace(1)
    r2, p2, h2 = trace(2)
    r3, _p3, h3 = trace(3, "0")
    r4, p4, h4 = trace(4)
    api.invoke("req-1", {"calls": 2}, h1)
    api.invoke("req-2", {"calls": 1, "raise": True}, h2)
    api.invoke("req-3", {"calls": 1}, h3)
    api.invoke("req-4", {}, h4)
    results = {r: api.wait(r) for r in ("req-1", "req-2", "req-3", "req-4")}
    out = finish(proc)
    docs = daemon.drain()
    assert not daemon.bad and max(daemon.sizes) <= 64 * 1024
    for doc in docs:
        validate(doc)
        # the agent never sends a segment of its own: Lambda records the function's
        assert doc["type"] == "subsegment", doc
    by_trace = {d["trace_id"]: d for d in docs}
    assert sorted(by_trace) == sorted([r1, r2, r4]), out  # nothing for Sampled=0
    assert len(docs) == 3

    first, failed, last = by_trace[r1], by_trace[r2], by_trace[r4]
    assert (first["parent_id"], failed["parent_id"], last["parent_id"]) == (p1, p2, p4)
    assert first["name"] == "orders-fn" and first["aws"] == {"request_id": "req-1"}
    assert first["annotations"] == {"cold_start": True}
    assert last["annotations"] == {"cold_start": False}
    calls = first["subsegments"]
    assert [c["http"]["request"]["url"] for c in calls] == [
        f"http://127.0.0.1:{down.port}/req-1/0", f"http://127.0.0.1:{down.port}/req-1/1"]
    # the downstream got the invocation's trace, with the calling subsegment as Parent
    for i, c in enumerate(calls):
        assert down.headers[f"/req-1/{i}"] == f"Root={r1};Parent={c['id']};Sampled=1"
    assert down.headers["/req-3/0"].startswith(f"Root={r3};")
    assert down.headers["/req-3/0"].endswith("Sampled=0")

    # the handler's exception: fault and cause on the function's subsegment, the runtime's
    # error report unchanged (no frame of the agent in it)
    assert failed["fault"] is True
    [exc] = failed["cause"]["exceptions"]
    assert (exc["type"], exc["message"]) == ("ValueError", "the handler failed")
    assert exc["stack"][0]["label"] == "handler"
    assert results["req-2"]["kind"] == "error"
    assert b"xray_autoinst" not in results["req-2"]["body"]
    assert results["req-1"]["body"] == b'{"ok": "req-1"}'

    # each invocation's document had left the process when its result was posted
    for req, root in (("req-1", r1), ("req-2", r2), ("req-4", r4)):
        assert root in {d["trace_id"] for d in results[req]["seen"]}, req


def test_large_invocation_is_split_under_64k_and_complete(lam, world):
    daemon, api, _down = world
    proc = start(lam, world)
    root, parent, hdr = trace(10)
    api.invoke("big", {"calls": 300}, hdr)
    result = api.wait("big", timeout=60)
    finish(proc)
    docs = daemon.drain()
    assert result["kind"] == "response"
    assert len(result["seen"]) == len(docs) > 1  # all of it before the result was posted
    assert not daemon.bad and max(daemon.sizes) <= 64 * 1024
    ids = {parent}
    http = 0

    def walk(entity):
        nonlocal http
        ids.add(entity["id"])
        http += entity.get("namespace") == "remote"
        for s in entity.get("subsegments", ()):
            walk(s)

    for doc in docs:
        validate(doc)
        assert doc["type"] == "subsegment" and doc["trace_id"] == root
        walk(doc)
    assert all(d["parent_id"] in ids for d in docs)
    assert http == 300
    assert [d["name"] for d in docs if d["parent_id"] == parent] == ["orders-fn"]


def _broken_copy(lam, tmp_path, breaker):
    opt = tmp_path / "opt"
    shutil.copytree(lam[4], opt, symlinks=True)
    breaker(opt)
    return opt


@pytest.mark.parametrize("how", ["no-bootstrap", "no-python-dir", "agent-raises", "disabled"])
def test_the_function_starts_whatever_is_wrong_with_the_agent(lam, world, tmp_path, how):
    daemon, api, _down = world
    extra = {}
    if how == "no-bootstrap":
        opt = _broken_copy(lam, tmp_path,
                           lambda o: (o / "python/xray_autoinst/bootstrap.py").unlink())
    elif how == "no-python-dir":
        opt = _broken_copy(lam, tmp_path, lambda o: shutil.rmtree(o / "python"))
    elif how == "agent-raises":
        def breaker(o):
            shutil.rmtree(o / "python/xray_autoinst/__pycache__")
            (o / "python/xray_autoinst/bootstrap.py").write_text("raise RuntimeError('bad')\n")
        opt = _broken_copy(lam, tmp_path, breaker)
        extra["XRAY_AUTOINST_RAISE"] = ""
    else:
        opt = lam[4]
        extra["XRAY_ENABLED"] = "false"
    proc = start(lam, world, opt=opt, **extra)
    _root, _parent, hdr = trace(20)
    api.invoke("r", {"calls": 1}, hdr)
    result = api.wait("r")
    out = finish(proc)
    assert result["kind"] == "response" and result["body"] == b'{"ok": "r"}', out
    assert daemon.drain() == []
    if how.startswith("no-"):
        assert "the layer is incomplete" in out and "starting the function untraced" in out
    elif how == "agent-raises":
        assert "start-up failed; tracing is off" in out


def test_wrapper_execs_the_command_unchanged(lam, tmp_path):
    _python, _v, runtime, _layer, opt, _task = lam
    script = 'echo "$$"; printf "%s|" "$@"; echo; echo "$PYTHONPATH"; exit 7'
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(runtime)}
    p = subprocess.Popen([str(opt / "xray-run"), "/bin/sh", "-c", script, "sh", "a b", "--x"],
                         env=env, stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=20)
    pid, argv, pythonpath = out.splitlines()
    assert p.returncode == 7 and int(pid) == p.pid  # exec'd: same process
    assert argv == "a b|--x|"
    assert pythonpath.split(":") == [
        str(opt / "python/xray_autoinst/_startup"), str(runtime), str(opt / "python")]


def test_layer_holds_no_path_of_the_build_machine(lam):
    _python, version, _runtime, layer, _opt, _task = lam
    tag = "cpython-%s" % version.replace(".", "")
    needles = [str(ROOT).encode(), sys.prefix.encode(), b"/tmp/xray-layer-"]
    with zipfile.ZipFile(layer) as zf:
        names = zf.namelist()
        assert "xray-run" in names
        pycs = [n for n in names if n.endswith(".pyc")]
        assert pycs and all(f".{tag}." in n for n in pycs)
        for name in names:
            data = zf.read(name)
            assert not any(n in data for n in needles), name
            if name.endswith(".pyc"):
                flags = int.from_bytes(data[4:8], "little")
                assert flags == 0b01, name  # hash-based, unchecked: valid whatever the mtimes
        mode = (zf.getinfo("xray-run").external_attr >> 16)
        assert mode & stat.S_IXUSR


def test_xray_run_in_a_pip_target_layout(lam, tmp_path):
    """``pip install --target DIR xray-autoinst`` (a hand-made layer): DIR/bin/xray-run finds
    the hook beside it, and its options work although the console script's #! names an
    interpreter of the machine that installed it."""
    python = lam[0]
    target = tmp_path / "python"
    shutil.copytree(lam[4] / "python", target)
    (target / "bin").mkdir()
    shutil.copy2(BIN / "xray-run", target / "bin" / "xray-run")
    (target / "bin" / "xray-autoinst").write_text(
        "#!/build/machine/venv/bin/python\nimport sys\nfrom xray_autoinst.cli import main\n"
        "sys.exit(main())\n")
    os.chmod(target / "bin" / "xray-autoinst", 0o755)
    env = {"PATH": f"{Path(python).parent}:/usr/bin:/bin", "XRAY_AUTOINST_RAISE": "1"}
    code = "import sys; print('xray_autoinst.importhook' in sys.modules)"
    proc = subprocess.run([str(target / "bin" / "xray-run"), python, "-c", code], env=env,
                          capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "True\n", "")
    proc = subprocess.run([str(target / "bin" / "xray-run"), "--check"], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "awslambdaric" in proc.stdout


def test_with_packages_are_built_for_the_functions_platform(lam, tmp_path):
    """--with goes through pip for the target: compiled code for arm64 and that Python."""
    python, version = lam[0], lam[1]
    layer = tmp_path / "arm.zip"
    env = dict(os.environ, PATH=f"{Path(python).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([str(BIN / "xray-autoinst"), "lambda-layer", "-o", str(layer),
                           "--python", version, "--arch", "arm64", "--with", "simplejson"],
                          capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0 and "pip install failed" in proc.stderr and not CI:
        pytest.skip("PyPI not reachable: " + proc.stderr[-300:])
    assert proc.returncode == 0, proc.stderr
    tag = "cpython-%s" % version.replace(".", "")
    with zipfile.ZipFile(layer) as zf:
        sos = [n for n in zf.namelist() if n.startswith("python/simplejson/") and
               n.endswith(".so")]
    assert sos and all(f".{tag}-aarch64-linux-gnu.so" in n for n in sos), sos
