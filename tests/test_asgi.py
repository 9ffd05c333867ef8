"""The ASGI middleware in process: scopes, messages, the application's own result and
exceptions, the response header, concurrency on one event loop."""

import asyncio
import sys

import pytest
from xray_testing import need, validate

from xray_autoinst.contrib import web_asgi, web_gunicorn
from xray_autoinst.core.tracer import current_entity

ROOT = "1-5759e988-bd862e3fe1be46a994272793"


def scope(path="/", headers=(), kind="http", **extra):
    s = {"type": kind, "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
         "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
         "root_path": "", "headers": [(b"host", b"svc.local")] + list(headers),
         "client": ("10.0.0.9", 5555), "server": ("127.0.0.1", 8000)}
    s.update(extra)
    return s


def run(app, s, messages=()):
    sent = []
    incoming = list(messages) or [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(s, receive, send))
    return sent


def hello(status=200, body=b"hello", headers=()):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain"), *headers]})
        await send({"type": "http.response.body", "body": body})

    return app


def test_segment_fields_and_header_echo(tracer):
    _t, emitter = tracer
    app = web_asgi.XRayMiddleware(hello())
    sent = run(app, scope("/a/b", headers=[(b"user-agent", b"curl/8"),
                                           (b"x-amzn-trace-id",
                                            f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=?"
                                            .encode())],
                          query_string=b"q=1&token=abc"))
    start = sent[0]
    assert (b"x-amzn-trace-id", f"Root={ROOT};Sampled=1".encode()) in start["headers"]
    [doc] = emitter.documents
    validate(doc)
    assert doc["trace_id"] == ROOT and doc["parent_id"] == "53995c3f42cd8ad8"
    req = doc["http"]["request"]
    assert req["url"] == "http://svc.local/a/b?q=1&token=REDACTED"
    assert req["client_ip"] == "10.0.0.9" and req["user_agent"] == "curl/8"
    assert doc["http"]["response"] == {"status": 200, "content_length": 5}
    assert current_entity.get() is None


def test_application_header_replaced_not_doubled(tracer):
    app = web_asgi.XRayMiddleware(hello(headers=[(b"X-Amzn-Trace-Id", b"Root=theirs")]))
    sent = run(app, scope())
    values = [v for k, v in sent[0]["headers"] if k.lower() == b"x-amzn-trace-id"]
    assert len(values) == 1 and values[0] != b"Root=theirs"


def test_status_flags_and_declared_length(tracer):
    _t, emitter = tracer
    for status, flags in ((404, {"error"}), (429, {"error", "throttle"}), (503, {"fault"})):
        run(web_asgi.XRayMiddleware(hello(status, headers=[(b"content-length", b"5")])),
            scope())
        doc = emitter.documents[-1]
        validate(doc)
        assert {f for f in ("error", "fault", "throttle") if doc.get(f)} == flags
        assert doc["http"]["response"] == {"status": status, "content_length": 5}


def test_exception_passes_through_and_is_the_cause(tracer):
    _t, emitter = tracer
    boom = KeyError("nope")

    async def app(scope, receive, send):
        raise boom

    with pytest.raises(KeyError) as info:
        run(web_asgi.XRayMiddleware(app), scope())
    assert info.value is boom
    [doc] = emitter.documents
    validate(doc)
    assert doc["fault"] and doc["http"]["response"]["status"] == 500
    exc = doc["cause"]["exceptions"][0]
    assert exc["type"] == "KeyError"
    assert not any("xray_autoinst" in f["path"] for f in exc["stack"])


def test_exception_after_a_500_answer_is_its_cause(tracer):
    """Starlette's error middleware answers 500, then re-raises."""
    _t, emitter = tracer

    async def app(scope, receive, send):
        await hello(500, b"Internal Server Error")(scope, receive, send)
        raise RuntimeError("behind the 500")

    with pytest.raises(RuntimeError):
        run(web_asgi.XRayMiddleware(app), scope())
    [doc] = emitter.documents
    assert doc["cause"]["exceptions"][0]["message"] == "behind the 500"


def test_segment_ends_with_the_last_chunk_work_after_it_is_late(tracer):
    t, emitter = tracer

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})
        assert len(emitter.documents) == 1  # sent once the response was complete
        sub = t.begin_subsegment("background")  # a background task after the response
        t.end_subsegment(sub)

    run(web_asgi.XRayMiddleware(app), scope())
    seg, late = emitter.documents
    validate(seg)
    validate(late)
    assert seg["http"]["response"]["content_length"] == 2
    assert late["type"] == "subsegment" and late["parent_id"] == seg["id"]


def test_client_disconnect_ends_with_what_was_sent(tracer):
    _t, emitter = tracer

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        message = await receive()
        assert message["type"] == "http.disconnect"

    run(web_asgi.XRayMiddleware(app), scope(), messages=[{"type": "http.disconnect"}])
    [doc] = emitter.documents
    validate(doc)
    assert doc["http"]["response"] == {"status": 200, "content_length": 3}


def test_lifespan_and_unknown_scopes_pass_through(tracer):
    _t, emitter = tracer
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])
        message = await receive()
        await send({"type": message["type"] + ".complete"})

    sent = run(web_asgi.XRayMiddleware(app), {"type": "lifespan"},
               messages=[{"type": "lifespan.startup"}])
    assert seen == ["lifespan"] and sent == [{"type": "lifespan.startup.complete"}]
    assert emitter.documents == []


def test_unsampled_answers_and_records_nothing(tracer):
    _t, emitter = tracer
    sent = run(web_asgi.XRayMiddleware(hello()), scope(headers=[
        (b"x-amzn-trace-id", f"Root={ROOT};Sampled=0".encode())]))
    assert (b"x-amzn-trace-id", f"Root={ROOT}".encode()) in sent[0]["headers"]
    assert emitter.documents == []


def test_malformed_header_starts_a_fresh_trace(tracer):
    _t, emitter = tracer
    run(web_asgi.XRayMiddleware(hello()), scope(headers=[(b"x-amzn-trace-id", b"\xff" * 5000)]))
    [doc] = emitter.documents
    validate(doc)
    assert doc["trace_id"] != ROOT and "parent_id" not in doc


def test_never_traced_twice(tracer):
    _t, emitter = tracer
    inner = web_asgi.XRayMiddleware(hello())
    outer = web_asgi.wrap_asgi(web_asgi.XRayMiddleware(inner))
    assert web_asgi.wrap_asgi(outer) is outer
    run(outer, scope())
    assert len(emitter.documents) == 1


def test_websocket_statuses(tracer):
    _t, emitter = tracer

    async def accepted(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})

    async def refused(scope, receive, send):
        await receive()
        await send({"type": "websocket.close", "code": 1008})

    for app, status in ((accepted, 101), (refused, 403)):
        run(web_asgi.XRayMiddleware(app), scope("/ws", kind="websocket", scheme="ws"),
            messages=[{"type": "websocket.connect"}])
        doc = emitter.documents[-1]
        validate(doc)
        assert doc["http"]["request"]["url"] == "ws://svc.local/ws"
        assert doc["http"]["response"] == {"status": status}


def test_concurrent_requests_on_one_loop_keep_their_own_subsegments(tracer):
    t, emitter = tracer

    async def app(scope, receive, send):
        n = int(scope["path"].strip("/"))
        await asyncio.sleep((n % 5) * 0.002)
        sub = t.begin_subsegment(f"call-{n}")
        await asyncio.sleep((n % 3) * 0.002)
        t.end_subsegment(sub)
        await hello()(scope, receive, send)

    mw = web_asgi.XRayMiddleware(app)

    async def one(n):
        async def receive():
            return {"type": "http.request"}

        async def send(message):
            pass

        await mw(scope(f"/{n}"), receive, send)

    async def main():
        await asyncio.gather(*(one(n) for n in range(100)))

    asyncio.run(main())
    assert len(emitter.documents) == 100
    for doc in emitter.documents:
        n = doc["http"]["request"]["url"].rsplit("/", 1)[1]
        assert [s["name"] for s in doc["subsegments"]] == [f"call-{n}"]


def test_instrumentation_failure_leaves_the_request_alone(tracer, monkeypatch):
    t, emitter = tracer
    from xray_autoinst import config

    # the production setting: instrumentation errors are logged, never raised
    monkeypatch.setattr(t, "config", config.from_env({}))

    def broken(*a, **k):
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(t, "begin_segment", broken)
    sent = run(web_asgi.XRayMiddleware(hello()), scope())
    assert sent[1]["body"] == b"hello" and emitter.documents == []


def test_is_asgi():
    async def coro_app(scope, receive, send):
        pass

    class Callable:
        async def __call__(self, scope, receive, send):
            pass

    def wsgi(environ, start_response):
        pass

    assert web_asgi.is_asgi(coro_app) and web_asgi.is_asgi(Callable())
    assert not web_asgi.is_asgi(wsgi) and not web_asgi.is_asgi(Callable)


def test_gunicorn_wraps_only_for_its_wsgi_workers():
    from gunicorn.workers import base, sync

    class MyWorker(sync.SyncWorker):
        pass

    assert web_gunicorn.serves_wsgi(sync.SyncWorker) and web_gunicorn.serves_wsgi(MyWorker)
    assert not web_gunicorn.serves_wsgi(base.Worker)
    uvicorn_workers = need("uvicorn.workers")
    assert not web_gunicorn.serves_wsgi(uvicorn_workers.UvicornWorker)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="before 3.11 a bare raise keeps the "
                    "frames (docs/transparency.md)")
def test_application_traceback_shows_no_agent_frame(tracer):
    import traceback

    async def app(scope, receive, send):
        raise ValueError("the application's own")

    with pytest.raises(ValueError) as info:
        run(web_asgi.XRayMiddleware(app), scope())
    files = [f.filename for f in traceback.extract_tb(info.value.__traceback__)]
    assert not any("xray_autoinst" in f for f in files), files


# the response start message an application keeps at module level and sends as it is
SHARED_START = {"type": "http.response.start", "status": 200,
                "headers": ([b"Content-Type", b"text/plain"], [b"X-Amzn-Trace-Id", b"Root=app"],
                            [b"Content-Length", b"5"])}


@pytest.mark.parametrize("sampled", ["1", "0"])
@pytest.mark.parametrize("one_shot", [False, True], ids=["tuple", "generator"])
def test_response_headers_read_once_and_the_application_message_untouched(tracer, sampled,
                                                                          one_shot):
    _t, emitter = tracer
    before = repr(SHARED_START)

    async def app(scope, receive, send):
        start = SHARED_START
        if one_shot:  # ASGI allows any iterable of pairs: it must be read once only
            start = dict(SHARED_START, headers=(h for h in SHARED_START["headers"]))
        await send(start)
        await send({"type": "http.response.body", "body": b"hello"})

    for _ in range(2):
        sent = run(web_asgi.XRayMiddleware(app), scope(headers=[
            (b"x-amzn-trace-id", f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled={sampled}"
             .encode())]))
        headers = [tuple(h) for h in sent[0]["headers"]]
        assert headers == [(b"Content-Type", b"text/plain"), (b"Content-Length", b"5"),
                           (b"x-amzn-trace-id", f"Root={ROOT}".encode())]
        assert sent[0]["status"] == 200 and sent[1]["body"] == b"hello"
    assert repr(SHARED_START) == before
    docs = emitter.documents
    assert len(docs) == (2 if sampled == "1" else 0)
    for doc in docs:
        validate(doc)
        assert doc["http"]["response"] == {"status": 200, "content_length": 5}


def test_unsampled_request_context_is_its_trace_for_downstream_calls(tracer):
    _t, emitter = tracer
    seen = []

    async def app(scope, receive, send):
        entity = current_entity.get()
        seen.append((entity.sampled, entity.trace_id))
        await hello()(scope, receive, send)

    sent = run(web_asgi.XRayMiddleware(app), scope(headers=[
        (b"x-amzn-trace-id", f"Root={ROOT};Sampled=0".encode())]))
    assert seen == [(False, ROOT)] and sent[1]["body"] == b"hello"
    assert current_entity.get() is None and emitter.documents == []


@pytest.mark.parametrize("declared, recorded", [(b"2", 2), (b"2", 2), (b"two", 5),
                                                (b" 7 ", 7)])
def test_declared_length_as_a_number_else_the_bytes_sent(tracer, declared, recorded):
    """(each declared value twice in a row: the second is read from the cache)"""
    _t, emitter = tracer
    run(web_asgi.XRayMiddleware(hello(headers=[(b"content-length", declared)])), scope())
    doc = emitter.documents[-1]
    validate(doc)
    assert doc["http"]["response"] == {"status": 200, "content_length": recorded}


def test_status_not_a_number_records_what_was_sent(tracer):
    _t, emitter = tracer
    run(web_asgi.XRayMiddleware(hello(status="teapot")), scope())
    [doc] = emitter.documents
    validate(doc)
    assert doc["http"]["response"] == {"content_length": 5}
    assert not doc.get("error") and not doc.get("fault")


@pytest.mark.parametrize("sampled", ["1", "0"])
def test_send_given_to_the_application_is_a_coroutine_function(tracer, sampled):
    """As the server's is: asgiref's async_to_sync (Channels' sync consumers) warns on a
    plain callable."""
    import inspect

    seen = []

    async def app(scope, receive, send):
        seen.append(inspect.iscoroutinefunction(send))
        await hello()(scope, receive, send)

    run(web_asgi.XRayMiddleware(app), scope(headers=[
        (b"x-amzn-trace-id", f"Root={ROOT};Sampled={sampled}".encode())]))
    assert seen == [True]
