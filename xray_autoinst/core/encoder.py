"""Segment documents as JSON text, built by hand for speed, split by size.

Every document this module returns fits in one daemon datagram (64 KB with the header line).
A document that would not fit has its largest subsegments moved out into documents of their own
(``type: subsegment`` with ``trace_id`` and ``parent_id``), recursively, so nothing is dropped;
a single entity whose own fields are too large has its metadata replaced by a marker and its
stack trimmed, with the truncation recorded in the document.
"""

from __future__ import annotations

import json

from .. import __version__
from .entities import FIELD_MAX, clip
from .urls import redact_query

try:
    from _json import encode_basestring_ascii as _q
except ImportError:  # pragma: no cover - pure-Python fallback
    from json.encoder import py_encode_basestring_ascii as _q

HEADER = b'{"format": "json", "version": 1}\n'
DATAGRAM_MAX = 64 * 1024
DOC_MAX = DATAGRAM_MAX - len(HEADER) - 1  # room for the header line
_STANDALONE_ROOM = 200  # what the standalone prefix adds to an inline subsegment

try:  # the C encoder, built once: JSONEncoder.encode builds one per call (~1 us here)
    from _json import make_encoder as _make_encoder

    _c_encode = _make_encoder(None, repr, _q, None, ":", ",", False, False, False)

    def _dumps(value):
        return "".join(_c_encode(value, 0))

except ImportError:  # pragma: no cover
    _dumps = json.JSONEncoder(
        separators=(",", ":"), ensure_ascii=True, check_circular=False, default=repr
    ).encode

_XRAY = '"xray":{"sdk":"xray-autoinst","sdk_version":%s,"auto_instrumentation":true}' % _q(
    __version__)
AWS_XRAY = ',"aws":{' + _XRAY + "}"
# what every segment carries about where it runs (core/resources.py sets it once detected):
# the origin fragment, the service fragment, the aws block
_segment_context = ("", "", AWS_XRAY)


def set_segment_context(origin=None, service=None, aws=None) -> None:
    """``origin`` (e.g. AWS::EC2::Instance), the ``service`` block and ``aws`` blocks (ec2, ecs,
    eks, elastic_beanstalk, cloudwatch_logs) for every segment encoded from now on."""
    global _segment_context
    aws_block = ',"aws":{' + "".join(
        _q(k) + ":" + _dump(v) + "," for k, v in (aws or {}).items() if k != "xray") + _XRAY + "}"
    _segment_context = (',"origin":' + _q(origin) if origin else "",
                        ',"service":' + _dump(service) if service else "", aws_block)


def _dump(value):
    try:
        return _dumps(value)
    except (TypeError, ValueError):
        return _q(repr(value))


class Fields(dict):
    """A dict of fields shared, read-only, by many entities (the ``sql`` of one statement on
    one connection): its JSON text is made once, by the first document that carries it (on
    the sender's thread), and reused by every later one."""

    __slots__ = ("json",)

    def __init__(self, *args, **kwargs):
        dict.__init__(self, *args, **kwargs)
        self.json = None


def _fields(value):
    if type(value) is Fields:
        text = value.json
        if text is None:
            text = value.json = _dump(value)
        return text
    return _dump(value)


# the fields the web middlewares record: such an http block is written by hand (fewer
# instructions than the C encoder on two small nested dicts); anything else (other keys, other
# types, None values) goes through the encoder


def _web_http(http):
    """The text of a web segment's ``http`` block, or None when it is not of that shape."""
    req = http.get("request")
    resp = http.get("response")
    if type(req) is not dict or len(http) != 1 + (resp is not None):
        return None
    ip = req.get("client_ip")
    ua = req.get("user_agent")
    xff = req.get("x_forwarded_for")
    # method and url are required (a KeyError otherwise); a key of ours holding None, or any
    # other key, makes the count differ
    if len(req) != 2 + (ip is not None) + (ua is not None) + (xff is not None):
        return None
    # _q raises TypeError on anything but a str
    out = '{"request":{"method":' + _q(req["method"]) + ',"url":' + _q(req["url"])
    if ip is not None:
        out += ',"client_ip":' + _q(ip)
    if ua is not None:
        out += ',"user_agent":' + _q(ua)
    if xff is not None:
        if xff is not True:
            return None
        out += ',"x_forwarded_for":true'
    if resp is None:
        return out + "}}"
    if type(resp) is not dict:
        return None
    status = resp.get("status")
    length = resp.get("content_length")
    if len(resp) != (status is not None) + (length is not None):
        return None
    if status is not None:
        if type(status) is not int:
            return None
        if length is not None:
            if type(length) is not int:
                return None
            return out + '},"response":{"status":%d,"content_length":%d}}' % (status, length)
        return out + '},"response":{"status":%d}}' % status
    if length is not None:
        if type(length) is not int:
            return None
        return out + '},"response":{"content_length":%d}}' % length
    return out + '},"response":{}}'


def _http(http):
    try:
        text = _web_http(http)
    except (KeyError, TypeError):
        text = None
    return ',"http":' + (text if text is not None else _dump(http))


# -- a web segment's http block, made from the request's own strings when it is needed ----
#
# The WSGI middleware keeps what it read from the environ (``raw_request``) and the response's
# status code and Content-Length as they came (``raw_response``) on the segment, and nothing
# else: the block is written from them as JSON text by the encoder, on the sender's thread, or
# made into the dict ``seg.http`` the first time anything reads it (the aws-xray-sdk bridge, a
# test). Both ways apply the same rules, here: secret-looking query values redacted; method, url,
# client_ip and user_agent clipped to the schema's 250 characters; Content-Length as a number.
# (Building the two dicts and the url on the request thread was ~8 000 instructions a request.)
#
# ``raw_request``: (method, scheme, host, script name, path, query, X-Forwarded-For, remote
# address, user agent, the secret query names); ``raw_response``: (status code or None,
# Content-Length as the application gave it: a header's text, a count, or None).


def web_request_fields(raw):
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


def web_dict(raw, resp):
    """The ``http`` dict of the same content as ``web_text``."""
    method, url, ip, xff, ua = web_request_fields(raw)
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
_web_methods: dict = {}
_web_responses: dict = {}


def web_text(raw, resp):
    """The ``http`` block as JSON text (the same keys in the same order as ``web_dict``)."""
    method, url, ip, xff, ua = web_request_fields(raw)
    m = _web_methods.get(method)
    if m is None:
        m = _q(method)
        if len(_web_methods) < 64:
            _web_methods[method] = m
    if resp is None:
        r = "}}"
    else:
        try:
            r = _web_responses.get(resp)
        except TypeError:  # a length of an unhashable type
            r = None
        if r is None:
            r = _web_response_text(resp)
    # one format for the block (each + copied the text so far)
    return '{"request":{"method":%s,"url":%s%s%s%s' % (
        m, _q(url),
        "" if ip is None else
        ',"client_ip":' + _q(ip) + (',"x_forwarded_for":true' if xff else ""),
        "" if ua is None else ',"user_agent":' + _q(ua), r)


def _web_response_text(resp):
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
    if len(_web_responses) < 256:
        try:
            _web_responses[resp] = r
        except TypeError:
            pass
    return r


# the epoch second of the last time written (a float) and its text ("1796425594."), one tuple
# so that threads never see the two apart: a time's text is then that text and the microseconds
# (truncated); ``%.6f`` formats the float's digits each time (~5 000 instructions a time)
_second = (-2.0, "")


def _new_second(t):
    """The cached second for time ``t``, or None for a time not written this way."""
    global _second
    if not 0 <= t < 1e11:  # (a NaN fails too)
        return None
    s = t // 1
    c = _second = (s, "%d." % s)
    return c


def _ts(t):
    """A time as JSON text, to the microsecond."""
    c = _second
    d = t - c[0]
    if not 0.0 <= d < 1.0:
        c = _new_second(t)
        if c is None:
            return "%.6f" % t
        d = t - c[0]
    return "%s%06d" % (c[1], d * 1e6)


# the quoted text of names already seen (a service's, a database's, a host's), bounded
_names: dict = {}


def _name(name):
    text = _names.get(name)
    if text is None:
        text = _q(name)
        if len(_names) < 512:
            _names[name] = text
    return text


def _times(t, end):
    """``"start_time":...,"end_time":...`` (or ``"in_progress":true``), any two times."""
    c = _second
    d = t - c[0]
    if not 0.0 <= d < 1.0:
        c = _new_second(t)
        d = None if c is None else t - c[0]
    if end is None:
        times = '"in_progress":true'
    elif d is not None and 0.0 <= end - c[0] < 1.0:
        times = '"end_time":%s%06d' % (c[1], (end - c[0]) * 1e6)
    else:
        times = '"end_time":' + _ts(end)
    if d is None:
        return '"start_time":%s,%s' % (_ts(t), times)
    return '"start_time":%s%06d,%s' % (c[1], d * 1e6, times)


def _head(e, in_progress=False, truncate=False):
    """The entity's own fields, without subsegments and without the closing brace."""
    t = e.start_time
    end = None if in_progress else e.end_time
    c = _second
    s = c[0]
    if end is not None and 0.0 <= t - s < 1.0 and 0.0 <= end - s < 1.0:
        # the usual: both times in the cached second, written with the name and id in one
        # format (see _ts; a call and a format less than _times, ~1 000 instructions)
        out = '{"name":%s,"id":"%s","start_time":%s%06d,"end_time":%s%06d' % (
            _name(e.name), e.id, c[1], (t - s) * 1e6, c[1], (end - s) * 1e6)
    else:
        out = '{"name":%s,"id":"%s",%s' % (_name(e.name), e.id, _times(t, end))
    seg = e.segment
    if seg is e:
        context = _segment_context
        # the request's raw strings when the middleware kept them (see Segment.http): read
        # response first, request next (the order Segment.http clears them in)
        resp = e.raw_response
        raw = e.raw_request
        if raw is not None:
            http = ',"http":' + web_text(raw, resp)
        else:
            http = e.http_
            http = _http(http) if http else ""
        out += ',"trace_id":"%s"%s%s%s%s%s%s' % (
            e.trace_id_,
            ',"parent_id":"%s"' % e.parent_id if e.parent_id else "",
            ',"origin":' + _q(e.origin) if e.origin else context[0],
            ',"user":' + _q(e.user) if e.user else "",
            ',"service":' + _dump(e.service) if e.service else context[1],
            http, context[2])
    else:
        if e.namespace:
            out += ',"namespace":"%s"' % e.namespace
        if e.http:
            out += _http(e.http)
        if e.aws:
            out += ',"aws":' + _dump(e.aws)
    if e.sql:
        out += ',"sql":' + _fields(e.sql)
    if e.fault:
        out += ',"fault":true'
    if e.error:
        out += ',"error":true'
    if e.throttle:
        out += ',"throttle":true'
    if e.cause:
        cause = e.cause
        if truncate:
            cause = _trim_cause(cause)
        out += ',"cause":' + _dump(cause)
    if e.annotations:
        out += ',"annotations":' + _dump(e.annotations)
    if e.metadata:
        if truncate:
            out += ',"metadata":{"xray_autoinst":{"truncated":"metadata over the 64 KB limit"}}'
        else:
            out += ',"metadata":' + _dump(e.metadata)
    return out


def _trim_cause(cause):
    if not isinstance(cause, dict):
        return cause
    out = dict(cause)
    exs = []
    for ex in cause.get("exceptions", ())[:5]:
        ex = dict(ex)
        ex["message"] = str(ex.get("message", ""))[:500]
        stack = ex.get("stack", [])
        if len(stack) > 10:
            ex["stack"] = stack[:10]
            ex["truncated"] = len(stack) - 10
        exs.append(ex)
    out["exceptions"] = exs
    return out


def _inline(e, out, limit):
    """Encode ``e`` (with its subsegments) as text of at most ``limit`` characters, moving
    subsegments that do not fit into ``out`` as standalone documents."""
    head = _head(e)
    if len(head) > limit - 100:
        head = _head(e, truncate=True)
        if len(head) > limit - 100:  # still too big (huge annotations): keep the essentials
            e.annotations = None
            head = _head(e, truncate=True)
    subs = e.subsegments
    if not subs:
        return head + "}"
    texts = [_inline(s, out, DOC_MAX - _STANDALONE_ROOM) for s in subs]
    total = len(head) + 20 + sum(len(t) + 1 for t in texts)
    if total > limit:
        # move the largest children out until the rest fits
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        for i in order:
            if total <= limit:
                break
            total -= len(texts[i]) + 1
            out.append(_standalone(subs[i], texts[i]))
            texts[i] = None
        texts = [t for t in texts if t is not None]
    if not texts:
        return head + "}"
    return head + ',"subsegments":[' + ",".join(texts) + "]}"


def _standalone(sub, text):
    return '{"type":"subsegment","trace_id":"%s","parent_id":"%s",%s' % (
        sub.segment.trace_id,
        sub.parent.id,
        text[1:],
    )


def documents(entity) -> list[str]:
    """The documents (JSON text) that carry ``entity`` and its finished subsegments."""
    out: list[str] = []
    if entity.segment is entity:
        if not entity.subsegments:  # the usual web request's: _inline's checks, without its call
            head = _head(entity)
            if len(head) <= DOC_MAX - 100:
                return [head + "}"]
        text = _inline(entity, out, DOC_MAX)
        out.append(text)
    else:
        text = _inline(entity, out, DOC_MAX - _STANDALONE_ROOM)
        out.append(_standalone(entity, text))
    return out


def in_progress_document(entity) -> str:
    """A document announcing an entity that has not ended (no subsegments)."""
    text = _head(entity, in_progress=True) + "}"
    if entity.segment is entity:
        return text
    return _standalone(entity, text)


def datagram(doc: str) -> bytes:
    return HEADER + doc.encode("utf-8", "replace")
