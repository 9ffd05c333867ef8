"""``make demo``: the X-Ray post's vision app, traced with no code change, on loopback only.

Starts a picsum.photos stand-in (generated pictures, picsum's redirect), a moto server answering
Rekognition ``DetectLabels``, and the local daemon (``xray-autoinst daemon``) with a store of its
own; runs ``examples/vision/main.go-port.py`` under ``xray-run`` as ``VisionService.Analyse``;
asks for the page twice; then shows what X-Ray's console would: the trace list, the timeline of
one trace and the service map (``xray-autoinst traces``, ``trace``, ``map``), and says how to
open the same store in the browser console (``xray-autoinst ui``). Everything it started is
stopped at the end, also on Ctrl-C.

    .venv/bin/python examples/demo.py [--dir DIR] [--requests N]

Nothing here reaches beyond 127.0.0.1. ``run()`` is the same flow for the integration test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP = HERE / "vision" / "main.go-port.py"
BIN = Path(sys.executable).parent  # the virtualenv's scripts: xray-run, xray-autoinst
SERVICE = "VisionService.Analyse"
REGION = "eu-west-1"  # the post's region; moto answers for any
SAMPLE_ALL = '{"version": 2, "default": {"fixed_target": 1, "rate": 1.0}}'
START_TIMEOUT = 30.0  # seconds for each process to come up
TRACE_TIMEOUT = 20.0  # seconds for the traces to be stored

sys.path.insert(0, str(HERE / "vision"))
from picsum_standin import PicsumStandin  # noqa: E402


class DemoError(Exception):
    """Something the demo needs did not work; the message says what and where to look."""


@dataclass
class Page:
    status: int
    reason: str
    body: str
    seconds: float

    @property
    def pictures(self) -> int:
        return self.body.count("<img ")

    @property
    def labels(self) -> list[str]:
        return re.findall(r"^(.+? %[\d.]+) <br>$", self.body, re.MULTILINE)


@dataclass
class DemoRun:
    """What one run left behind, for the test: the store, the pages, the traces."""

    workdir: Path
    store: Path
    picsum_url: str = ""
    moto_url: str = ""
    daemon_address: str = ""
    app_url: str = ""
    pages: list[Page] = field(default_factory=list)
    trace_ids: list[str] = field(default_factory=list)  # oldest first
    picsum_requests: list[dict] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)  # each process started, by its label


def _clean_env(**extra: str) -> dict:
    """The environment for a child: ours, without the agent's, AWS's or proxy settings."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("XRAY_", "AWS_"))
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
        and k != "PYTHONPATH"
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "".join(f"    | {line}\n" for line in text)


def _http(url_host: str, port: int, path: str = "/", timeout: float = 60.0):
    conn = http.client.HTTPConnection(url_host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.reason, resp.read()
    finally:
        conn.close()


class Demo:
    """Starts the parts, remembers each, and stops them all in ``stop()``."""

    def __init__(self, workdir: Path, out=None):
        self.workdir = workdir
        self.out = out or sys.stdout
        self.run = DemoRun(workdir=workdir, store=workdir / "traces.db")
        self.picsum: PicsumStandin | None = None
        self.children: list[tuple[str, subprocess.Popen, Path]] = []

    # -- output -----------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # -- processes --------------------------------------------------------------------------
    def _spawn(self, label: str, argv: list[str], env: dict, log_name: str) -> subprocess.Popen:
        log = self.workdir / log_name
        with open(log, "wb") as f:
            # its own session: Ctrl-C reaches only this script, which then stops it in order
            proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                cwd=str(HERE.parent), start_new_session=True,
            )
        self.children.append((label, proc, log))
        self.run.pids[label] = proc.pid
        return proc

    def _wait(self, what: str, proc: subprocess.Popen, log: Path, ready, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            value = ready()
            if value:
                return value
            if proc.poll() is not None:
                raise DemoError(f"{what} exited with status {proc.returncode}; its log "
                                f"{log}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise DemoError(f"{what} did not start within {timeout:g} s; its log "
                                f"{log}:\n{_tail(log)}")
            time.sleep(0.1)

    def start_picsum(self) -> None:
        self.picsum = PicsumStandin("127.0.0.1", 0).start()
        self.run.picsum_url = self.picsum.url
        self.say(f"  picsum.photos stand-in   {self.picsum.url}  "
                 "(generated pictures behind picsum's /WIDTH/HEIGHT redirect)")

    def start_moto(self) -> None:
        for _attempt in range(3):  # the free port may be taken before moto binds it
            port = _free_port()
            proc = self._spawn(
                "moto server", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                "-p", str(port)], _clean_env(), "moto.log",
            )

            def answers(port=port) -> bool:
                try:
                    _http("127.0.0.1", port, "/moto-api/", timeout=2)
                    return True
                except OSError:
                    return False

            try:
                self._wait("the moto server", proc, self.workdir / "moto.log", answers)
            except DemoError:
                if proc.poll() is None:
                    raise
                self.children.pop()
                continue
            self.run.moto_url = f"http://127.0.0.1:{port}"
            self.say(f"  moto server (AWS)        {self.run.moto_url}  "
                     f"(Rekognition DetectLabels; pid {proc.pid})")
            return
        raise DemoError(f"the moto server did not start; see {self.workdir / 'moto.log'}")

    def start_daemon(self) -> None:
        store = self.run.store
        pid_file = Path(f"{store}.pid")
        proc = self._spawn(
            "local daemon",
            [str(BIN / "xray-autoinst"), "daemon", "--listen", "udp:127.0.0.1:0 tcp:127.0.0.1:0",
             "--store", str(store)],
            _clean_env(XRAY_SAMPLING_RULES=SAMPLE_ALL), "daemon.log",
        )

        def listening():
            try:
                info = json.loads(pid_file.read_text())
            except (OSError, ValueError):
                return None
            return info if info.get("pid") == proc.pid else None

        info = self._wait("the local daemon", proc, self.workdir / "daemon.log", listening)
        self.run.daemon_address = f"udp:{info['udp']} tcp:{info['tcp']}"
        self.say(f"  local X-Ray daemon       udp {info['udp']}, tcp {info['tcp']}  "
                 f"(xray-autoinst daemon; pid {proc.pid})")
        self.say(f"                           store {store}")

    def start_app(self) -> None:
        env = _clean_env(
            XRAY_SERVICE_NAME=SERVICE,
            AWS_XRAY_DAEMON_ADDRESS=self.run.daemon_address,
            XRAY_SAMPLING_RULES=SAMPLE_ALL,
            PICSUM_URL=self.run.picsum_url,
            AWS_ENDPOINT_URL_REKOGNITION=self.run.moto_url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto's fake credentials
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
            AWS_CONFIG_FILE=str(self.workdir / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.workdir / "no-aws-credentials"),
            AWS_EC2_METADATA_DISABLED="true",
            HOST="127.0.0.1",
            PORT="0",
        )
        self.say("  the app, under xray-run:")
        self.say(f"    XRAY_SERVICE_NAME={SERVICE} \\")
        self.say(f"    PICSUM_URL={self.run.picsum_url} \\")
        self.say(f"    AWS_ENDPOINT_URL_REKOGNITION={self.run.moto_url} \\")
        self.say(f"    AWS_XRAY_DAEMON_ADDRESS='{self.run.daemon_address}' \\")
        self.say("    xray-run python examples/vision/main.go-port.py")
        proc = self._spawn("the app", [str(BIN / "xray-run"), sys.executable, str(APP)], env,
                           "app.log")
        log = self.workdir / "app.log"

        def serving():
            try:
                match = re.search(r"serving on (http://[\d.]+:\d+)/", log.read_text())
            except OSError:
                return None
            return match.group(1) if match else None

        self.run.app_url = self._wait("the app", proc, log, serving)
        self.say(f"                           {self.run.app_url}/  (pid {proc.pid})")

    # -- the requests and what they left -----------------------------------------------------
    def request_pages(self, count: int) -> None:
        port = int(self.run.app_url.rsplit(":", 1)[1])
        for _ in range(count):
            started = time.monotonic()
            status, reason, body = _http("127.0.0.1", port, "/")
            page = Page(status, reason, body.decode("utf-8", "replace"),
                        time.monotonic() - started)
            self.run.pages.append(page)
            if status == 200:
                summary = f"{page.pictures} pictures, labels: " + " | ".join(page.labels)
            else:
                summary = re.sub(r"<[^>]+>", "", page.body).strip()
            self.say(f"  GET {self.run.app_url}/  ->  {status} {reason} in "
                     f"{page.seconds * 1000:.0f} ms ({len(body) // 1024} KiB): {summary}")
        if self.picsum is not None:
            self.run.picsum_requests = list(self.picsum.requests)

    def xray_autoinst(self, *args: str) -> str:
        argv = [str(BIN / "xray-autoinst"), *args, "--store", str(self.run.store)]
        done = subprocess.run(argv, env=_clean_env(), capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise DemoError(f"`xray-autoinst {' '.join(args)}` failed ({done.returncode}):\n"
                            f"{done.stderr}{done.stdout}")
        return done.stdout

    def wait_for_traces(self, count: int, timeout: float = TRACE_TIMEOUT) -> list[str]:
        """The ids of the app's finished traces, oldest first, once ``count`` are stored."""
        deadline = time.monotonic() + timeout
        while True:
            listed = json.loads(self.xray_autoinst("traces", "--json", "--service", SERVICE))
            done = [t for t in listed if not t.get("in_progress")]
            if len(done) >= count:
                ids = [t["trace_id"] for t in sorted(done, key=lambda t: t["start_time"])]
                self.run.trace_ids = ids
                return ids
            if time.monotonic() > deadline:
                raise DemoError(f"{len(done)} of {count} traces reached the store in "
                                f"{timeout:g} s; the app's log:\n"
                                f"{_tail(self.workdir / 'app.log')}daemon's log:\n"
                                f"{_tail(self.workdir / 'daemon.log')}")
            time.sleep(0.2)

    def show(self, width: int | None = None) -> None:
        wide = ["--width", str(width)] if width else []
        store = self.run.store
        first = self.run.trace_ids[0]
        self.say("# the trace list: one trace per page view")
        self.say(f"$ xray-autoinst traces --store {store}")
        self.say(self.xray_autoinst("traces", *wide))
        self.say("# the first page view's timeline: the request's segment; a subsegment per HTTP")
        self.say("# exchange with the picture host (picsum's redirect, then the picture), each")
        self.say("# with its connection phases; a subsegment per Rekognition DetectLabels call")
        self.say(f"$ xray-autoinst trace {first} --store {store}")
        self.say(self.xray_autoinst("trace", first, *wide))
        self.say("# the service map: client -> VisionService.Analyse -> picture host, Rekognition")
        self.say(f"$ xray-autoinst map --store {store}")
        self.say(self.xray_autoinst("map", *wide))

    # -- the end ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop everything started, newest first, and say so."""
        stopped = []
        for label, proc, _log in reversed(self.children):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait(5)
                stopped.append(f"{label} (pid {proc.pid})")
        self.children.clear()
        if self.picsum is not None:
            self.picsum.stop()
            self.picsum = None
            stopped.append("picsum stand-in")
        if stopped:
            self.say("stopped " + ", ".join(stopped))


def run(workdir: Path, out=None, requests: int = 2, width: int | None = None,
        show: bool = True) -> DemoRun:
    """The whole demo; stops what it started before returning or raising."""
    demo = Demo(Path(workdir), out)
    started = time.monotonic()
    try:
        demo.say(f"xray-autoinst demo: the X-Ray post's vision app as {SERVICE}, "
                 "traced with no code change, on loopback only")
        demo.say(f"(every file of this run, the trace store and each process's log: {workdir})")
        demo.say()
        demo.say("starting:")
        demo.start_picsum()
        demo.start_moto()
        demo.start_daemon()
        demo.start_app()
        demo.say()
        demo.say(f"asking for the page {requests} times:")
        demo.request_pages(requests)
        demo.wait_for_traces(requests)
        demo.say()
        if show:
            demo.show(width)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up
        try:
            demo.stop()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    demo.say(f"demo done in {time.monotonic() - started:.1f} s; look again with "
             f"`xray-autoinst traces --store {demo.run.store}` (or any other view)")
    demo.say(f"or in the browser: `xray-autoinst ui --store {demo.run.store}`, "
             "then open the address it prints (the trace list, the timeline, the service map)")
    return demo.run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", help="where to keep the store and logs (default: a new temp dir)")
    p.add_argument("--requests", type=int, default=2, help="page views (default: 2)")
    p.add_argument("--width", type=int, help="width of the views (default: the terminal's)")
    args = p.parse_args(argv)
    if not (BIN / "xray-run").exists():
        sys.stderr.write(f"demo: no xray-run beside {sys.executable}: run `make demo`\n")
        return 2
    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="xray-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    try:
        run(workdir.resolve(), requests=max(1, args.requests), width=args.width)
    except KeyboardInterrupt:
        sys.stderr.write("demo: interrupted; everything it started is stopped\n")
        return 130
    except DemoError as exc:
        sys.stderr.write(f"demo: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
