"""The demo (`make demo`) end to end: the ported vision app under `xray-run`, the picsum stand-in,
a moto server and the local daemon, and what the store holds afterwards."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import urllib.parse
import zlib

import pytest
from PIL import Image
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

DEMO = ROOT / "examples" / "demo.py"
APP = ROOT / "examples" / "vision" / "main.go-port.py"
SERVICE = "VisionService.Analyse"


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


demo = _load("xray_demo", DEMO)
standin = sys.modules["picsum_standin"]  # demo.py imported it


def _cli(*args, store) -> dict | list:
    done = subprocess.run(
        [str(BIN / "xray-autoinst"), *args, "--json", "--store", str(store)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _walk(entity, depth=0):
    for sub in entity.get("subsegments", []):
        yield sub, entity
        yield from _walk(sub, depth + 1)


def _header(headers: dict) -> dict:
    value = next(v for k, v in headers.items() if k.lower() == "x-amzn-trace-id")
    return dict(part.split("=", 1) for part in value.split(";"))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    assert (BIN / "xray-run").exists(), f"the agent is not installed beside {sys.executable}"
    out = io.StringIO()
    result = demo.run(tmp_path_factory.mktemp("demo"), out=out, width=140)
    traces = {tid: _cli("trace", tid, store=result.store) for tid in result.trace_ids}
    graph = _cli("map", store=result.store)
    return result, out.getvalue(), traces, graph


def test_pages_show_pictures_and_labels(demo_run):
    result, _, _, _ = demo_run
    assert [p.status for p in result.pages] == [200, 200]
    for page in result.pages:
        assert page.pictures == 2
        assert len(re.findall(r'<img src="data:image/jpeg;base64,', page.body)) == 2
        assert page.labels and all(re.fullmatch(r".+ %\d+\.\d\d", label) for label in page.labels)


def test_each_page_view_is_one_segment(demo_run):
    result, _, traces, _ = demo_run
    assert len(result.trace_ids) == 2
    for trace in traces.values():
        assert [s["name"] for s in trace["segments"]] == [SERVICE]
        segment = trace["segments"][0]
        validate(segment)
        assert segment["http"]["request"]["method"] == "GET"
        assert segment["http"]["response"]["status"] == 200
        assert not segment.get("fault") and not segment.get("error")


def test_picture_exchanges_redirect_then_image_with_connection_phases(demo_run):
    result, _, traces, _ = demo_run
    host = urllib.parse.urlsplit(result.picsum_url).hostname
    for trace in traces.values():
        segment = trace["segments"][0]
        remote = [s for s in segment["subsegments"] if s.get("namespace") == "remote"]
        assert len(remote) == 4, [s.get("http") for s in remote]  # 2 pictures x (302, image)
        redirects = [s for s in remote if s["http"]["response"]["status"] == 302]
        images = [s for s in remote if s["http"]["response"]["status"] == 200]
        assert len(redirects) == 2 and len(images) == 2
        for sub in remote:
            assert sub["name"] == host
            assert sub["http"]["request"]["method"] == "GET"
            assert sub["http"]["request"]["url"].startswith(result.picsum_url + "/")
            # urllib opens a new connection per exchange: each has connect -> dns, dial
            (connect,) = [c for c in sub.get("subsegments", []) if c["name"] == "connect"]
            assert [c["name"] for c in connect["subsegments"]] == ["dns", "dial"]
            assert sub["start_time"] <= connect["start_time"] <= connect["end_time"]
            assert connect["end_time"] <= sub["end_time"]
            for phase in connect["subsegments"]:
                assert connect["start_time"] <= phase["start_time"] <= phase["end_time"]
                assert phase["end_time"] <= connect["end_time"]
        for sub in redirects:
            assert re.search(r"/500/500\?random=\d$", sub["http"]["request"]["url"])
        for sub in images:
            url = sub["http"]["request"]["url"]
            assert re.search(r"/id/\d+/500/500\.jpg\?hmac=\w+$", url)
            assert sub["http"]["response"]["content_length"] > 1000


def test_rekognition_calls_are_aws_subsegments(demo_run):
    _, _, traces, _ = demo_run
    for trace in traces.values():
        segment = trace["segments"][0]
        calls = [s for s in segment["subsegments"] if s.get("namespace") == "aws"]
        assert [c["name"] for c in calls] == ["rekognition", "rekognition"]
        pictures_done = max(s["end_time"] for s in segment["subsegments"]
                            if s.get("namespace") == "remote")
        for call in calls:
            assert call["aws"]["operation"] == "DetectLabels"
            assert call["aws"]["region"] == demo.REGION
            assert call["aws"]["request_id"]
            assert call["http"]["response"]["status"] == 200
            assert call["start_time"] >= pictures_done  # labelled after both pictures came
            # the AWS call is the node: its HTTP is not recorded as a second one under it
            assert not [s for s, _ in _walk(call) if s.get("namespace") == "remote"]


def test_image_host_received_the_trace_header(demo_run):
    result, _, traces, _ = demo_run
    exchanges = {}  # subsegment id -> (trace id, url)
    for tid, trace in traces.items():
        for sub, _parent in _walk(trace["segments"][0]):
            if sub.get("namespace") == "remote":
                exchanges[sub["id"]] = (tid, sub["http"]["request"]["url"])
    assert len(exchanges) == 8
    assert len(result.picsum_requests) == 8
    parents = []
    for request in result.picsum_requests:
        header = _header(request["headers"])
        # Parent is the subsegment of that very exchange, in the trace named by Root
        assert exchanges[header["Parent"]] == (header["Root"], result.picsum_url + request["path"])
        assert header["Sampled"] == "1"
        parents.append(header["Parent"])
    assert sorted(parents) == sorted(exchanges)


def test_service_map(demo_run):
    result, _, _, graph = demo_run
    host = urllib.parse.urlsplit(result.picsum_url).hostname
    assert graph["traces"] == 2
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert set(nodes) == {"client", f"service:{SERVICE}", "aws:rekognition", f"remote:{host}"}
    assert nodes["aws:rekognition"]["type"] == "AWS::rekognition"
    assert nodes[f"remote:{host}"]["type"] == "remote"
    edges = {(e["source"], e["target"]): e for e in graph["edges"]}
    assert set(edges) == {
        ("client", f"service:{SERVICE}"),
        (f"service:{SERVICE}", "aws:rekognition"),
        (f"service:{SERVICE}", f"remote:{host}"),
    }
    assert edges[("client", f"service:{SERVICE}")]["requests"] == 2
    assert edges[(f"service:{SERVICE}", "aws:rekognition")]["requests"] == 4
    assert edges[(f"service:{SERVICE}", f"remote:{host}")]["requests"] == 8
    assert all(e["fault_rate"] == 0 and e["error_rate"] == 0 for e in edges.values())


def test_output_shows_the_views_and_stops_everything(demo_run):
    result, out, _, _ = demo_run
    store = result.store
    for command in (f"$ xray-autoinst traces --store {store}",
                    f"$ xray-autoinst trace {result.trace_ids[0]} --store {store}",
                    f"$ xray-autoinst map --store {store}"):
        assert command in out
    assert "DetectLabels" in out and "connect" in out and "dns" in out
    assert re.search(r"stopped the app \(pid \d+\), local daemon \(pid \d+\), "
                     r"moto server \(pid \d+\), picsum stand-in", out)
    assert set(result.pids) == {"the app", "local daemon", "moto server"}
    for pid in result.pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_interrupted_demo_stops_what_it_started(tmp_path):
    """Ctrl-C (SIGINT to the demo only, as a terminal sends it) once the app runs."""
    proc = subprocess.Popen(
        [sys.executable, str(DEMO), "--dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "asking for the page" in line:
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(lines) + out
    assert proc.returncode == 130, (out, err)
    assert "interrupted; everything it started is stopped" in err
    stopped = re.search(r"^stopped (.*)$", out, re.MULTILINE)
    assert stopped, out
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", stopped.group(1))]
    assert len(pids) == 3 and "picsum stand-in" in stopped.group(1)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# -- the app's failures show where they happened -----------------------------------------------
def _run_app(daemon, **env):
    port = free_port()
    proc = subprocess.Popen(
        xray_run(sys.executable, str(APP)),
        env=agent_env(daemon, XRAY_SERVICE_NAME=SERVICE, HOST="127.0.0.1", PORT=port,
                      AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1", AWS_MAX_ATTEMPTS="1", **env),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    wait_http(port, "/missing", proc=proc)
    return proc, port


def _page_segment(daemon):
    docs = daemon.wait(1, predicate=lambda d: d.get("name") == SERVICE
                       and d.get("http", {}).get("response", {}).get("status") != 404)
    (segment,) = docs
    validate(segment)
    return segment


def test_picture_host_down_is_a_502_and_a_fault_on_its_subsegment(daemon):
    dead = free_port()
    proc, port = _run_app(daemon, PICSUM_URL=f"http://127.0.0.1:{dead}",
                          AWS_ENDPOINT_URL_REKOGNITION=f"http://127.0.0.1:{free_port()}")
    try:
        status, _, body = http_get(port, "/")
        segment = _page_segment(daemon)
    finally:
        stop(proc)
    assert status == 502
    assert b"502 Bad Gateway" in body and f"127.0.0.1:{dead}".encode() in body
    assert segment["fault"] is True and segment["http"]["response"]["status"] == 502
    remote = [s for s in segment["subsegments"] if s.get("namespace") == "remote"]
    assert len(remote) == 2  # both fetches tried, each failed to connect
    for sub in remote:
        assert sub["fault"] is True
        assert sub["cause"]["exceptions"][0]["type"] == "ConnectionRefusedError"
    assert not [s for s in segment["subsegments"] if s.get("namespace") == "aws"]


def test_rekognition_down_is_a_500_and_a_fault_on_its_subsegment(daemon):
    picsum = standin.PicsumStandin().start()
    proc, port = _run_app(daemon, PICSUM_URL=picsum.url,
                          AWS_ENDPOINT_URL_REKOGNITION=f"http://127.0.0.1:{free_port()}")
    try:
        status, _, body = http_get(port, "/")
        segment = _page_segment(daemon)
    finally:
        stop(proc)
        picsum.stop()
    assert status == 500
    assert b"Rekognition" in body and b"Could not connect" in body
    assert segment["fault"] is True and segment["http"]["response"]["status"] == 500
    assert len([s for s in segment["subsegments"] if s.get("namespace") == "remote"]) == 4
    (call,) = [s for s in segment["subsegments"] if s.get("namespace") == "aws"]
    assert call["name"] == "rekognition" and call["aws"]["operation"] == "DetectLabels"
    assert call["fault"] is True and call["cause"]["exceptions"]


# -- the stand-in itself ---------------------------------------------------------------------
def test_standin_redirects_like_picsum_and_serves_pictures():
    picsum = standin.PicsumStandin().start()
    port = picsum.server_address[1]
    try:
        status, headers, _ = http_get(port, "/200/300?random=3")
        assert status == 302
        location = headers["Location"]
        match = re.fullmatch(rf"{picsum.url}/id/(\d+)/200/300\.jpg\?hmac=\w+", location)
        assert match, location
        status, headers, body = http_get(port, urllib.parse.urlsplit(location).path)
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        assert int(headers["Content-Length"]) == len(body)
        with Image.open(io.BytesIO(body)) as picture:
            assert (picture.format, picture.size) == ("JPEG", (200, 300))
        # the PNG encoder, with or without Pillow: a valid 8-bit RGB PNG of the asked size
        status, headers, png = http_get(port, f"/id/{match.group(1)}/40/30.png")
        assert status == 200 and headers["Content-Type"] == "image/png"
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        pos, idat = 8, b""
        while pos < len(png):
            (length,) = struct.unpack(">I", png[pos:pos + 4])
            kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
            (crc,) = struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])
            assert zlib.crc32(kind + data) & 0xFFFFFFFF == crc
            if kind == b"IHDR":
                assert struct.unpack(">IIBB", data[:10]) == (40, 30, 8, 2)
            elif kind == b"IDAT":
                idat += data
            pos += 12 + length
        assert len(zlib.decompress(idat)) == 30 * (1 + 40 * 3)
        assert http_get(port, "/seed/abc/10/10")[1]["Location"] == \
            http_get(port, "/seed/abc/10/10")[1]["Location"]
        assert http_get(port, "/6000/10")[0] == 400
        assert http_get(port, "/nope")[0] == 404
    finally:
        picsum.stop()
