"""aiohttp client in-process (``ClientSession`` as the application creates it): one
subsegment per exchange (each redirect hop its own), the trace header on the wire, errors,
redaction, many tasks on one loop, and failures that must not reach the application."""

import asyncio
import inspect

import aiohttp
import pytest
from test_http_httpx import AsyncServer
from test_http_servers import parse_trace_header
from xray_testing import free_port, install_tracer, names, only_doc, segment, subs, validate

from xray_autoinst.contrib import _http, _http_data, http_aiohttp
from xray_autoinst.core.tracer import current_entity


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
    http_aiohttp.patch()
    yield
    http_aiohttp.unpatch()


def _flags(sub):
    return {f for f in ("error", "throttle", "fault") if sub.get(f)}


def run(coro):
    return asyncio.run(coro)


async def fetch(url, method="GET", **kwargs):
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, **kwargs) as r:
            return r.status, await r.text(), len(r.history)


def test_get_one_subsegment_with_header(tracer, patched, server):
    t, emitter = tracer

    async def main():
        with segment(t) as seg:
            return seg, await fetch(server.url("/a?x=1"))

    seg, answer = run(main())
    assert answer == (200, "hello", 0)
    [sub] = subs(only_doc(emitter))
    assert sub["name"] == "127.0.0.1" and sub["namespace"] == "remote"
    assert sub["http"] == {
        "request": {"method": "GET", "url": server.url("/a?x=1")},
        "response": {"status": 200, "content_length": 5},
    }
    assert not _flags(sub)
    [hdr] = server.trace_headers()
    assert parse_trace_header(hdr) == {"Root": seg.trace_id, "Parent": sub["id"], "Sampled": "1"}


def test_keep_alive_reuse_and_post(tracer, patched, server):
    t, emitter = tracer

    async def main():
        with segment(t):
            async with aiohttp.ClientSession() as session:
                for path in ("/one", "/two"):
                    async with session.get(server.url(path)) as r:
                        await r.read()
                async with session.post(server.url("/form"), data=b"payload-secret") as r:
                    await r.read()

    run(main())
    one, two, posted = subs(only_doc(emitter))
    assert [s["http"]["request"]["method"] for s in (one, two, posted)] == ["GET", "GET", "POST"]
    assert len({r["conn"] for r in server.requests}) == 1  # one connection, reused
    # the new connection has its phases, within the exchange; the reuses have none
    [connect] = subs(one)
    assert connect["name"] == "connect" and names(connect) == ["dns", "dial"]
    assert one["start_time"] <= connect["start_time"] <= connect["end_time"] <= one["end_time"]
    assert "subsegments" not in two and "subsegments" not in posted
    assert "payload-secret" not in emitter.raw[0]


def test_each_redirect_hop_is_its_own_exchange(tracer, patched, server):
    t, emitter = tracer

    async def main():
        with segment(t):
            return await fetch(server.url("/redirect/2"))

    assert run(main()) == (200, "landed", 2)
    hops = subs(only_doc(emitter))
    assert [h["http"]["request"]["url"] for h in hops] == [
        server.url("/redirect/2"), server.url("/redirect/1"), server.url("/redirect/0")]
    assert [h["http"]["response"]["status"] for h in hops] == [302, 302, 200]
    parents = [parse_trace_header(h)["Parent"] for h in server.trace_headers()]
    assert parents == [h["id"] for h in hops]


@pytest.mark.parametrize(
    "status, flags",
    [(404, {"error"}), (429, {"error", "throttle"}), (503, {"fault"})],
)
def test_status_flags(tracer, patched, server, status, flags):
    t, emitter = tracer

    async def main():
        with segment(t):
            return await fetch(server.url(f"/status/{status}"))

    assert run(main())[0] == status
    [sub] = subs(only_doc(emitter))
    assert _flags(sub) == flags and sub["http"]["response"]["status"] == status
    assert "cause" not in sub


def _refused(url):
    async def main():
        try:
            await fetch(url)
        except aiohttp.ClientConnectorError as exc:
            return exc
        raise AssertionError("not refused")

    return main


def test_connection_refused_fault_and_cause_error_unchanged(tracer):
    t, emitter = tracer
    url = f"http://127.0.0.1:{free_port()}/x"
    bare = run(_refused(url)())
    http_aiohttp.patch()
    try:
        async def main():
            with segment(t):
                return await _refused(url)()

        traced = run(main())
    finally:
        http_aiohttp.unpatch()
    assert type(traced) is type(bare) and str(traced) == str(bare)
    [sub] = subs(only_doc(emitter))
    assert sub["fault"] is True and sub["http"]["request"]["url"] == url
    [exc] = sub["cause"]["exceptions"]
    assert exc["type"] == "ClientConnectorError" and exc["remote"] is True
    assert not any("xray_autoinst" in f["path"] for f in exc["stack"])
    [connect] = subs(sub)
    assert connect["fault"] is True and names(connect) == ["dns", "dial"]
    assert subs(connect)[1]["fault"] is True and "fault" not in subs(connect)[0]


def test_server_closing_without_response(tracer, patched):
    t, emitter = tracer

    async def main():
        async def handle(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        try:
            with segment(t):
                with pytest.raises(aiohttp.ServerDisconnectedError):
                    await fetch(f"http://127.0.0.1:{port}/gone", method="POST", data=b"x")
        finally:
            srv.close()

    run(main())
    [sub] = subs(only_doc(emitter))
    assert sub["fault"] is True
    assert sub["cause"]["exceptions"][0]["type"] == "ServerDisconnectedError"


def test_header_set_by_the_caller_is_kept(tracer, patched, server):
    t, emitter = tracer
    mine = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"

    async def main():
        with segment(t):
            await fetch(server.url("/r"), headers={"x-amzn-trace-id": mine})

    run(main())
    assert server.trace_headers() == [mine]
    assert len(subs(only_doc(emitter))) == 1


def test_w3c_traceparent_when_that_propagator_is_on(server, patched):
    from xray_autoinst.core import header

    t, emitter = install_tracer({"XRAY_PROPAGATORS": "tracecontext"})
    token = current_entity.set(None)

    async def main():
        with segment(t):
            await fetch(server.url("/redirect/1"))

    try:
        run(main())
    finally:
        current_entity.reset(token)
    doc = only_doc(emitter)
    hops = subs(doc)
    assert len(hops) == 2
    assert server.trace_headers() == [None, None]  # the xray propagator is off
    for r, sub in zip(server.requests, hops, strict=True):
        parsed = header.parse_traceparent(r["headers"]["traceparent"])
        assert (parsed.root, parsed.parent) == (doc["trace_id"], sub["id"])


def test_query_secrets_and_userinfo_are_not_recorded(tracer, patched, server):
    t, emitter = tracer

    async def main():
        with segment(t):
            await fetch(f"http://alice:s3cret@127.0.0.1:{server.port}/q?user=bob"
                        "&Password=hunter2&api_key=k1&page=2",
                        headers={"Cookie": "sid=SECRETVALUE"})

    run(main())
    [sub] = subs(only_doc(emitter))
    assert sub["http"]["request"]["url"] == server.url(
        "/q?user=bob&Password=REDACTED&api_key=REDACTED&page=2")
    for secret in ("hunter2", "k1", "s3cret", "alice", "SECRETVALUE"):
        assert secret not in emitter.raw[0].replace("http", "")


def test_outside_any_request_nothing_recorded_nothing_injected(tracer, patched, server):
    _t, emitter = tracer
    assert run(fetch(server.url("/free")))[0] == 200
    assert emitter.documents == []
    assert server.trace_headers() == [None]


def test_unsampled_request_propagates_sampled_0(server, patched):
    t, emitter = install_tracer(
        {"XRAY_SAMPLING_RULES": '{"version": 2, "default": {"fixed_target": 0, "rate": 0}}'})
    token = current_entity.set(None)

    async def main():
        seg, tok = t.begin_segment("svc")
        await fetch(server.url("/u"))
        t.end_segment(seg, tok)
        return seg

    try:
        seg = run(main())
    finally:
        current_entity.reset(token)
    assert emitter.documents == []
    [hdr] = server.trace_headers()
    assert parse_trace_header(hdr) == {"Root": seg.trace_id, "Parent": seg.id, "Sampled": "0"}


def test_inside_an_aws_call_no_second_node(tracer, patched, server):
    """aiobotocore sends over aiohttp: the AWS call is the node, the exchange adds nothing."""
    t, emitter = tracer

    async def main():
        with segment(t):
            aws = t.begin_subsegment("S3", "aws")
            await fetch(server.url("/bucket"))
            t.end_subsegment(aws)

    run(main())
    [aws_doc] = subs(only_doc(emitter))
    assert aws_doc["name"] == "S3" and "subsegments" not in aws_doc
    assert parse_trace_header(server.trace_headers()[0])["Parent"] == aws_doc["id"]


def test_agent_traffic_is_never_recorded(server, patched):
    t, emitter = install_tracer(
        {"AWS_XRAY_DAEMON_ADDRESS": f"udp:127.0.0.1:2000 tcp:127.0.0.1:{server.port}"})
    token = current_entity.set(None)

    async def main():
        with segment(t):
            await fetch(server.url("/GetSamplingRules", host="localhost"), method="POST")

    try:
        run(main())
    finally:
        current_entity.reset(token)
    assert "subsegments" not in only_doc(emitter)
    assert server.trace_headers() == [None]


def test_many_tasks_on_one_loop_each_under_its_own_segment(tracer, patched, server):
    t, emitter = tracer
    tasks = 20

    async def request(session, i):
        with segment(t, name=f"task{i}") as seg:
            for j in range(3):
                async with session.get(server.url(f"/slow/{i}/{j}")) as r:
                    await r.read()
        return seg

    async def main():
        async with aiohttp.ClientSession() as session:
            return await asyncio.gather(*(request(session, i) for i in range(tasks)))

    segs = run(main())
    docs = {d["name"]: d for d in emitter.documents}
    assert len(docs) == tasks
    roots = {}
    for hdr in server.trace_headers():
        h = parse_trace_header(hdr)
        roots[h["Parent"]] = h["Root"]
    for i, seg in enumerate(segs):
        doc = docs[f"task{i}"]
        validate(doc)
        assert doc["trace_id"] == seg.trace_id
        assert [s["http"]["request"]["url"] for s in subs(doc)] == [
            server.url(f"/slow/{i}/{j}") for j in range(3)]
        assert all(roots[s["id"]] == seg.trace_id for s in subs(doc))


def test_wrappers_stay_coroutine_functions(patched):
    from aiohttp import client_reqrep, connector

    for method in (connector.BaseConnector.connect, connector.TCPConnector._create_connection,
                   connector.TCPConnector._resolve_host, client_reqrep.ClientRequest.send,
                   client_reqrep.ClientResponse.start):
        assert inspect.iscoroutinefunction(method)


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

    async def main():
        with segment(t):
            assert await fetch(server.url("/status/418")) == (418, "status 418", 0)
            assert await fetch(server.url("/redirect/1")) == (200, "landed", 1)
            with pytest.raises(aiohttp.ClientConnectorError):
                await fetch(f"http://127.0.0.1:{free_port()}/")

    try:
        run(main())
        [doc] = emitter.documents
        validate(doc)
    finally:
        current_entity.reset(token)


def test_unpatch_restores_everything():
    from aiohttp import client_reqrep, connector

    def methods():
        return (connector.BaseConnector.__dict__["connect"],
                connector.TCPConnector.__dict__["_create_connection"],
                connector.TCPConnector.__dict__["_resolve_host"],
                client_reqrep.ClientRequest.__dict__["send"],
                client_reqrep.ClientResponse.__dict__["start"])

    before = methods()
    http_aiohttp.patch()
    http_aiohttp.patch()
    assert all(a is not b for a, b in zip(methods(), before, strict=True))
    http_aiohttp.unpatch()
    assert methods() == before
    assert "_xray_autoinst_sub" not in client_reqrep.ClientRequest.__dict__
    assert "_xray_autoinst_sub" not in client_reqrep.ClientResponse.__dict__
