"""urllib3 2.x: connections urllib3 opens itself (HTTPS ahead of the request), their phases,
failures before and while the request is written, and the urllib3 integration on its own."""

import socket
import threading

import pytest
import requests
import urllib3
from test_http_servers import LocalServer, make_cert, parse_trace_header
from xray_testing import free_port, only_doc, segment, subs, validate

from xray_autoinst.contrib import _http, http_client, http_urllib3


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("cert"))


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



def test_pool_manager_https_connects_before_the_request_phases_still_nest(
        tracer, patched, tls_server, cert):
    t, emitter = tracer
    tls_server.requests.clear()
    with segment(t) as seg:
        with urllib3.PoolManager(ca_certs=cert[0]) as pool:
            for path in ("/a", "/b"):
                r = pool.request("GET", tls_server.url(path, host="localhost"))
                assert r.status == 200 and r.data == b"hello"
    first, second = subs(only_doc(emitter))
    assert first["name"] == "localhost" and first["namespace"] == "remote"
    [connect] = subs(first)
    assert [p["name"] for p in subs(connect)] == ["dns", "dial", "tls"]
    # urllib3 connected before putrequest: the exchange starts with its connect
    assert first["start_time"] == connect["start_time"]
    dns, dial, tls = subs(connect)
    assert dns["end_time"] <= dial["start_time"] + 1e-6 and dial["end_time"] <= tls["start_time"]
    assert tls["end_time"] == connect["end_time"] <= first["end_time"]
    assert "subsegments" not in second
    headers = [parse_trace_header(h) for h in tls_server.trace_headers()]
    assert [h["Parent"] for h in headers] == [first["id"], second["id"]]
    assert all(h["Root"] == seg.trace_id for h in headers)


def test_https_connect_refused_is_one_failed_exchange(tracer, patched):
    t, emitter = tracer
    port = free_port()
    with segment(t):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"https://localhost:{port}/x", timeout=5)
    [sub] = subs(only_doc(emitter))
    assert sub["name"] == "localhost" and sub["fault"] is True
    assert sub["http"]["request"]["url"] == f"https://localhost:{port}/"
    assert sub["cause"]["exceptions"][0]["remote"] is True
    [connect] = subs(sub)
    assert connect["fault"] is True
    assert subs(connect)[-1]["name"] == "dial" and subs(connect)[-1]["fault"] is True


def test_retries_are_one_exchange_each(tracer, patched):
    t, emitter = tracer
    port = free_port()
    with segment(t):
        with urllib3.PoolManager(retries=urllib3.Retry(connect=2, backoff_factor=0)) as pool:
            with pytest.raises(urllib3.exceptions.MaxRetryError):
                pool.request("GET", f"http://127.0.0.1:{port}/x")
    attempts = subs(only_doc(emitter))
    assert len(attempts) == 3
    assert all(a["fault"] and a["http"]["request"]["method"] == "GET" for a in attempts)


def test_server_hanging_up_while_the_body_is_sent(tracer, patched):
    t, emitter = tracer
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)

    def hang_up():
        c, _ = lsock.accept()
        c.recv(1024)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()  # RST

    th = threading.Thread(target=hang_up)
    th.start()
    port = lsock.getsockname()[1]
    with segment(t):
        with urllib3.PoolManager(retries=False) as pool:
            with pytest.raises(urllib3.exceptions.HTTPError):
                pool.request("POST", f"http://127.0.0.1:{port}/up", body=b"x" * (8 << 20))
    th.join()
    lsock.close()
    [sub] = subs(only_doc(emitter))
    assert sub["fault"] is True and sub["http"]["request"]["method"] == "POST"
    assert "cause" in sub


def test_urllib3_integration_alone_records_phases_only_under_aws_calls(tracer, tls_server, cert):
    t, emitter = tracer
    http_urllib3.patch()
    try:
        with segment(t):
            with urllib3.PoolManager(ca_certs=cert[0]) as pool:
                pool.request("GET", tls_server.url("/plain", host="localhost"))
            aws = t.begin_subsegment("s3", "aws")
            with urllib3.PoolManager(ca_certs=cert[0]) as pool:
                pool.request("GET", tls_server.url("/under-aws", host="localhost"))
            t.end_subsegment(aws)
    finally:
        http_urllib3.unpatch()
    doc = only_doc(emitter)
    [aws_doc] = subs(doc)
    assert aws_doc["name"] == "s3"
    [connect] = subs(aws_doc)
    assert [p["name"] for p in subs(connect)] == ["dns", "dial", "tls"]


def test_failures_in_the_urllib3_wrappers_leave_requests_unchanged(
        patched, tls_server, cert, monkeypatch):
    from xray_testing import install_tracer

    from xray_autoinst.core.tracer import current_entity

    t, emitter = install_tracer({"XRAY_AUTOINST_RAISE": "0"})

    def broken(*args, **kwargs):
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(_http, "tcp_done", broken)
    monkeypatch.setattr(_http, "attach_phases", broken)
    token = current_entity.set(None)
    try:
        with segment(t):
            r = requests.get(tls_server.url("/ok", host="localhost"), verify=cert[0], timeout=10)
            assert (r.status_code, r.text) == (200, "hello")
    finally:
        current_entity.reset(token)
    validate(only_doc(emitter))


@pytest.mark.parametrize("version, raises", [("2.0.2", True), ("2.1.0", True), ("2.2.0", False),
                                             ("2.8.0", False), ("3.0.0a1", False)])
def test_before_urllib3_2_2_a_reset_while_sending_raises_and_ends_the_exchange(version, raises):
    # urllib3 2.0 and 2.1 read the response after a broken pipe only (the end-to-end case is
    # test_server_hanging_up_while_the_body_is_sent, on urllib3 2.0.2 in tox's oldest env)
    assert http_urllib3._reset_raises(version) is raises
