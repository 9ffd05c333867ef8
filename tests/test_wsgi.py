"""XRayMiddleware in-process: segments, flags, header continuation, streaming, failures."""

import sys

import pytest
from xray_testing import validate

from xray_autoinst.core import header
from xray_autoinst.core.tracer import current_entity
from xray_autoinst.wsgi import XRayMiddleware

ROOT = "1-5759e988-bd862e3fe1be46a994272793"


def call(app, path="/", headers=None, method="GET", query=""):
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "HTTP_HOST": "example.test",
        "REMOTE_ADDR": "10.1.2.3",
        "HTTP_USER_AGENT": "pytest",
        "wsgi.url_scheme": "http",
    }
    environ.update(headers or {})
    seen = {}

    def start_response(status, hdrs, exc_info=None):
        seen["status"] = status
        seen["headers"] = dict(hdrs)

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return seen, body


def simple_app(status="200 OK", body=b"hello"):
    def app(environ, start_response):
        start_response(status, [("Content-Type", "text/plain"),
                                ("Content-Length", str(len(body)))])
        return [body]

    return app


def test_sampled_request_yields_one_valid_segment(tracer):
    _t, emitter = tracer
    seen, body = call(XRayMiddleware(simple_app(), name="orders"), "/items/1",
                      query="a=1&password=hunter2")
    assert body == b"hello"
    [doc] = emitter.documents
    validate(doc)
    assert doc["name"] == "orders"
    assert doc["http"]["request"] == {
        "method": "GET",
        "url": "http://example.test/items/1?a=1&password=REDACTED",
        "client_ip": "10.1.2.3",
        "user_agent": "pytest",
    }
    assert doc["http"]["response"] == {"status": 200, "content_length": 5}
    assert "fault" not in doc and "error" not in doc
    assert seen["headers"]["X-Amzn-Trace-Id"] == "Root=" + doc["trace_id"]
    assert doc["aws"]["xray"]["sdk"] == "xray-autoinst"


@pytest.mark.parametrize(
    "status, flags",
    [("404 Not Found", {"error"}), ("429 Too Many", {"error", "throttle"}),
     ("503 Unavailable", {"fault"}), ("302 Found", set())],
)
def test_status_flags(tracer, status, flags):
    _t, emitter = tracer
    call(XRayMiddleware(simple_app(status)))
    doc = emitter.documents[-1]
    validate(doc)
    assert {f for f in ("error", "throttle", "fault") if doc.get(f)} == flags


def test_exception_is_a_fault_with_cause_and_propagates_unchanged(tracer):
    _t, emitter = tracer
    boom = KeyError("missing")

    def app(environ, start_response):
        raise boom

    with pytest.raises(KeyError) as info:
        call(XRayMiddleware(app))
    assert info.value is boom
    doc = emitter.documents[-1]
    validate(doc)
    assert doc["fault"] is True and doc["http"]["response"]["status"] == 500
    exc = doc["cause"]["exceptions"][0]
    assert exc["type"] == "KeyError" and "missing" in exc["message"]
    assert exc["stack"][0]["label"] == "app"


def test_incoming_header_is_continued(tracer):
    _t, emitter = tracer
    hdr = {"HTTP_X_AMZN_TRACE_ID": f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1"}
    seen, _ = call(XRayMiddleware(simple_app()), headers=hdr)
    doc = emitter.documents[-1]
    assert doc["trace_id"] == ROOT and doc["parent_id"] == "53995c3f42cd8ad8"
    assert seen["headers"]["X-Amzn-Trace-Id"] == f"Root={ROOT}"


def test_unsampled_by_header_sends_nothing_but_propagates(tracer):
    _t, emitter = tracer
    captured = {}

    def app(environ, start_response):
        from xray_autoinst.core.tracer import get_tracer

        captured["out"] = get_tracer().outgoing_header()
        start_response("200 OK", [])
        return [b""]

    call(XRayMiddleware(app), headers={"HTTP_X_AMZN_TRACE_ID": f"Root={ROOT};Sampled=0"})
    assert emitter.documents == []
    out = header.parse(captured["out"])
    assert out.root == ROOT and out.sampled == "0" and out.parent


def test_sampled_question_mark_is_decided_and_echoed(tracer):
    _t, emitter = tracer
    seen, _ = call(XRayMiddleware(simple_app()),
                   headers={"HTTP_X_AMZN_TRACE_ID": f"Root={ROOT};Sampled=?"})
    assert seen["headers"]["X-Amzn-Trace-Id"] == f"Root={ROOT};Sampled=1"
    assert emitter.documents[-1]["trace_id"] == ROOT


@pytest.mark.parametrize("bad", ["Root=garbage", f"Root={ROOT};Sampled=7", "x" * 10000])
def test_malformed_header_starts_fresh_trace(tracer, bad):
    _t, emitter = tracer
    seen, body = call(XRayMiddleware(simple_app()), headers={"HTTP_X_AMZN_TRACE_ID": bad})
    assert body == b"hello"
    doc = emitter.documents[-1]
    validate(doc)
    assert doc["trace_id"] != ROOT and "parent_id" not in doc


def test_streamed_body_is_timed_until_close(tracer):
    import time

    _t, emitter = tracer
    closed = []

    class Body:
        def __iter__(self):
            yield b"a"
            time.sleep(0.05)
            yield b"b"

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [])
        return Body()

    _seen, body = call(XRayMiddleware(app))
    assert body == b"ab" and closed == [True]
    doc = emitter.documents[-1]
    assert doc["end_time"] - doc["start_time"] >= 0.05


def test_x_forwarded_for(tracer):
    _t, emitter = tracer
    call(XRayMiddleware(simple_app()), headers={"HTTP_X_FORWARDED_FOR": "1.2.3.4, 10.0.0.1"})
    req = emitter.documents[-1]["http"]["request"]
    assert req["client_ip"] == "1.2.3.4" and req["x_forwarded_for"] is True


def test_long_fields_are_clipped(tracer):
    _t, emitter = tracer
    call(XRayMiddleware(simple_app()), "/" + "p" * 1000, headers={"HTTP_USER_AGENT": "u" * 999})
    doc = emitter.documents[-1]
    validate(doc)
    assert len(doc["http"]["request"]["url"]) == 250


def test_context_does_not_leak_between_requests(tracer):
    _t, emitter = tracer
    call(XRayMiddleware(simple_app()))
    assert current_entity.get() is None


def test_broken_instrumentation_never_breaks_the_app(tracer, monkeypatch):
    t, emitter = tracer

    def explode(*a, **k):
        raise RuntimeError("instrumentation bug")

    monkeypatch.setattr(t, "begin_segment", explode)
    # without the re-raise test switch, the request is served untouched
    from xray_autoinst import config

    monkeypatch.setattr(t, "config", config.from_env({}))
    seen, body = call(XRayMiddleware(simple_app()))
    assert body == b"hello" and seen["status"] == "200 OK"
    assert "X-Amzn-Trace-Id" not in seen["headers"]


def test_unsampled_request_sends_nothing(tracer):
    from xray_testing import install_tracer

    _t, emitter = install_tracer(
        {"XRAY_SAMPLING_RULES": '{"version": 2, "default": {"fixed_target": 0, "rate": 0}}'}
    )
    seen, _ = call(XRayMiddleware(simple_app()))
    assert emitter.documents == []
    assert seen["headers"]["X-Amzn-Trace-Id"].startswith("Root=1-")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="before 3.11 a bare raise keeps the "
                    "frames (docs/transparency.md)")
def test_application_traceback_shows_no_agent_frame(tracer):
    import traceback

    from xray_autoinst.wsgi import XRayMiddleware

    def app(environ, start_response):
        raise ValueError("the application's own")

    for extra in ({}, {"HTTP_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;"
                                                 "Sampled=0"}):
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", **extra}
        with pytest.raises(ValueError) as info:
            XRayMiddleware(app)(environ, lambda *a: None)
        files = [f.filename for f in traceback.extract_tb(info.value.__traceback__)]
        assert not any("xray_autoinst" in f for f in files), files


@pytest.mark.parametrize("status, code", [
    ("200 OK", 200), ("404 Not Found", 404), ("503 Service Unavailable", 503),
    ("200 OK", 200),  # the second time from the cache
    ("abc", None), ("", None),
])
def test_status_code_of_a_status_line(status, code):
    from xray_autoinst.contrib import web_wsgi

    assert web_wsgi._status_code(status) == code


@pytest.mark.parametrize("length, recorded", [
    ("0", 0), ("0", 0), ("1234", 1234), ("1234", 1234),  # the second time from the cache
    ("abc", None), ("", None),
])
def test_content_length_header_is_recorded_as_a_number(tracer, length, recorded):
    _t, emitter = tracer

    def app(environ, start_response):
        start_response("200 OK", [("content-length", length)])
        return [b""]

    call(XRayMiddleware(app))
    doc = emitter.documents[-1]
    validate(doc)
    expected = {"status": 200} if recorded is None else {"status": 200, "content_length": recorded}
    assert doc["http"]["response"] == expected


def test_body_without_content_length_is_counted(tracer):
    _t, emitter = tracer

    def app(environ, start_response):
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [b"ab", b"cde"]

    call(XRayMiddleware(app))
    doc = emitter.documents[-1]
    validate(doc)
    assert doc["http"]["response"] == {"status": 201, "content_length": 5}


def test_second_start_response_replaces_length_and_own_header(tracer):
    _t, emitter = tracer

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "99"), ("X-Amzn-Trace-Id", "Root=theirs")])
        try:
            raise ValueError("late")
        except ValueError:
            start_response("500 Internal Server Error",
                           [("X-Amzn-Trace-Id", "Root=theirs")], sys.exc_info())
        return [b"oops"]

    seen, _ = call(XRayMiddleware(app))
    doc = emitter.documents[-1]
    validate(doc)
    # the length of the response sent (counted), not the first call's header
    assert doc["http"]["response"] == {"status": 500, "content_length": 4}
    assert doc["fault"] is True
    assert seen["headers"]["X-Amzn-Trace-Id"] == "Root=" + doc["trace_id"]


def test_function_file_wrapper_is_swapped_and_restored(tracer):
    _t, emitter = tracer
    made = []

    def server_file_wrapper(f, blksize=8192):  # a function, as uWSGI's is
        made.append(f)
        return f

    def app(environ, start_response):
        start_response("200 OK", [])
        assert environ["wsgi.file_wrapper"] is not server_file_wrapper
        return environ["wsgi.file_wrapper"](iter([b"file"]))

    kept = []

    def keep(environ, start_response):
        kept.append(environ)
        return app(environ, start_response)

    seen, body = call(XRayMiddleware(keep), headers={"wsgi.file_wrapper": server_file_wrapper})
    assert body == b"file" and len(made) == 1
    assert kept[0]["wsgi.file_wrapper"] is server_file_wrapper  # the server's, back
    [doc] = emitter.documents
    validate(doc)
    assert doc["http"]["response"] == {"status": 200}


UNSAMPLED = {"XRAY_SAMPLING_RULES": '{"version": 2, "default": {"fixed_target": 0, "rate": 0}}'}


def test_unsampled_response_replaces_the_apps_own_trace_header(tracer):
    from xray_testing import install_tracer

    _t, emitter = install_tracer(UNSAMPLED)

    def app(environ, start_response):
        headers = [("x-amzn-trace-id", "Root=theirs"), ("Content-Length", "2"),
                   ("X-Amzn-Trace-Id", "Root=theirs-too")]
        start_response("200 OK", headers)
        return [b"ok"]

    captured = []

    def start_response(status, headers, exc_info=None):
        captured.extend(headers)

    XRayMiddleware(app)(call_environ(), start_response)
    ours = [v for k, v in captured if k.lower() == "x-amzn-trace-id"]
    assert len(ours) == 1 and ours[0].startswith("Root=1-") and emitter.documents == []
    assert ("Content-Length", "2") in captured


def call_environ(**extra):
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_NAME": "localhost",
               "HTTP_HOST": "example.test", "wsgi.url_scheme": "http"}
    environ.update(extra)
    return environ


def test_rules_match_on_the_request_fields(tracer):
    """With rules, the middleware hands the sampler the host, method and path (with X-Ray's
    default rule alone it reads them for a sampled request only)."""
    from xray_testing import install_tracer

    _t, emitter = install_tracer({"XRAY_SAMPLING_RULES": (
        '{"version": 2, "rules": [{"host": "example.test", "http_method": "POST",'
        ' "url_path": "/health", "fixed_target": 0, "rate": 0}],'
        ' "default": {"fixed_target": 0, "rate": 1}}')})
    assert _t.reads_request is True
    call(XRayMiddleware(simple_app()), "/health", method="POST")
    assert emitter.documents == []
    call(XRayMiddleware(simple_app()), "/health", method="GET")
    call(XRayMiddleware(simple_app()), "/other", method="POST")
    assert [d["http"]["request"]["method"] for d in emitter.documents] == ["GET", "POST"]
    assert emitter.documents[-1]["http"]["request"]["url"] == "http://example.test/other"


def test_a_replaced_sampler_is_asked_with_the_request_fields(tracer):
    t, emitter = tracer
    assert t.reads_request is False  # X-Ray's default rule alone (the fixture's rate 1)
    real = t.sampler
    calls = []

    class Counting:
        def sample(self, host, method, path):
            calls.append((host, method, path))
            return False

    t.sampler = Counting()
    try:
        assert t.reads_request is True
        call(XRayMiddleware(simple_app()), "/p", method="PUT")
        assert calls == [("example.test", "PUT", "/p")] and emitter.documents == []
    finally:
        t.sampler = real
    call(XRayMiddleware(simple_app()), "/q")
    assert len(calls) == 1 and emitter.documents[-1]["http"]["request"]["url"] == \
        "http://example.test/q"
