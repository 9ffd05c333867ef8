"""A web segment's ``http`` block, made from the request's own strings when it is needed.

The WSGI middleware keeps what it read from the environ (``raw_request``) and the response's
status code and Content-Length as they came (``raw_response``) on the segment, and nothing
else: the block is written from them as JSON text by the encoder, on the sender's thread, or
made into the dict ``seg.http`` the first time anything reads it (the aws-xray-sdk bridge, a
test). Both ways apply the same rules, here: secret-looking query values redacted; method, url,
client_ip and user_agent clipped to the schema's 250 characters; Content-Length as a number.
(Building the two dicts and the url on the request thread was ~8 000 instructions a request.)

``raw_request``: (method, scheme, host, script name, path, query, X-Forwarded-For, remote
address, user agent, the secret query names); ``raw_response``: (status code or None,
Content-Length as the application gave it: a header's text, a count, or None).
"""

from __future__ import annotations

from .entities import FIELD_MAX, clip
from .urls import redact_query

try:
    from _json import encode_basestring_ascii as _q
except ImportError:  # pragma: no cover - pure-Python fallback
    from json.encoder import py_encode_basestring_ascii as _q


def request_fields(raw):
    """(method, url, client_ip or None, whether it came from X-Forwarded-For, user_agent or
    None), each a str within the schema's limits."""
    method, scheme, host, script, path, query, xff, ip, ua, secret = raw
    # "%s" rather than +: whatever a server put in the environ (PEP 3333 says str) cannot
    # make the document fail here, on the sender's thread
    url = "%s://%s%s%s" % (scheme, host, script, path)
    if query:
        url += "?" + redact_query(str(query), secret)
    if type(method) is not str or len(method) > FIELD_MAX:
        method = clip(method)
    if len(url) > FIELD_MAX:
        url = clip(url)
    if xff:
        return method, url, clip(str(xff).split(",", 1)[0].strip()), True, \
            (ua if type(ua) is str and len(ua) <= FIELD_MAX else clip(ua)) if ua else None
    if ip:
        if type(ip) is not str or len(ip) > FIELD_MAX:
            ip = clip(ip)
    else:
        ip = None
    if ua:
        if type(ua) is not str or len(ua) > FIELD_MAX:
            ua = clip(ua)
    else:
        ua = None
    return method, url, ip, False, ua


# the Content-Length values seen so far ("1234" -> 1234): int() of a string is a type call, the
# dict lookup a tenth of it; bounded, a server sends few distinct lengths
_LENGTHS: dict = {}


def content_length(value):
    """The Content-Length ``value`` (a header's text, or the length counted) as an int; None
    when it is not a number."""
    if type(value) is int:
        return value
    if type(value) is str:
        n = _LENGTHS.get(value)
        if n is not None:
            return n
    try:
        length = int(value)
    except (TypeError, ValueError):
        return None
    if type(value) is str and len(_LENGTHS) < 256:
        _LENGTHS[value] = length
    return length


def as_dict(raw, resp):
    """The ``http`` dict of the same content as ``text``."""
    method, url, ip, xff, ua = request_fields(raw)
    req = {"method": method, "url": url}
    if ip is not None:
        req["client_ip"] = ip
        if xff:
            req["x_forwarded_for"] = True
    if ua is not None:
        req["user_agent"] = ua
    http = {"request": req}
    if resp is not None:
        code, length = resp
        if length is not None:
            length = content_length(length)
        if code is not None:
            http["response"] = {"status": code} if length is None else \
                {"status": code, "content_length": length}
        elif length is not None:
            http["response"] = {"content_length": length}
    return http


# the quoted text of the few methods, and of each response seen ((code, length) -> its text),
# bounded: a server answers with few distinct pairs
_methods: dict = {}
_responses: dict = {}


def text(raw, resp):
    """The ``http`` block as JSON text (the same keys in the same order as ``as_dict``)."""
    method, url, ip, xff, ua = request_fields(raw)
    m = _methods.get(method)
    if m is None:
        m = _q(method)
        if len(_methods) < 64:
            _methods[method] = m
    if resp is None:
        r = "}}"
    else:
        try:
            r = _responses.get(resp)
        except TypeError:  # a length of an unhashable type
            r = None
        if r is None:
            r = _response_text(resp)
    # one format for the block (each + copied the text so far)
    return '{"request":{"method":%s,"url":%s%s%s%s' % (
        m, _q(url),
        "" if ip is None else
        ',"client_ip":' + _q(ip) + (',"x_forwarded_for":true' if xff else ""),
        "" if ua is None else ',"user_agent":' + _q(ua), r)


def _response_text(resp):
    code, length = resp
    if length is not None:
        length = content_length(length)
    if code is not None:
        if length is None:
            r = '},"response":{"status":%d}}' % code
        else:
            r = '},"response":{"status":%d,"content_length":%d}}' % (code, length)
    elif length is not None:
        r = '},"response":{"content_length":%d}}' % length
    else:
        r = "}}"
    if len(_responses) < 256:
        try:
            _responses[resp] = r
        except TypeError:
            pass
    return r
