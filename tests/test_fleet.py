"""Fitting into the fleet: W3C trace context, log correlation, the public API, where the service
runs (origin and the aws.* blocks)."""

import asyncio
import http.server
import json
import logging
import threading
import time
import urllib.request

import pytest
from xray_testing import install_tracer, only_doc, segment, validate

import xray_autoinst
from xray_autoinst import config, logs
from xray_autoinst.contrib import log_logging
from xray_autoinst.core import encoder, header, resources
from xray_autoinst.core.tracer import current_entity

W3C_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
W3C_SPAN = "00f067aa0ba902b7"
XRAY_ROOT = "1-4bf92f35-77b34da6a3ce929d0e0e4736"


# -- W3C trace context -------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    (f"00-{W3C_TRACE}-{W3C_SPAN}-01", (XRAY_ROOT, W3C_SPAN, "1")),
    (f"00-{W3C_TRACE}-{W3C_SPAN}-00", (XRAY_ROOT, W3C_SPAN, "0")),
    (f"00-{W3C_TRACE.upper()}-{W3C_SPAN}-03", (XRAY_ROOT, W3C_SPAN, "1")),
    (f"01-{W3C_TRACE}-{W3C_SPAN}-01-future", (XRAY_ROOT, W3C_SPAN, "1")),
    (f"00-{W3C_TRACE}-{W3C_SPAN}-01-extra", None),  # version 00 has nothing after the flags
    (f"ff-{W3C_TRACE}-{W3C_SPAN}-01", None),
    (f"00-{'0' * 32}-{W3C_SPAN}-01", None),
    (f"00-{W3C_TRACE}-{'0' * 16}-01", None),
    (f"00-{W3C_TRACE[:-1]}-{W3C_SPAN}-01", None),
    ("00-xyz", None),
    ("", None),
    ("00-" + "é" * 32, None),
])
def test_parse_traceparent(value, expected):
    hdr = header.parse_traceparent(value)
    if expected is None:
        assert hdr is None
    else:
        assert (hdr.root, hdr.parent, hdr.sampled) == expected


def test_format_traceparent_round_trips():
    value = header.format_traceparent(XRAY_ROOT, W3C_SPAN, True)
    assert value == f"00-{W3C_TRACE}-{W3C_SPAN}-01"
    assert header.parse_traceparent(value).root == XRAY_ROOT
    assert header.format_traceparent(XRAY_ROOT, W3C_SPAN, False).endswith("-00")


def _wsgi_call(environ_headers):
    from xray_autoinst.wsgi import XRayMiddleware

    seen = {}

    def app(environ, start_response):
        seen["entity"] = current_entity.get()
        start_response("200 OK", [])
        return [b"ok"]

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_HOST": "svc"}
    environ.update(environ_headers)
    result = XRayMiddleware(app)(environ, lambda s, h, e=None: None)
    list(result)
    getattr(result, "close", lambda: None)()
    return seen["entity"]


def test_inbound_traceparent_is_continued(tracer):
    _t, emitter = tracer
    entity = _wsgi_call({"HTTP_TRACEPARENT": f"00-{W3C_TRACE}-{W3C_SPAN}-01",
                         "HTTP_TRACESTATE": "vendor=abc"})
    doc = only_doc(emitter)
    assert doc["trace_id"] == XRAY_ROOT and doc["parent_id"] == W3C_SPAN
    assert entity.tracestate == "vendor=abc"


def test_xray_header_wins_over_traceparent(tracer):
    _t, emitter = tracer
    root = "1-5759e988-bd862e3fe1be46a994272793"
    _wsgi_call({"HTTP_X_AMZN_TRACE_ID": f"Root={root};Parent=53995c3f42cd8ad8;Sampled=1",
                "HTTP_TRACEPARENT": f"00-{W3C_TRACE}-{W3C_SPAN}-01"})
    assert only_doc(emitter)["trace_id"] == root


def test_unsampled_traceparent_records_nothing(tracer):
    _t, emitter = tracer
    _wsgi_call({"HTTP_TRACEPARENT": f"00-{W3C_TRACE}-{W3C_SPAN}-00"})
    assert emitter.documents == []


def test_asgi_inbound_traceparent(tracer):
    from xray_autoinst.asgi import XRayMiddleware

    _t, emitter = tracer

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive():
        return {"type": "http.request"}

    async def send(message):
        pass

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [
        (b"host", b"svc"), (b"traceparent", f"00-{W3C_TRACE}-{W3C_SPAN}-01".encode())]}
    asyncio.run(XRayMiddleware(app)(scope, receive, send))
    doc = only_doc(emitter)
    assert doc["trace_id"] == XRAY_ROOT and doc["parent_id"] == W3C_SPAN


class _Echo(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self):
        _Echo.seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a):
        pass


@pytest.fixture
def echo_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Echo.seen = []
    yield srv
    srv.shutdown()


@pytest.fixture
def http_patched():
    from xray_autoinst.contrib import http_client

    http_client.patch()
    yield
    http_client.unpatch()


@pytest.mark.parametrize("propagators, expect", [
    ("xray,tracecontext", {"x-amzn-trace-id", "traceparent"}),
    ("xray", {"x-amzn-trace-id"}),
    ("tracecontext", {"traceparent"}),
])
def test_outbound_headers_follow_the_propagators(echo_server, http_patched, propagators, expect):
    t, emitter = install_tracer({"XRAY_PROPAGATORS": propagators})
    with segment(t):
        urllib.request.urlopen(f"http://127.0.0.1:{echo_server.server_port}/", timeout=5).read()
    doc = only_doc(emitter)
    [sub] = doc["subsegments"]
    got = _Echo.seen[-1]
    assert {h for h in ("x-amzn-trace-id", "traceparent") if h in got} == expect
    if "traceparent" in expect:
        parsed = header.parse_traceparent(got["traceparent"])
        assert parsed.root == doc["trace_id"] and parsed.parent == sub["id"]
        assert parsed.sampled == "1"


def test_outbound_passes_tracestate_on_and_keeps_the_callers(echo_server, http_patched):
    t, emitter = install_tracer()
    seg, token = t.begin_segment()
    seg.tracestate = "vendor=abc"
    url = f"http://127.0.0.1:{echo_server.server_port}/"
    urllib.request.urlopen(url, timeout=5).read()
    got = _Echo.seen[-1]
    assert got["tracestate"] == "vendor=abc"
    mine = f"00-{W3C_TRACE}-{W3C_SPAN}-01"
    urllib.request.urlopen(urllib.request.Request(url, headers={"traceparent": mine}),
                           timeout=5).read()
    assert _Echo.seen[-1]["traceparent"] == mine  # the caller's own is never replaced
    t.end_segment(seg, token)


def test_bad_propagators_value_is_one_clear_problem():
    cfg = config.from_env({"XRAY_PROPAGATORS": "b3"})
    assert cfg.propagators == ("xray", "tracecontext")
    [problem] = cfg.problems
    assert "XRAY_PROPAGATORS" in problem and "'b3'" in problem and "tracecontext" in problem


# -- log correlation ---------------------------------------------------------------------------
@pytest.fixture
def log_patched():
    log_logging.patch()
    yield
    log_logging.unpatch()


def test_log_records_carry_the_trace(tracer, log_patched):
    t, _ = tracer
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append((record.xray_trace_id, record.xray_entity_id,
                            self.format(record)))

    log = logging.getLogger("test_fleet.correlation")
    handler = Keep()
    handler.setFormatter(logging.Formatter("[%(xray_trace_id)s %(xray_entity_id)s] %(message)s"))
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("outside")
        with segment(t) as seg:
            log.warning("inside")
            sub = t.begin_subsegment("work")
            log.warning("in a subsegment")
            t.end_subsegment(sub)
        unsampled, token = t.begin_segment(sampled=False)
        log.warning("unsampled")
        t.end_segment(unsampled, token)
    finally:
        log.removeHandler(handler)
    assert records[0] == ("", "", "[ ] outside")
    assert records[1] == (seg.trace_id, seg.id, f"[{seg.trace_id} {seg.id}] inside")
    assert records[2][:2] == (seg.trace_id, sub.id)
    assert records[3][:2] == (unsampled.trace_id, "")


def test_structlog_and_loguru_helpers(tracer):
    t, _ = tracer
    assert logs.structlog_processor(None, "info", {"event": "x"}) == {"event": "x"}
    with segment(t) as seg:
        event = logs.structlog_processor(None, "info", {"event": "x"})
        record = {"extra": {}}
        logs.loguru_patcher(record)
    assert event["xray_trace_id"] == seg.trace_id and event["xray_entity_id"] == seg.id
    assert record["extra"] == {"xray_trace_id": seg.trace_id, "xray_entity_id": seg.id}


# -- the public API ----------------------------------------------------------------------------
def test_api_records_into_the_current_request(tracer, monkeypatch):
    from xray_autoinst import api

    t, emitter = tracer
    warned = []
    monkeypatch.setattr(api, "_warn", lambda msg, *args: warned.append(msg % args))
    assert xray_autoinst.current_trace_id() is None
    xray_autoinst.annotate("outside", 1)  # no request: nothing, no error
    with segment(t) as seg:
        assert xray_autoinst.current_trace_id() == seg.trace_id
        xray_autoinst.annotate("order_id", 42)
        xray_autoinst.annotate("bad key!", 1)
        xray_autoinst.annotate("obj", object())
        xray_autoinst.add_metadata("cart", {"items": 3}, namespace="shop")
        xray_autoinst.set_user("alice")
        with xray_autoinst.subsegment("price") as block:
            assert block is not None
            xray_autoinst.annotate("currency", "EUR")

        @xray_autoinst.subsegment("render")
        def render(x):
            return x * 2

        @xray_autoinst.subsegment("fetch")
        async def fetch():
            await asyncio.sleep(0)
            raise LookupError("not there")

        assert render(21) == 42
        with pytest.raises(LookupError):
            asyncio.run(fetch())
    doc = only_doc(emitter)
    assert doc["annotations"] == {"order_id": 42}
    assert doc["metadata"] == {"shop": {"cart": {"items": 3}}}
    assert doc["user"] == "alice"
    price, rendered, fetched = doc["subsegments"]
    assert price["name"] == "price" and price["annotations"] == {"currency": "EUR"}
    assert rendered["name"] == "render" and "fault" not in rendered
    assert fetched["fault"] and fetched["cause"]["exceptions"][0]["type"] == "LookupError"
    assert any("bad key!" in w for w in warned) and any("object" in w for w in warned)


def test_api_async_context_manager(tracer):
    t, emitter = tracer

    async def main():
        with segment(t):
            async with xray_autoinst.subsegment("step"):
                await asyncio.sleep(0)

    asyncio.run(main())
    assert [s["name"] for s in only_doc(emitter)["subsegments"]] == ["step"]


def test_api_is_a_no_op_without_the_agent():
    import subprocess
    import sys

    code = ("import xray_autoinst, sys\n"
            "with xray_autoinst.subsegment('x'):\n    xray_autoinst.annotate('k', 1)\n"
            "@xray_autoinst.subsegment('f')\ndef f():\n    return 7\n"
            "assert f() == 7 and xray_autoinst.current_trace_id() is None\n"
            "assert 'xray_autoinst.core.emitter' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""


# -- where the service runs --------------------------------------------------------------------
class _Metadata(http.server.BaseHTTPRequestHandler):
    mode = "ok"
    calls: list = []

    def _answer(self, status, body):
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        _Metadata.calls.append(("PUT", self.path))
        if self.mode == "hang":
            time.sleep(2)
        if self.mode in ("refuse-token", "hang"):
            return self._answer(403, b"no")
        self._answer(200, b"token-123")

    def do_GET(self):
        _Metadata.calls.append(("GET", self.path, self.headers.get("X-aws-ec2-metadata-token")))
        if self.path == "/latest/dynamic/instance-identity/document":
            return self._answer(200, {"instanceId": "i-0abc", "availabilityZone": "eu-west-1a",
                                      "instanceType": "t3.micro", "imageId": "ami-123"})
        if self.path == "/ecs":
            return self._answer(200, {"Name": "web", "DockerId": "d" * 64,
                                      "ContainerARN": "arn:aws:ecs:eu-west-1:1:container/x"})
        if self.path == "/ecs/task":
            return self._answer(200, {"Cluster": "arn:aws:ecs:eu-west-1:1:cluster/prod",
                                      "TaskARN": "arn:aws:ecs:eu-west-1:1:task/t", "Family": "web",
                                      "LaunchType": "FARGATE", "AvailabilityZone": "eu-west-1b"})
        if self.path.endswith("/configmaps/cluster-info"):
            return self._answer(200, {"data": {"cluster.name": "prod-eks"}})
        self._answer(404, b"")

    def log_message(self, *a):
        pass


@pytest.fixture
def metadata():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metadata)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Metadata.mode = "ok"
    _Metadata.calls = []
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


def _root(tmp_path, files):
    for path, text in files.items():
        full = tmp_path / path.lstrip("/")
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(text)
    return str(tmp_path)


DMI = {"/sys/devices/virtual/dmi/id/sys_vendor": "Amazon EC2\n"}


def _cfg(root, **env):
    base = {"XRAY_AUTOINST_RESOURCE_ROOT": root,
            "XRAY_AUTOINST_IMDS_ENDPOINT": "http://127.0.0.1:9"}
    base.update(env)
    return config.from_env(base)


@pytest.mark.parametrize("mode, token", [("ok", "token-123"), ("refuse-token", None)])
def test_ec2_with_imdsv2_or_v1(tmp_path, metadata, mode, token):
    _Metadata.mode = mode
    found = resources.detect(_cfg(_root(tmp_path, DMI), XRAY_AUTOINST_IMDS_ENDPOINT=metadata))
    assert found == {"ec2": {"instance_id": "i-0abc", "availability_zone": "eu-west-1a",
                             "instance_size": "t3.micro", "ami_id": "ami-123"}}
    assert _Metadata.calls[0] == ("PUT", "/latest/api/token")
    assert _Metadata.calls[-1][2] == token
    assert resources.origin(found) == "AWS::EC2::Instance"


def test_hanging_imds_gives_up_quickly(tmp_path, metadata):
    _Metadata.mode = "hang"
    t0 = time.monotonic()
    resources.detect(_cfg(_root(tmp_path, DMI), XRAY_AUTOINST_IMDS_ENDPOINT=metadata))
    assert time.monotonic() - t0 < 1.5  # a few hundred ms per request, never seconds


def test_no_evidence_no_request(tmp_path, metadata):
    assert resources.detect(_cfg(_root(tmp_path, {}),
                                 XRAY_AUTOINST_IMDS_ENDPOINT=metadata)) == {}
    assert _Metadata.calls == []  # not EC2 by its DMI data: IMDS is never asked


def test_ecs_eks_beanstalk_and_precedence(tmp_path, metadata):
    files = dict(DMI)
    files["/var/elasticbeanstalk/xray/environment.conf"] = json.dumps(
        {"deployment_id": 3, "version_label": "v7", "environment_name": "shop-prod"})
    files["/var/run/secrets/kubernetes.io/serviceaccount/token"] = "tok"
    files["/proc/self/cgroup"] = "0::/kubepods/pod1/" + "c" * 64 + "\n"
    cfg = _cfg(_root(tmp_path, files), XRAY_AUTOINST_IMDS_ENDPOINT=metadata,
               ECS_CONTAINER_METADATA_URI_V4=metadata + "/ecs",
               KUBERNETES_SERVICE_HOST="127.0.0.1", XRAY_AUTOINST_K8S_API=metadata)
    found = resources.detect(cfg)
    assert found["elastic_beanstalk"] == {"environment_name": "shop-prod",
                                          "version_label": "v7", "deployment_id": 3}
    assert found["eks"]["cluster_name"] == "prod-eks" and found["eks"]["container_id"] == "c" * 64
    assert found["ecs"]["cluster_arn"].endswith("cluster/prod")
    assert found["ecs"]["launch_type"] == "fargate" and found["ecs"]["container"] == "web"
    assert found["ec2"]["instance_id"] == "i-0abc"
    assert resources.origin(found) == "AWS::ElasticBeanstalk::Environment"
    del found["elastic_beanstalk"]
    assert resources.origin(found) == "AWS::EKS::Container"
    del found["eks"]
    assert resources.origin(found) == "AWS::ECS::Container"


def test_segments_carry_origin_service_and_log_groups(tracer):
    t, emitter = tracer
    cfg = config.from_env({"XRAY_SERVICE_VERSION": "2.4.1", "XRAY_LOG_GROUP_NAMES":
                           "/app/orders,arn:aws:logs:eu-west-1:123:log-group:/app/other:*"})
    try:
        resources.apply(cfg, {"ec2": {"instance_id": "i-0abc", "availability_zone": "az1"}})
        with segment(t):
            sub = t.begin_subsegment("work")
            t.end_subsegment(sub)
        doc = only_doc(emitter)
    finally:
        encoder.set_segment_context()
    validate(doc)
    assert doc["origin"] == "AWS::EC2::Instance"
    assert doc["aws"]["ec2"] == {"instance_id": "i-0abc", "availability_zone": "az1"}
    assert doc["aws"]["xray"]["sdk"] == "xray-autoinst"
    assert doc["aws"]["cloudwatch_logs"] == [
        {"log_group": "/app/orders"},
        {"log_group": "/app/other", "arn": "arn:aws:logs:eu-west-1:123:log-group:/app/other:*"}]
    assert doc["service"]["runtime"] == "CPython" and doc["service"]["version"] == "2.4.1"
    assert "origin" not in doc["subsegments"][0]


def test_detection_runs_in_the_background(tmp_path, metadata):
    _Metadata.mode = "hang"  # the token request hangs: start() must not wait for it
    cfg = _cfg(_root(tmp_path, DMI), XRAY_AUTOINST_IMDS_ENDPOINT=metadata)
    saved = dict(resources._state)
    resources._state.update(thread=None, done=False, detected={}, pid=None)
    try:
        t0 = time.monotonic()
        resources.start(cfg)
        assert time.monotonic() - t0 < 0.1
        resources._state["thread"].join(5)
        assert resources.detected()["ec2"]["instance_id"] == "i-0abc"
    finally:
        resources._state.clear()
        resources._state.update(saved)
        encoder.set_segment_context()


def test_check_shows_what_was_detected(tmp_path):
    from xray_autoinst import check

    root = _root(tmp_path, {"/var/elasticbeanstalk/xray/environment.conf": json.dumps(
        {"environment_name": "shop-prod", "version_label": "v7", "deployment_id": 3})})
    text, _ok = check.report({"XRAY_AUTOINST_RESOURCE_ROOT": root, "XRAY_SAMPLING": "local",
                              "XRAY_AUTOINST_IMDS_ENDPOINT": "http://127.0.0.1:9"})
    assert "origin: AWS::ElasticBeanstalk::Environment" in text
    assert "environment_name=shop-prod" in text
    text, _ok = check.report({"XRAY_RESOURCE_DETECTION": "false", "XRAY_SAMPLING": "local"})
    assert "detection off (XRAY_RESOURCE_DETECTION=false)" in text


def test_after_a_fork_detection_waits_for_the_sender_thread(tmp_path, metadata, monkeypatch):
    """A fork hook never starts a thread (under uWSGI's C fork that can hang a worker): an
    unfinished detection is finished once the child's sender thread starts."""
    cfg = _cfg(_root(tmp_path, DMI), XRAY_AUTOINST_IMDS_ENDPOINT=metadata)
    saved = dict(resources._state)
    started = []
    monkeypatch.setattr(resources.threading.Thread, "start",
                        lambda self: started.append(self.name))
    resources._state.update(thread=None, done=False, detected={}, pid=None)
    try:
        resources.after_fork(cfg)
        assert started == [] and resources._state["pending"] is cfg
        resources.start_pending()
        assert started == ["xray-autoinst-resources"] and "pending" not in resources._state
    finally:
        resources._state.clear()
        resources._state.update(saved)
        encoder.set_segment_context()
