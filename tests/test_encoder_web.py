"""A web segment's http block kept as the request's raw strings: the encoder's JSON text and the
dict ``seg.http`` readers get say the same, and reading or assigning ``seg.http`` on a segment
the WSGI middleware recorded this way keeps working."""

import json

import pytest
from xray_testing import validate

from xray_autoinst.core import encoder, ids
from xray_autoinst.core.entities import Segment
from xray_autoinst.wsgi import XRayMiddleware

SECRET = ("password", "token")
LONG = "x" * 300


def raw(method="GET", scheme="http", host="h:8000", script="", path="/p", query="",
        xff=None, ip="10.0.0.1", ua=None):
    return (method, scheme, host, script, path, query, xff, ip, ua, SECRET)


# (raw_request, raw_response) -> the http block expected
CASES = [
    (raw(), (200, "2"),
     {"request": {"method": "GET", "url": "http://h:8000/p", "client_ip": "10.0.0.1"},
      "response": {"status": 200, "content_length": 2}}),
    (raw(script="/app", query="a=1&Password=x&token", ua='ua "é"\n'), (404, 17),
     {"request": {"method": "GET", "url": "http://h:8000/app/p?a=1&Password=REDACTED&token",
                  "client_ip": "10.0.0.1", "user_agent": 'ua "é"\n'},
      "response": {"status": 404, "content_length": 17}}),
    (raw(xff=" 203.0.113.9 , 10.0.0.2", ua="u"), (500, None),
     {"request": {"method": "GET", "url": "http://h:8000/p", "client_ip": "203.0.113.9",
                  "x_forwarded_for": True, "user_agent": "u"},
      "response": {"status": 500}}),
    (raw(ip="", ua=""), None, {"request": {"method": "GET", "url": "http://h:8000/p"}}),
    (raw(ip=None), (None, "12"),
     {"request": {"method": "GET", "url": "http://h:8000/p"},
      "response": {"content_length": 12}}),
    (raw(), (None, None), {"request": {"method": "GET", "url": "http://h:8000/p",
                                       "client_ip": "10.0.0.1"}}),
    (raw(), (201, "not a number"),
     {"request": {"method": "GET", "url": "http://h:8000/p", "client_ip": "10.0.0.1"},
      "response": {"status": 201}}),
    (raw(), (201, ["unhashable"]),
     {"request": {"method": "GET", "url": "http://h:8000/p", "client_ip": "10.0.0.1"},
      "response": {"status": 201}}),
    # the schema's 250 characters, each field cut and marked
    (raw(method=LONG, path="/" + LONG, ip=LONG, ua=LONG), None,
     {"request": {"method": "x" * 247 + "...", "url": ("http://h:8000/" + LONG)[:247] + "...",
                  "client_ip": "x" * 247 + "...", "user_agent": "x" * 247 + "..."}}),
    (raw(xff=LONG), None,
     {"request": {"method": "GET", "url": "http://h:8000/p", "client_ip": "x" * 247 + "...",
                  "x_forwarded_for": True}}),
    # whatever else a server put in the environ (PEP 3333 says str): written as its str()
    (raw(method=b"GET", host=None, ip=7, ua=3.5), None,
     {"request": {"method": "b'GET'", "url": "http://None/p", "client_ip": "7",
                  "user_agent": "3.5"}}),
]


@pytest.mark.parametrize("req, resp, expected", CASES)
def test_text_and_dict_say_the_same(req, resp, expected):
    assert encoder.web_dict(req, resp) == expected
    assert json.loads(encoder.web_text(req, resp)) == expected
    assert json.loads(encoder.web_text(req, resp)) == expected  # again, from the caches


def _segment(req, resp):
    seg = Segment("svc", ids.trace_id())
    seg.raw_request = req
    seg.raw_response = resp
    seg.end_time = seg.start_time + 0.001
    return seg


def _doc(seg):
    [text] = encoder.documents(seg)
    doc = json.loads(text)
    validate(doc)
    return doc


@pytest.mark.parametrize("req, resp, expected", CASES)
def test_the_document_carries_the_raw_request(req, resp, expected):
    assert _doc(_segment(req, resp))["http"] == expected


def test_reading_http_makes_the_dict_once_and_it_is_the_record_from_then_on():
    req, resp, expected = CASES[0]
    seg = _segment(req, resp)
    http = seg.http
    assert http == expected
    assert seg.raw_request is None and seg.raw_response is None
    assert seg.http is http  # the same dict, not made again
    http["request"]["user_agent"] = "changed by a reader"
    assert _doc(seg)["http"]["request"]["user_agent"] == "changed by a reader"


def test_assigning_http_replaces_the_raw_request():
    seg = _segment(*CASES[0][:2])
    seg.http = {"request": {"method": "PUT", "url": "http://other/"}}
    assert seg.raw_request is None
    assert _doc(seg)["http"] == {"request": {"method": "PUT", "url": "http://other/"}}
    seg.http = None
    assert "http" not in _doc(seg)


def test_a_segment_without_http_has_none():
    seg = _segment(None, None)
    assert seg.http is None and "http" not in _doc(seg)


def _environ(**extra):
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/orders", "QUERY_STRING": "token=s3cret",
               "HTTP_HOST": "shop.test", "REMOTE_ADDR": "10.1.2.3", "wsgi.url_scheme": "https"}
    environ.update(extra)
    return environ


def test_middleware_keeps_the_request_raw_until_the_encoder(tracer):
    _t, emitter = tracer
    kept = []

    def app(environ, start_response):
        from xray_autoinst.core.tracer import current_entity

        kept.append(current_entity.get())
        start_response("201 Created", [("Content-Length", "3")])
        return [b"new"]

    environ = _environ()
    list(XRayMiddleware(app)(environ, lambda *a: None))
    environ["PATH_INFO"] = "/changed/after/the/request"  # what was read at the start stays
    [seg] = kept
    assert seg.raw_request is not None and seg.raw_response == (201, "3")
    [doc] = emitter.documents
    validate(doc)
    assert doc["http"] == {
        "request": {"method": "POST", "url": "https://shop.test/orders?token=REDACTED",
                    "client_ip": "10.1.2.3"},
        "response": {"status": 201, "content_length": 3}}


def test_middleware_records_the_response_in_a_dict_made_during_the_request(tracer):
    _t, emitter = tracer

    def app(environ, start_response):
        from xray_autoinst.core.tracer import current_entity

        seg = current_entity.get()
        http = seg.http  # a reader during the request: the dict is made now
        assert http["request"]["url"] == "https://shop.test/orders?token=REDACTED"
        http["request"]["traced"] = False  # and is the record from then on
        start_response("503 Unavailable", [("Content-Length", "0")])
        return [b""]

    list(XRayMiddleware(app)(_environ(), lambda *a: None))
    [doc] = emitter.documents
    validate(doc)
    assert doc["http"]["request"]["traced"] is False
    assert doc["http"]["response"] == {"status": 503, "content_length": 0}
    assert doc["fault"] is True


def test_an_exception_after_the_dict_was_made_is_recorded_in_it(tracer):
    _t, emitter = tracer

    def app(environ, start_response):
        from xray_autoinst.core.tracer import current_entity

        current_entity.get().http["request"]["user_agent"] = "set by hand"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        list(XRayMiddleware(app)(_environ(), lambda *a: None))
    [doc] = emitter.documents
    validate(doc)
    assert doc["http"]["request"]["user_agent"] == "set by hand"
    assert doc["http"]["response"] == {"status": 500}
