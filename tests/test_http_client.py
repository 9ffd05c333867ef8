"""Outbound HTTP in-process: one subsegment per exchange through http.client, urllib.request
and requests; connection phases; the trace header on the wire; redaction; the agent's own
traffic; failures that must not reach the application."""

import http.client
import re
import socket
import ssl
import threading
import urllib.error
import urllib.request

import pytest
import requests
from test_http_servers import LocalServer, make_cert, parse_trace_header
from xray_testing import free_port, install_tracer, names, only_doc, segment, subs, validate

from xray_autoinst.contrib import _http, http_client, http_urllib3
from xray_autoinst.core.tracer import current_entity


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("cert"))


@pytest.fixture(scope="module")
def server():
    s = LocalServer()
    yield s
    s.close()


@pytest.fixture(scope="module")
def tls_server(cert):
    s = LocalServer(*cert)
    yield s
    s.close()


@pytest.fixture
def patched():
    http_client.patch()
    http_urllib3.patch()
    yield
    http_urllib3.unpatch()
    http_client.unpatch()


@pytest.fixture(autouse=True)
def _fresh(server):
    server.requests.clear()



def assert_phases(host_sub, tls):
    """``connect`` holds dns, dial (and tls), in order, within the exchange."""
    [connect] = [s for s in subs(host_sub) if s["name"] == "connect"]
    expected = ["dns", "dial", "tls"] if tls else ["dns", "dial"]
    assert names(connect) == expected
    assert host_sub["start_time"] <= connect["start_time"] <= connect["end_time"]
    assert connect["end_time"] <= host_sub["end_time"]
    prev_end = connect["start_time"]
    for phase in subs(connect):
        assert phase["start_time"] >= prev_end - 1e-6
        assert phase["start_time"] <= phase["end_time"] <= connect["end_time"]
        prev_end = phase["end_time"]
        assert "fault" not in phase and "namespace" not in phase
    return connect


# -- one subsegment per exchange -------------------------------------------------------------
def test_urllib_request_one_subsegment_with_phases_and_header(tracer, patched, server):
    t, emitter = tracer
    with segment(t) as seg:
        body = urllib.request.urlopen(server.url("/a?x=1"), timeout=10).read()
    assert body == b"hello"
    doc = only_doc(emitter)
    [sub] = subs(doc)
    assert sub["name"] == "127.0.0.1"
    assert sub["namespace"] == "remote"
    assert sub["http"] == {
        "request": {"method": "GET", "url": server.url("/a?x=1")},
        "response": {"status": 200, "content_length": 5},
    }
    assert not any(sub.get(f) for f in ("error", "fault", "throttle"))
    assert_phases(sub, tls=False)
    [hdr] = server.trace_headers()
    assert parse_trace_header(hdr) == {"Root": seg.trace_id, "Parent": sub["id"], "Sampled": "1"}


def test_requests_session_keep_alive_reuse_has_no_connect(tracer, patched, server):
    t, emitter = tracer
    with segment(t):
        with requests.Session() as s:
            for path in ("/one", "/two", "/status/404"):
                s.get(server.url(path), timeout=10)
    doc = only_doc(emitter)
    first, second, third = subs(doc)
    assert [s["http"]["request"]["url"] for s in (first, second, third)] == [
        server.url("/one"), server.url("/two"), server.url("/status/404")]
    assert_phases(first, tls=False)
    assert "subsegments" not in second and "subsegments" not in third
    assert len({r["conn"] for r in server.requests}) == 1  # really one connection
    assert third.get("error") is True and third["http"]["response"]["status"] == 404
    parents = [parse_trace_header(h)["Parent"] for h in server.trace_headers()]
    assert parents == [first["id"], second["id"], third["id"]]


def test_http_client_request_and_manual_putrequest_each_one_subsegment(tracer, patched, server):
    t, emitter = tracer
    with segment(t):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("POST", "/form", body=b"payload", headers={"Content-Type": "text/plain"})
        conn.getresponse().read()
        conn.putrequest("GET", "/manual")
        conn.putheader("Accept", "*/*")
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.read() == b"hello"
        conn.close()
    doc = only_doc(emitter)
    posted, manual = subs(doc)
    assert posted["http"]["request"] == {"method": "POST", "url": server.url("/form")}
    assert manual["http"]["request"] == {"method": "GET", "url": server.url("/manual")}
    assert_phases(posted, tls=False)
    assert "subsegments" not in manual
    ids = [parse_trace_header(h)["Parent"] for h in server.trace_headers()]
    assert ids == [posted["id"], manual["id"]]
    assert all("payload" not in str(s) for s in subs(doc))


@pytest.mark.parametrize("client", ["http.client", "urllib", "requests"])
def test_https_new_connection_has_dns_dial_tls(tracer, patched, tls_server, cert, client):
    t, emitter = tracer
    url = tls_server.url("/secure", host="localhost")
    ctx = ssl.create_default_context(cafile=cert[0])
    with segment(t):
        if client == "http.client":
            conn = http.client.HTTPSConnection("localhost", tls_server.port, context=ctx)
            conn.request("GET", "/secure")
            conn.getresponse().read()
            conn.request("GET", "/secure")  # keep-alive: no second connect
            conn.getresponse().read()
            conn.close()
        elif client == "urllib":
            urllib.request.urlopen(url, context=ctx, timeout=10).read()
        else:
            with requests.Session() as s:
                s.get(url, verify=cert[0], timeout=10)
                s.get(url, verify=cert[0], timeout=10)
    doc = only_doc(emitter)
    first = subs(doc)[0]
    assert first["name"] == "localhost"
    assert first["http"]["request"]["url"] == url
    assert first["http"]["response"]["status"] == 200
    assert_phases(first, tls=True)
    for later in subs(doc)[1:]:
        assert "subsegments" not in later
    assert len(subs(doc)) == (1 if client == "urllib" else 2)


@pytest.mark.parametrize(
    "status, flags",
    [(404, {"error"}), (429, {"error", "throttle"}), (503, {"fault"}), (302, set())],
)
def test_status_flags(tracer, patched, server, status, flags):
    t, emitter = tracer
    with segment(t):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", f"/status/{status}")
        assert conn.getresponse().status == status
        conn.close()
    [sub] = subs(only_doc(emitter))
    assert {f for f in ("error", "throttle", "fault") if sub.get(f)} == flags
    assert sub["http"]["response"]["status"] == status
    assert "cause" not in sub


# -- failures ----------------------------------------------------------------------------------
def _refused_error():
    port = free_port()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/x", timeout=5)
    except urllib.error.URLError as exc:
        return port, exc
    raise AssertionError("connection was not refused")


def test_connection_refused_fault_and_cause_application_error_unchanged(tracer, server):
    t, emitter = tracer
    _port, bare = _refused_error()
    http_client.patch()
    try:
        with segment(t):
            _port, traced = _refused_error()
    finally:
        http_client.unpatch()
    assert type(traced) is type(bare) and type(traced.reason) is type(bare.reason)
    assert str(traced) == str(bare)
    [sub] = subs(only_doc(emitter))
    assert sub["fault"] is True
    [exc] = sub["cause"]["exceptions"]
    assert exc["type"] == "ConnectionRefusedError" and exc["remote"] is True
    assert not any("xray_autoinst" in f["path"] for f in exc["stack"])
    [connect] = subs(sub)
    assert connect["fault"] is True
    dns, dial = subs(connect)
    assert dns["name"] == "dns" and "fault" not in dns
    assert dial["name"] == "dial" and dial["fault"] is True


def test_dns_failure_marks_the_dns_phase(tracer, patched, monkeypatch):
    t, emitter = tracer

    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setitem(_http._dns, "original", no_such_host)
    with segment(t):
        with pytest.raises(requests.ConnectionError):
            requests.get("http://no-such-host.invalid/", timeout=5)
    doc = only_doc(emitter)
    [sub] = subs(doc)
    assert sub["name"] == "no-such-host.invalid" and sub["fault"] is True
    [connect] = subs(sub)
    assert names(connect) == ["dns"] and subs(connect)[0]["fault"] is True


def test_tls_failure_marks_the_tls_phase(tracer, patched, tls_server):
    t, emitter = tracer
    with segment(t):
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(tls_server.url("/"), timeout=5)  # self-signed: not trusted
    [sub] = subs(only_doc(emitter))
    assert sub["fault"] is True and sub["cause"]["exceptions"][0]["remote"] is True
    [connect] = subs(sub)
    dns, dial, tls = subs(connect)
    assert tls["name"] == "tls" and tls["fault"] is True and "fault" not in dial


def test_server_closing_without_response(tracer, patched):
    t, emitter = tracer
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)

    def accept_and_close():
        c, _ = lsock.accept()
        c.recv(65536)
        c.close()

    th = threading.Thread(target=accept_and_close)
    th.start()
    with segment(t):
        conn = http.client.HTTPConnection("127.0.0.1", lsock.getsockname()[1], timeout=5)
        conn.request("GET", "/")
        with pytest.raises(http.client.RemoteDisconnected):
            conn.getresponse()
    th.join()
    lsock.close()
    [sub] = subs(only_doc(emitter))
    assert sub["fault"] is True
    assert sub["cause"]["exceptions"][0]["type"] == "RemoteDisconnected"


# -- the header ------------------------------------------------------------------------------
def test_header_set_by_the_caller_is_kept(tracer, patched, server):
    t, emitter = tracer
    mine = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    with segment(t):
        requests.get(server.url("/r"), headers={"x-amzn-trace-id": mine}, timeout=10)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.putrequest("GET", "/manual")
        conn.putheader("X-Amzn-Trace-Id", mine)
        conn.endheaders()
        conn.getresponse().read()
        conn.close()
    assert server.trace_headers() == [mine, mine]
    assert all(len(r["headers"]) == len({k.lower() for k in r["headers"]})
               for r in server.requests)
    assert len(subs(only_doc(emitter))) == 2


@pytest.mark.parametrize("lineage, tracestate, written", [
    (None, None, ()),  # the usual case: both lines formatted in begin_exchange
    ("a87bd80c:1|68fd508a:5", None, ()),  # through core.header.format
    (None, "vendor=1", ()),  # through tracer.w3c_headers
    (None, None, (("TraceParent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01"),)),  # the caller's
    (None, None, (("X-AMZN-TRACE-ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"),)),
])
def test_trace_headers_are_core_headers_formats(tracer, patched, server, lineage, tracestate,
                                                written):
    """The trace headers begin_exchange writes out itself are exactly core.header's (and a
    header the caller wrote, in any case, wins)."""
    from xray_autoinst.core import header

    t, emitter = tracer
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    with segment(t) as seg:
        seg.lineage, seg.tracestate = lineage, tracestate
        conn.putrequest("GET", "/fmt")
        for name, value in written:
            conn.putheader(name, value)
        conn.endheaders()
        conn.getresponse().read()
    conn.close()
    [sub] = subs(only_doc(emitter))
    validate(only_doc(emitter))
    [got] = server.requests
    mine = {k.lower(): v for k, v in written}
    sent = {k.lower(): v for k, v in got["headers"].items()}
    assert sent["x-amzn-trace-id"] == (mine.get("x-amzn-trace-id") or header.format(
        seg.trace_id, sub["id"], True, lineage))
    assert sent["traceparent"] == (mine.get("traceparent") or header.format_traceparent(
        seg.trace_id, sub["id"], True))
    assert sent.get("tracestate") == tracestate


def test_unsampled_request_propagates_sampled_0(server, patched):
    t, emitter = install_tracer(
        {"XRAY_SAMPLING_RULES": '{"version": 2, "default": {"fixed_target": 0, "rate": 0}}'})
    token = current_entity.set(None)
    try:
        seg, tok = t.begin_segment("svc")
        urllib.request.urlopen(server.url("/u"), timeout=10).read()
        t.end_segment(seg, tok)
    finally:
        current_entity.reset(token)
    assert emitter.documents == []
    [hdr] = server.trace_headers()
    assert parse_trace_header(hdr) == {"Root": seg.trace_id, "Parent": seg.id, "Sampled": "0"}


def test_outside_any_request_nothing_recorded_nothing_injected(tracer, patched, server):
    t, emitter = tracer
    requests.get(server.url("/free"), timeout=10)
    assert emitter.documents == []
    with segment(t):  # the same call inside a request is recorded
        requests.get(server.url("/traced"), timeout=10)
    assert len(subs(only_doc(emitter))) == 1
    assert server.trace_headers()[0] is None and server.trace_headers()[1] is not None


def test_context_missing_call_makes_a_trace_per_call(server, patched):
    t, emitter = install_tracer({"XRAY_CONTEXT_MISSING": "call", "XRAY_SERVICE_NAME": "batch"})
    token = current_entity.set(None)
    try:
        requests.get(server.url("/job"), timeout=10)
        assert current_entity.get() is None
    finally:
        current_entity.reset(token)
    doc = only_doc(emitter)
    assert doc["name"] == "batch"
    [sub] = subs(doc)
    assert sub["name"] == "127.0.0.1" and sub["http"]["response"]["status"] == 200
    assert_phases(sub, tls=False)
    assert parse_trace_header(server.trace_headers()[0])["Parent"] == sub["id"]


# -- redaction ---------------------------------------------------------------------------------
def test_query_secrets_and_userinfo_are_not_recorded(tracer, patched, server):
    t, emitter = tracer
    with segment(t):
        urllib.request.urlopen(
            server.url("/q?user=bob&Password=hunter2&api_key=k1&X-Amz-Signature=s1&page=2"),
            timeout=10).read()
        # a request in absolute form, as sent to a forward proxy, with userinfo in it
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "http://alice:s3cret@example.test:8080/p?token=abc&q=1")
        conn.getresponse().read()
        conn.close()
    doc = only_doc(emitter)
    first, proxied = subs(doc)
    assert first["http"]["request"]["url"] == server.url(
        "/q?user=bob&Password=REDACTED&api_key=REDACTED&X-Amz-Signature=REDACTED&page=2")
    assert proxied["name"] == "example.test"
    assert proxied["http"]["request"]["url"] == "http://example.test:8080/p?token=REDACTED&q=1"
    # (random entity ids may hold "abc" by chance: they are not what is checked)
    text = re.sub(r"'(1-[0-9a-f]{8}-)?[0-9a-f]{16,24}'", "''", str(doc))
    for secret in ("hunter2", "k1", "s1", "s3cret", "alice", "abc"):
        assert secret not in text.replace("http", "")


def test_redaction_list_is_configurable(server, patched):
    t, emitter = install_tracer({"XRAY_REDACT_QUERY_PARAMS": "ssn"})
    token = current_entity.set(None)
    try:
        with segment(t):
            requests.get(server.url("/c?ssn=123&token=visible"), timeout=10)
    finally:
        current_entity.reset(token)
    [sub] = subs(only_doc(emitter))
    assert sub["http"]["request"]["url"] == server.url("/c?ssn=REDACTED&token=visible")


def test_same_url_under_another_configuration_is_redacted_anew(server, patched):
    url = server.url("/same?ssn=1&token=2")
    recorded = []
    for keys in ("ssn", "token"):
        t, emitter = install_tracer({"XRAY_REDACT_QUERY_PARAMS": keys})
        token = current_entity.set(None)
        try:
            with segment(t):
                urllib.request.urlopen(url, timeout=10).read()
                urllib.request.urlopen(url, timeout=10).read()
        finally:
            current_entity.reset(token)
        recorded.append([s["http"]["request"]["url"] for s in subs(only_doc(emitter))])
    assert recorded == [[server.url("/same?ssn=REDACTED&token=2")] * 2,
                        [server.url("/same?ssn=1&token=REDACTED")] * 2]


def test_request_line_memo_is_bounded_and_per_server(tracer, patched, server, tls_server,
                                                    cert, monkeypatch):
    t, emitter = tracer
    monkeypatch.setattr(_http, "REQUESTS_CACHED", 3)
    ctx = ssl.create_default_context(cafile=cert[0])
    with segment(t):
        for i in (1, 2, 3, 4, 5, 1, 2):
            urllib.request.urlopen(server.url(f"/n/{i}?key=k{i}"), timeout=10).read()
        urllib.request.urlopen(tls_server.url("/n/1?key=k1", host="localhost"), context=ctx,
                               timeout=10).read()
    urls = [s["http"]["request"]["url"] for s in subs(only_doc(emitter))]
    assert urls == [server.url(f"/n/{i}?key=REDACTED") for i in (1, 2, 3, 4, 5, 1, 2)] + [
        tls_server.url("/n/1?key=REDACTED", host="localhost")]
    assert len(_http._requests[1]) <= 3


def test_request_headers_are_never_recorded(tracer, patched, server):
    t, emitter = tracer
    with segment(t):
        requests.get(server.url("/h"), headers={"Authorization": "Bearer SECRETVALUE"},
                     timeout=10)
    assert len(subs(only_doc(emitter))) == 1
    assert "SECRETVALUE" not in emitter.raw[0]


# -- the agent's own traffic -------------------------------------------------------------------
def test_agent_traffic_is_never_recorded(server, patched):
    t, emitter = install_tracer(
        {"AWS_XRAY_DAEMON_ADDRESS": f"udp:127.0.0.1:2000 tcp:127.0.0.1:{server.port}"})
    other = LocalServer()
    token = current_entity.set(None)
    try:
        with segment(t):
            # the sampling proxy's address
            requests.post(server.url("/GetSamplingRules"), json={}, timeout=10)

            # a thread the agent flags as its own
            def agent_work():
                conn = http.client.HTTPConnection("localhost", free_port(), timeout=5)
                try:
                    conn.request("GET", "/")
                except OSError:
                    pass

            th = threading.Thread(target=agent_work)
            th._xray_autoinst_internal = True
            th.start()
            th.join()
            # a connection marked explicitly
            conn = http.client.HTTPConnection("localhost", server.port, timeout=10)
            _http.mark_internal(conn)
            conn.request("GET", "/marked")
            conn.getresponse().read()
            conn.close()
            # the daemon's port under another loopback name
            requests.get(server.url("/GetSamplingRules", host="localhost"), timeout=10)
            # and, for contrast, the application's own call to another server
            requests.get(other.url("/app"), timeout=10)
    finally:
        current_entity.reset(token)
        other.close()
    [sub] = subs(only_doc(emitter))
    assert sub["http"]["request"]["url"] == other.url("/app")
    assert server.trace_headers() == [None, None, None]
    assert parse_trace_header(other.trace_headers()[0])["Parent"] == sub["id"]


def test_context_missing_call_leaves_agent_threads_alone(server, patched):
    _t, emitter = install_tracer({"XRAY_CONTEXT_MISSING": "call"})

    def work(path):
        requests.get(server.url(path), timeout=10)

    agent = threading.Thread(target=work, args=("/internal",))
    agent._xray_autoinst_internal = True
    agent.start()
    agent.join()
    assert emitter.documents == []
    app = threading.Thread(target=work, args=("/app",))  # an application thread is traced
    app.start()
    app.join()
    [sub] = subs(only_doc(emitter))
    assert sub["http"]["request"]["url"] == server.url("/app")
    assert server.trace_headers()[0] is None


# -- never break the application ---------------------------------------------------------------
@pytest.mark.parametrize(
    "helper",
    ["begin_exchange", "_inject", "end_exchange", "connect_begin", "connect_end",
     "send_failed", "attach_phases", "_url", "_server"],
)
def test_instrumentation_failure_leaves_calls_unchanged(server, patched, monkeypatch, helper):
    t, emitter = install_tracer({"XRAY_AUTOINST_RAISE": "0"})

    def broken(*args, **kwargs):
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(_http, helper, broken)
    token = current_entity.set(None)
    try:
        with segment(t):
            resp = urllib.request.urlopen(server.url("/ok"), timeout=10)
            assert (resp.status, resp.read()) == (200, b"hello")
            r = requests.get(server.url("/status/418"), timeout=10)
            assert (r.status_code, r.text) == (418, "status 418")
            port = free_port()
            with pytest.raises(ConnectionRefusedError) as info:
                http.client.HTTPConnection("127.0.0.1", port, timeout=5).request("GET", "/")
            assert info.value.errno == 111 or "refused" in str(info.value).lower()
        [doc] = emitter.documents
        validate(doc)
    finally:
        current_entity.reset(token)


def test_unpatch_restores_everything(server):
    original = socket.getaddrinfo
    methods = {k: http.client.HTTPConnection.__dict__[k]
               for k in ("endheaders", "getresponse", "connect")}
    http_client.patch()
    http_urllib3.patch()
    assert socket.getaddrinfo is not original
    http_client.unpatch()
    assert socket.getaddrinfo is not original  # urllib3 still uses the hook
    http_urllib3.unpatch()
    assert socket.getaddrinfo is original
    assert {k: http.client.HTTPConnection.__dict__[k] for k in methods} == methods
    assert socket.getaddrinfo("127.0.0.1", 80)
