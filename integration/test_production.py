"""Real production conditions: pre-fork workers, exit, signals, header trust, broken patchers."""

import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from xray_testing import (
    BIN,
    ROOT,
    agent_env,
    free_port,
    http_get,
    stop,
    validate,
    wait_http,
    xray_run,
)

APPS = ROOT / "integration" / "apps"
PY = sys.executable


def gunicorn(daemon, *extra, **env):
    port = free_port()
    cmd = xray_run(str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", *extra, "plainapp:app")
    p = subprocess.Popen(cmd, cwd=APPS, env=agent_env(daemon, **env), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    wait_http(port, "/warmup", proc=p)
    return p, port


def test_requests_across_four_preloaded_workers_give_distinct_segments(daemon):
    p, port = gunicorn(daemon, "--preload", "--workers", "4")
    try:
        daemon.wait(1)
        daemon.clear()
        n = 60
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: http_get(port, "/pid?0.02"), range(n)))
        pids = {body for _s, _h, body in results}
        assert len(pids) >= 2, "the load did not reach several workers"
        docs = daemon.wait(n)
        assert len(docs) == n
        for d in docs:
            validate(d)
        assert len({d["id"] for d in docs}) == n
        assert len({d["trace_id"] for d in docs}) == n
    finally:
        stop(p)


def test_sigterm_while_a_request_is_in_flight_loses_nothing(daemon):
    p, port = gunicorn(daemon, "--workers", "2", "--graceful-timeout", "10")
    try:
        daemon.wait(1)
        daemon.clear()
        result = {}
        th = threading.Thread(target=lambda: result.update(r=http_get(port, "/slow?1.0")))
        th.start()
        time.sleep(0.4)
        stop(p)  # SIGTERM to the master: workers finish the request and exit
        th.join(10)
        assert result["r"][0] == 200
        docs = daemon.wait(1, timeout=10)
        assert docs[0]["http"]["request"]["url"].endswith("/slow?1.0")
        validate(docs[0])
    finally:
        stop(p)


SCRIPT_EXIT = textwrap.dedent("""
    import sys, threading, time
    from xray_autoinst.wsgi import XRayMiddleware

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/hang":
            started.set()
            time.sleep(60)
        start_response("200 OK", [])
        return [b"ok"]

    started = threading.Event()
    mw = XRayMiddleware(app, name="exiting")
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_HOST": "h",
           "wsgi.url_scheme": "http"}
    for _ in range(300):
        list(mw(dict(env), lambda s, h, e=None: None))
    th = threading.Thread(target=lambda: mw(dict(env, PATH_INFO="/hang"),
                                            lambda s, h, e=None: None), daemon=True)
    th.start()
    started.wait(5)
    sys.exit(3)
""")


def test_exit_sends_everything_and_open_requests_in_progress(daemon, tmp_path):
    script = tmp_path / "exiting.py"
    script.write_text(SCRIPT_EXIT)
    proc = subprocess.run(xray_run(PY, str(script)), env=agent_env(daemon),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    docs = daemon.wait(301, timeout=10)
    assert len(docs) == 301
    for d in docs:
        validate(d)
    hung = [d for d in docs if d.get("in_progress")]
    assert len(hung) == 1 and hung[0]["http"]["request"]["url"] == "http://h/hang"


SCRIPT_MP = textwrap.dedent("""
    import multiprocessing, os, sys, json
    from xray_autoinst.wsgi import XRayMiddleware
    from xray_autoinst.core.tracer import get_tracer, current_entity

    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"ok"]

    mw = XRayMiddleware(app, name="mp")
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_HOST": "h",
           "wsgi.url_scheme": "http"}

    def child(q):
        inherited = current_entity.get()
        for _ in range(5):
            list(mw(dict(env, PATH_INFO="/child"), lambda s, h, e=None: None))
        get_tracer().shutdown()
        q.put(inherited is None)

    def parent_app(environ, start_response):
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        procs = [ctx.Process(target=child, args=(q,)) for _ in range(3)]
        for p in procs:
            p.start()
        ok = all(q.get(timeout=20) for _ in procs)
        for p in procs:
            p.join()
        start_response("200 OK", [])
        return [b"clean" if ok else b"inherited"]

    out = b"".join(XRayMiddleware(parent_app, name="mp")(dict(env, PATH_INFO="/parent"),
                                                         lambda s, h, e=None: None))
    print(out.decode())
""")


def test_multiprocessing_children_get_their_own_state(daemon, tmp_path):
    script = tmp_path / "mp.py"
    script.write_text(SCRIPT_MP)
    proc = subprocess.run(xray_run(PY, str(script)), env=agent_env(daemon),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "clean"
    docs = daemon.wait(16, timeout=10)
    time.sleep(0.3)
    docs = daemon.documents
    assert len(docs) == 16, [d["http"]["request"]["url"] for d in docs]
    for d in docs:
        validate(d)
    assert len({d["id"] for d in docs}) == 16
    assert sum(d["http"]["request"]["url"].endswith("/parent") for d in docs) == 1


def test_multiprocessing_children_send_everything_without_shutdown(daemon, tmp_path):
    # a child of multiprocessing ends in os._exit, skipping atexit: what it queued in its
    # last sender interval must still be sent (its exit function flushes the agent)
    script = tmp_path / "mp_noshutdown.py"
    script.write_text(SCRIPT_MP.replace("    get_tracer().shutdown()\n", ""))
    assert "shutdown" not in script.read_text()
    proc = subprocess.run(xray_run(PY, str(script)), env=agent_env(daemon),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    daemon.wait(16, timeout=10)
    time.sleep(0.3)
    docs = daemon.documents
    assert len(docs) == 16, [d["http"]["request"]["url"] for d in docs]
    assert sum(d["http"]["request"]["url"].endswith("/child") for d in docs) == 15


def test_untrusted_header_flood_samples_at_the_local_rate(daemon):
    rules = '{"version": 2, "default": {"fixed_target": 0, "rate": 0.0}}'
    p, port = gunicorn(daemon, "--workers", "1", XRAY_TRUST_TRACE_HEADER="false",
                       XRAY_SAMPLING_RULES=rules)
    try:
        root = "1-5759e988-bd862e3fe1be46a994272793"
        for _ in range(20):
            status, headers, _ = http_get(port, "/", headers={
                "X-Amzn-Trace-Id": f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1"})
            assert status == 200
            assert headers["X-Amzn-Trace-Id"] == f"Root={root}"  # Root kept
        time.sleep(0.5)
        assert daemon.documents == []
    finally:
        stop(p)
    # trusted (the default): the same flood is sampled, as the caller decided
    p, port = gunicorn(daemon, "--workers", "1", XRAY_SAMPLING_RULES=rules)
    try:
        for _ in range(5):
            http_get(port, "/", headers={"X-Amzn-Trace-Id": f"Root={root};Sampled=1"})
        assert {d["trace_id"] for d in daemon.wait(5)} == {root}
    finally:
        stop(p)


SCRIPT_BROKEN = textwrap.dedent("""
    import sys, types
    # a patcher that raises, registered for a real module
    broken = types.ModuleType("broken_patcher")
    def patch():
        raise RuntimeError("injected patcher failure")
    broken.patch = patch
    sys.modules["broken_patcher"] = broken
    from xray_autoinst import registry, bootstrap
    registry.INTEGRATIONS["broken"] = registry.Integration(("json",), "broken_patcher", None)
    bootstrap.start()
    import json  # already imported: the hook runs at once
    import colorsys  # an unrelated import still works
    registry.INTEGRATIONS["broken2"] = registry.Integration(("colorsys",), "broken_patcher",
                                                            None)
    del sys.modules["colorsys"]
    bootstrap.start()
    import colorsys as c2
    print(json.dumps({"ok": True, "hsv": c2.rgb_to_hsv(1, 0, 0)}),
          bootstrap.status["broken"], "|", bootstrap.status["broken2"])
""")


def test_a_raising_patcher_leaves_imports_and_the_app_working(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text(SCRIPT_BROKEN)
    env = agent_env()
    env.pop("XRAY_AUTOINST_RAISE")
    proc = subprocess.run([PY, str(script)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('{"ok": true, "hsv": [0.0, 1.0, 1]}')
    assert "failed: RuntimeError: injected patcher failure" in proc.stdout
    warnings = [ln for ln in proc.stderr.splitlines() if "could not be applied" in ln]
    assert len(warnings) == 2  # one per integration, once


def test_sigterm_with_default_disposition_still_sends_the_last_requests(daemon):
    """A plain `python app.py` (wsgiref) killed by SIGTERM right after its last request."""
    import signal

    port = free_port()
    p = subprocess.Popen(xray_run(PY, str(APPS / "plainapp.py"), str(port)),
                         env=agent_env(daemon), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(port, "/warmup", proc=p)
        for i in range(5):
            assert http_get(port, f"/last{i}")[0] == 200
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == -signal.SIGTERM  # it still dies of the signal
    finally:
        stop(p)
    urls = [d["http"]["request"]["url"] for d in daemon.wait(6, timeout=5)]
    assert all(any(u.endswith(f"/last{i}") for u in urls) for i in range(5)), urls
