"""httpx in-process, sync ``Client`` and ``AsyncClient``: one subsegment per exchange (each
redirect hop its own), the trace header on the wire, streamed responses ending at close,
errors, redaction, many tasks on one loop, and failures that must not reach the application."""

import asyncio
import inspect
import socket
import threading
import time

import httpx
import pytest
from test_http_servers import LocalServer, make_cert, parse_trace_header
from xray_testing import free_port, install_tracer, names, only_doc, segment, subs, validate

from xray_autoinst.contrib import _http, _http_data, http_httpx
from xray_autoinst.core.tracer import current_entity


class AsyncServer(LocalServer):
    """LocalServer (plain or TLS) plus ``/redirect/<n>`` (n hops of 302 to
    ``/redirect/<n-1>``, then 200), ``/slow`` (answers after 50 ms) and ``/big`` (200 kB)."""

    def answer(self, handler):
        path = handler.path
        if path.startswith("/redirect/"):
            n = int(path.rsplit("/", 1)[1])
            if n > 0:
                return 302, [("Location", f"/redirect/{n - 1}")], b""
            return 200, [("Content-Type", "text/plain")], b"landed"
        if path.startswith("/slow"):
            time.sleep(0.05)
        if path.startswith("/big"):
            return 200, [("Content-Type", "text/plain")], b"x" * 200_000
        return super().answer(handler)


@pytest.fixture(scope="module")
def server():
    s = AsyncServer()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _fresh(server):
    server.requests.clear()


@pytest.fixture
def patched():
    http_httpx.patch()
    yield
    http_httpx.unpatch()


def _flags(sub):
    return {f for f in ("error", "throttle", "fault") if sub.get(f)}


def run(coro):
    return asyncio.run(coro)


# -- sync Client ---------------------------------------------------------------------------------
def test_client_get_one_subsegment_with_header(tracer, patched, server):
    t, emitter = tracer
    with segment(t) as seg:
        with httpx.Client() as client:
            r = client.get(server.url("/a?x=1"))
    assert (r.status_code, r.text) == (200, "hello")
    doc = only_doc(emitter)
    [sub] = subs(doc)
    assert sub["name"] == "127.0.0.1" and sub["namespace"] == "remote"
    assert sub["http"] == {
        "request": {"method": "GET", "url": server.url("/a?x=1")},
        "response": {"status": 200, "content_length": 5},
    }
    assert not _flags(sub)
    [hdr] = server.trace_headers()
    assert parse_trace_header(hdr) == {"Root": seg.trace_id, "Parent": sub["id"], "Sampled": "1"}


def test_module_level_api_and_post(tracer, patched, server):
    t, emitter = tracer
    with segment(t):
        httpx.post(server.url("/form"), content=b"payload-secret")
        httpx.request("DELETE", server.url("/thing/1"))
    posted, deleted = subs(only_doc(emitter))
    assert posted["http"]["request"] == {"method": "POST", "url": server.url("/form")}
    assert deleted["http"]["request"] == {"method": "DELETE", "url": server.url("/thing/1")}
    assert "payload-secret" not in emitter.raw[0]


def test_each_redirect_hop_is_its_own_exchange(tracer, patched, server):
    t, emitter = tracer
    with segment(t):
        with httpx.Client(follow_redirects=True) as client:
            r = client.get(server.url("/redirect/2"))
    assert r.text == "landed" and len(r.history) == 2
    hops = subs(only_doc(emitter))
    assert [h["http"]["request"]["url"] for h in hops] == [
        server.url("/redirect/2"), server.url("/redirect/1"), server.url("/redirect/0")]
    assert [h["http"]["response"]["status"] for h in hops] == [302, 302, 200]
    # each hop carried its own subsegment's id, not the first hop's copied header
    parents = [parse_trace_header(h)["Parent"] for h in server.trace_headers()]
    assert parents == [h["id"] for h in hops]


@pytest.mark.parametrize(
    "status, flags",
    [(404, {"error"}), (429, {"error", "throttle"}), (503, {"fault"}), (302, set())],
)
def test_status_flags(tracer, patched, server, status, flags):
    t, emitter = tracer
    with segment(t):
        assert httpx.get(server.url(f"/status/{status}")).status_code == status
    [sub] = subs(only_doc(emitter))
    assert _flags(sub) == flags
    assert sub["http"]["response"]["status"] == status
    assert "cause" not in sub


def test_connection_refused_fault_and_cause_error_unchanged(tracer):
    t, emitter = tracer
    url = f"http://127.0.0.1:{free_port()}/x"
    with pytest.raises(httpx.ConnectError) as bare:
        httpx.get(url)
    http_httpx.patch()
    try:
        with segment(t):
            with pytest.raises(httpx.ConnectError) as traced:
                httpx.get(url)
    finally:
        http_httpx.unpatch()
    assert type(traced.value) is type(bare.value) and str(traced.value) == str(bare.value)
    [sub] = subs(only_doc(emitter))
    assert sub["fault"] is True and sub["http"]["request"]["url"] == url
    assert "response" not in sub["http"]
    [exc] = sub["cause"]["exceptions"]
    assert exc["type"] == "ConnectError" and exc["remote"] is True
    assert not any("xray_autoinst" in f["path"] for f in exc["stack"])


def test_streamed_response_ends_when_closed(tracer, patched, server):
    t, emitter = tracer
    with segment(t):
        with httpx.Client() as client:
            with client.stream("GET", server.url("/big")) as r:
                first = next(r.iter_bytes(chunk_size=1000))
                reading = time.time()  # the body is being read: the exchange is still open
            closed_at = time.time()
    assert len(first) == 1000
    [sub] = subs(only_doc(emitter))
    assert sub["http"]["response"] == {"status": 200, "content_length": 200_000}
    assert reading <= sub["end_time"] <= closed_at


def test_streamed_response_left_open_ends_with_its_own_document(tracer, patched, server):
    """A response still open when the request ends is sent on its own when it is closed."""
    t, emitter = tracer
    client = httpx.Client()
    with segment(t) as seg:
        r = client.send(client.build_request("GET", server.url("/late")), stream=True)
    assert len(emitter.documents) == 1 and "subsegments" not in emitter.documents[0]
    r.read()
    r.close()
    client.close()
    late = emitter.documents[1]
    validate(late)
    assert late["type"] == "subsegment" and late["parent_id"] == seg.id
    assert late["http"]["response"]["status"] == 200


def test_header_set_by_the_caller_is_kept(tracer, patched, server):
    t, emitter = tracer
    mine = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    with segment(t):
        httpx.get(server.url("/r"), headers={"x-amzn-trace-id": mine})
    assert server.trace_headers() == [mine]
    assert len(subs(only_doc(emitter))) == 1


def test_w3c_traceparent_when_that_propagator_is_on(server, patched):
    from xray_autoinst.core import header

    t, emitter = install_tracer({"XRAY_PROPAGATORS": "xray,tracecontext"})
    token = current_entity.set(None)
    mine = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
    try:
        with segment(t):
            with httpx.Client(follow_redirects=True) as client:
                client.get(server.url("/redirect/1"))
                client.get(server.url("/mine"), headers={"traceparent": mine})
    finally:
        current_entity.reset(token)
    doc = only_doc(emitter)
    hop1, hop2, own = subs(doc)
    seen = [r["headers"].get("traceparent") for r in server.requests]
    assert seen[2] == mine  # the caller's is kept
    for hdr, sub in zip(seen[:2], (hop1, hop2), strict=True):
        parsed = header.parse_traceparent(hdr)
        assert (parsed.root, parsed.parent, parsed.sampled) == (doc["trace_id"], sub["id"], "1")


def test_query_secrets_and_userinfo_are_not_recorded(tracer, patched, server):
    t, emitter = tracer
    with segment(t):
        httpx.get(f"http://alice:s3cret@127.0.0.1:{server.port}/q?user=bob&Password=hunter2"
                  "&api_key=k1&X-Amz-Signature=s1&page=2#frag",
                  headers={"Authorization": "Bearer SECRETVALUE", "Cookie": "sid=COOKIEVAL"})
    [sub] = subs(only_doc(emitter))
    assert sub["http"]["request"]["url"] == server.url(
        "/q?user=bob&Password=REDACTED&api_key=REDACTED&X-Amz-Signature=REDACTED&page=2")
    for secret in ("hunter2", "k1", "s1", "s3cret", "alice", "SECRETVALUE", "COOKIEVAL"):
        assert secret not in emitter.raw[0].replace("http", "")


def test_outside_any_request_nothing_recorded_nothing_injected(tracer, patched, server):
    t, emitter = tracer
    httpx.get(server.url("/free"))
    assert emitter.documents == []
    assert server.trace_headers() == [None]


def test_unsampled_request_propagates_sampled_0(server, patched):
    t, emitter = install_tracer(
        {"XRAY_SAMPLING_RULES": '{"version": 2, "default": {"fixed_target": 0, "rate": 0}}'})
    token = current_entity.set(None)
    try:
        seg, tok = t.begin_segment("svc")
        httpx.get(server.url("/u"))
        t.end_segment(seg, tok)
    finally:
        current_entity.reset(token)
    assert emitter.documents == []
    [hdr] = server.trace_headers()
    assert parse_trace_header(hdr) == {"Root": seg.trace_id, "Parent": seg.id, "Sampled": "0"}


def test_inside_an_aws_call_no_second_node(tracer, patched, server):
    """An AWS SDK call made over httpx is the node; its HTTP exchange adds nothing."""
    t, emitter = tracer
    with segment(t):
        aws = t.begin_subsegment("S3", "aws")
        httpx.get(server.url("/bucket"))
        t.end_subsegment(aws)
    [aws_doc] = subs(only_doc(emitter))
    assert aws_doc["name"] == "S3" and "subsegments" not in aws_doc
    assert parse_trace_header(server.trace_headers()[0])["Parent"] == aws_doc["id"]


def test_agent_traffic_is_never_recorded(server, patched):
    t, emitter = install_tracer(
        {"AWS_XRAY_DAEMON_ADDRESS": f"udp:127.0.0.1:2000 tcp:127.0.0.1:{server.port}"})
    token = current_entity.set(None)
    try:
        with segment(t):
            httpx.post(server.url("/GetSamplingRules", host="localhost"), json={})
            tok = _http.internal.set(True)
            try:
                httpx.get(server.url("/internal"))
            finally:
                _http.internal.reset(tok)
    finally:
        current_entity.reset(token)
    assert "subsegments" not in only_doc(emitter)
    assert server.trace_headers() == [None, None]


def test_context_missing_call_makes_a_trace_per_call(server, patched):
    t, emitter = install_tracer({"XRAY_CONTEXT_MISSING": "call", "XRAY_SERVICE_NAME": "batch"})
    token = current_entity.set(None)
    try:
        httpx.get(server.url("/job"))
        assert current_entity.get() is None
    finally:
        current_entity.reset(token)
    doc = only_doc(emitter)
    assert doc["name"] == "batch"
    [sub] = subs(doc)
    assert parse_trace_header(server.trace_headers()[0])["Parent"] == sub["id"]


def test_a_traced_layer_underneath_records_nothing_more(tracer, patched, server):
    """A transport whose connection pool sends through http.client (traced too): one
    subsegment, the httpx exchange's, and one header, its own."""
    import http.client

    import httpcore

    from xray_autoinst.contrib import http_client

    class ViaHttpClient:
        def handle_request(self, req):
            conn = http.client.HTTPConnection(req.url.host.decode(), req.url.port, timeout=10)
            conn.request(req.method.decode(), req.url.target.decode(),
                         headers={k.decode(): v.decode() for k, v in req.headers})
            r = conn.getresponse()
            body = r.read()
            conn.close()
            return httpcore.Response(r.status, headers=r.getheaders(), content=body)

        def close(self):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    t, emitter = tracer
    transport = httpx.HTTPTransport()
    transport._pool = ViaHttpClient()
    http_client.patch()
    try:
        with segment(t):
            with httpx.Client(transport=transport) as client:
                assert client.get(server.url("/nested")).text == "hello"
    finally:
        http_client.unpatch()
    [sub] = subs(only_doc(emitter))
    assert sub["http"]["request"]["url"] == server.url("/nested") and "subsegments" not in sub
    [hdr] = server.trace_headers()
    assert parse_trace_header(hdr)["Parent"] == sub["id"]


# -- connection phases ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("cert"))


@pytest.fixture(scope="module")
def tls_server(cert):
    s = AsyncServer(*cert)
    yield s
    s.close()


def phase_names(sub):
    """The phases of the exchange's one ``connect`` child, checked to lie within it."""
    [connect] = subs(sub)
    assert connect["name"] == "connect"
    assert sub["start_time"] <= connect["start_time"] <= connect["end_time"] <= sub["end_time"]
    return names(connect)


def test_new_connection_has_phases_keep_alive_reuse_has_none(tracer, patched, server):
    t, emitter = tracer
    with segment(t):
        with httpx.Client() as client:
            client.get(server.url("/one"))
            client.get(server.url("/two"))
    first, second = subs(only_doc(emitter))
    assert phase_names(first) == ["dns", "dial"]
    assert "subsegments" not in second


def test_https_new_connection_has_dns_dial_tls(tracer, patched, tls_server, cert):
    t, emitter = tracer
    import ssl

    ctx = ssl.create_default_context(cafile=cert[0])
    url = tls_server.url("/secure", host="localhost")
    with segment(t):
        with httpx.Client(verify=ctx) as client:
            client.get(url)
            client.get(url)

        async def main():
            async with httpx.AsyncClient(verify=ctx) as client:
                await client.get(url)

        run(main())
    sync_first, sync_second, async_first = subs(only_doc(emitter))
    assert sync_first["name"] == "localhost" and sync_first["http"]["request"]["url"] == url
    assert phase_names(sync_first) == ["dns", "dial", "tls"]
    assert "subsegments" not in sync_second
    # the async clients resolve in a worker thread: the lookup is inside dial
    assert phase_names(async_first) in (["dial", "tls"], ["dns", "dial", "tls"])


def test_refused_connect_marks_the_dial(tracer, patched):
    t, emitter = tracer
    with segment(t):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{free_port()}/")
    [sub] = subs(only_doc(emitter))
    [connect] = subs(sub)
    assert connect["fault"] is True
    assert subs(connect)[-1]["name"] == "dial" and subs(connect)[-1]["fault"] is True


# -- AsyncClient ---------------------------------------------------------------------------------
def test_async_client_get_stream_and_error(tracer, patched, server):
    t, emitter = tracer
    refused = f"http://127.0.0.1:{free_port()}/x"

    async def main():
        with segment(t) as seg:
            async with httpx.AsyncClient(follow_redirects=True) as client:
                r = await client.get(server.url("/redirect/1"))
                async with client.stream("GET", server.url("/big")) as s:
                    size = sum([len(c) async for c in s.aiter_bytes()])
                with pytest.raises(httpx.ConnectError):
                    await client.get(refused)
        return seg, r, size

    seg, r, size = run(main())
    assert r.text == "landed" and size == 200_000
    hop1, hop2, big, failed = subs(only_doc(emitter))
    assert [s["http"]["request"]["url"] for s in (hop1, hop2, big, failed)] == [
        server.url("/redirect/1"), server.url("/redirect/0"), server.url("/big"), refused]
    assert big["http"]["response"] == {"status": 200, "content_length": 200_000}
    assert failed["fault"] is True and failed["cause"]["exceptions"][0]["type"] == "ConnectError"
    assert [parse_trace_header(h) for h in server.trace_headers()] == [
        {"Root": seg.trace_id, "Parent": s["id"], "Sampled": "1"} for s in (hop1, hop2, big)]


def test_many_tasks_on_one_loop_each_under_its_own_segment(tracer, patched, server):
    t, emitter = tracer
    tasks = 20

    async def request(client, i):
        with segment(t, name=f"task{i}") as seg:
            for j in range(3):
                await client.get(server.url(f"/slow/{i}/{j}"))
                await asyncio.sleep(0)
        return seg

    async def main():
        async with httpx.AsyncClient() as client:
            return await asyncio.gather(*(request(client, i) for i in range(tasks)))

    segs = run(main())
    docs = {d["name"]: d for d in emitter.documents}
    assert len(docs) == tasks
    by_parent = {}
    for hdr in server.trace_headers():
        h = parse_trace_header(hdr)
        by_parent[h["Parent"]] = h["Root"]
    for i, seg in enumerate(segs):
        doc = docs[f"task{i}"]
        validate(doc)
        assert doc["trace_id"] == seg.trace_id
        urls = [s["http"]["request"]["url"] for s in subs(doc)]
        assert urls == [server.url(f"/slow/{i}/{j}") for j in range(3)]
        assert all(by_parent[s["id"]] == seg.trace_id for s in subs(doc))


def test_async_wrapper_stays_a_coroutine_function(patched):
    method = httpx.AsyncHTTPTransport.handle_async_request
    assert inspect.iscoroutinefunction(method)
    assert method.__name__ == "handle_async_request"


# -- never break the application ---------------------------------------------------------------
@pytest.mark.parametrize("helper", [
    "_http_data.idle", "_http_data.begin_request", "_http_data.end_request",
    "_http.record_response", "_http._url", "_http_data.phases_end"])
def test_instrumentation_failure_leaves_calls_unchanged(server, patched, monkeypatch, helper):
    t, emitter = install_tracer({"XRAY_AUTOINST_RAISE": "0"})

    def broken(*args, **kwargs):
        raise RuntimeError("instrumentation bug")

    module, name = helper.split(".")
    monkeypatch.setattr({"_http": _http, "_http_data": _http_data}[module], name, broken)
    token = current_entity.set(None)
    try:
        with segment(t):
            r = httpx.get(server.url("/status/418"))
            assert (r.status_code, r.text) == (418, "status 418")
            with httpx.stream("GET", server.url("/big")) as s:
                assert len(s.read()) == 200_000

            async def main():
                async with httpx.AsyncClient() as client:
                    return (await client.get(server.url("/ok"))).text

            assert run(main()) == "hello"
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://127.0.0.1:{free_port()}/")
        [doc] = emitter.documents
        validate(doc)
    finally:
        current_entity.reset(token)


def test_threads_each_with_their_own_segment(tracer, patched, server):
    t, emitter = tracer
    client = httpx.Client()

    def work(i):
        with segment(t, name=f"thread{i}"):
            client.get(server.url(f"/t/{i}"))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    client.close()
    for doc in emitter.documents:
        validate(doc)
        i = doc["name"][len("thread"):]
        assert [s["http"]["request"]["url"] for s in subs(doc)] == [server.url(f"/t/{i}")]


def test_unpatch_restores_everything():
    from httpx._transports import default

    def methods():
        return [default.HTTPTransport.__dict__["handle_request"],
                default.AsyncHTTPTransport.__dict__["handle_async_request"]] + [
                    cls.__dict__[name] for cls, name, _ in http_httpx._httpcore_targets()]

    before = methods()
    original_getaddrinfo = socket.getaddrinfo
    assert len(before) == 6  # httpcore's connects are found
    http_httpx.patch()
    http_httpx.patch()
    assert all(a is not b for a, b in zip(methods(), before, strict=True))
    assert socket.getaddrinfo is not original_getaddrinfo
    http_httpx.unpatch()
    assert methods() == before
    assert socket.getaddrinfo is original_getaddrinfo
