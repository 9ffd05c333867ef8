"""uWSGI: the application wrapped when uWSGI loads it (it has no Python loader to hook), C forks
(PID checked on use), with and without threads and lazy-apps."""

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
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
UWSGI = BIN / "uwsgi"

pytestmark = pytest.mark.skipif(
    not UWSGI.exists() and shutil.which("uwsgi") is None,
    reason="uwsgi is not installed (pip install uwsgi)",
)


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--enable-threads"],
        ["--enable-threads", "--lazy-apps"],
        ["--enable-threads", "--py-call-osafterfork"],
        ["--threads", "2", "--py-call-osafterfork", "--lazy-apps"],
    ],
    ids=["no-threads", "enable-threads", "lazy-apps", "osafterfork", "threads-lazy"],
)
def test_uwsgi_workers_trace_every_request_once(daemon, extra):
    port = free_port()
    cmd = xray_run(str(UWSGI), "--http-socket", f"127.0.0.1:{port}", "--module", "plainapp:app",
                   "--master", "--processes", "4", "--die-on-term", "--disable-logging", *extra)
    p = subprocess.Popen(cmd, cwd=APPS, env=agent_env(daemon), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(port, "/warmup", proc=p)
        daemon.wait(1)
        daemon.clear()
        n = 40
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: http_get(port, "/pid?0.02"), range(n)))
        assert all(r[0] == 200 for r in results)
        assert len({r[2] for r in results}) >= 2, "the load did not reach several workers"
        docs = daemon.wait(n, timeout=15)
        assert len(docs) == n
        for d in docs:
            validate(d)
            assert d["name"] == "plainapp"
        assert len({d["id"] for d in docs}) == n
        assert len({d["trace_id"] for d in docs}) == n
        try:  # uWSGI answers an unhandled exception by closing the connection
            assert http_get(port, "/boom")[0] == 500
        except ConnectionError:
            pass
        boom = daemon.wait(n + 1)[-1]
        assert boom["fault"] is True and boom["cause"]["exceptions"][0]["type"] == "RuntimeError"
    finally:
        out = stop(p)
    assert "could not be applied" not in out, out
