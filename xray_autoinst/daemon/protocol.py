"""The daemon wire protocol: listen addresses and UDP datagrams carrying segment documents."""

from __future__ import annotations

import json
from dataclasses import dataclass

from xray_autoinst.daemon_address import parse_daemon_address

HEADER = {"format": "json", "version": 1}
_KNOWN_HEADERS = frozenset(
    {b'{"format": "json", "version": 1}', b'{"format":"json","version":1}'}
)
#: Largest document accepted, as the AWS daemon's receive buffer.
MAX_DOCUMENT = 64 * 1024
#: recv() buffer: a header, a newline and a maximal document, plus one byte to see overflow.
RECV_BUFFER = MAX_DOCUMENT + 128

DEFAULT_PORT = 2000
DEFAULT_HOST = "127.0.0.1"

# Reasons a datagram is dropped (also the counter names).
EMPTY = "empty"
NO_HEADER = "no_header"
BAD_HEADER = "bad_header"
OVERSIZED = "oversized"
BAD_JSON = "bad_json"
INVALID = "invalid"
REJECT_REASONS = (EMPTY, NO_HEADER, BAD_HEADER, OVERSIZED, BAD_JSON, INVALID)

_DECODER = json.JSONDecoder()  # json.loads(bytes) sniffs the encoding: slower at 20k docs/s


@dataclass(frozen=True)
class ListenAddresses:
    udp: tuple[str, int]
    tcp: tuple[str, int]


def parse_listen(value: str) -> ListenAddresses:
    """The daemon's listen addresses: ``AWS_XRAY_DAEMON_ADDRESS``'s grammar, read by the same
    parser as the agent's (``xray_autoinst.daemon_address``), port 0 allowed (a free port).
    Raises ValueError with a readable message."""
    udp, tcp = parse_daemon_address(value, listening=True)
    return ListenAddresses(udp, tcp)


def split_datagram(data: bytes) -> tuple[str | None, bytes]:
    """Check the header line; return (reason the datagram is rejected or None, document bytes)."""
    if not data.strip():
        return EMPTY, b""
    header, sep, body = data.partition(b"\n")
    if not sep:
        return NO_HEADER, b""
    header = header.strip()
    if header not in _KNOWN_HEADERS:
        try:
            parsed = json.loads(header)
        except ValueError:
            return NO_HEADER, b""
        if not isinstance(parsed, dict) or "format" not in parsed:
            return NO_HEADER, b""
        if parsed.get("format") != "json" or parsed.get("version") != 1:
            return BAD_HEADER, b""
    if len(body) > MAX_DOCUMENT:
        return OVERSIZED, b""
    if not body.strip():
        return EMPTY, b""
    return None, body


_NUMBER = (int, float)  # exact types: True is not a time


def _tree_flags(doc: dict) -> tuple[int, int, int]:
    """fault, error and throttle anywhere in a document and its nested subsegments."""
    fault = error = throttle = 0
    stack = [doc]
    pop, push = stack.pop, stack.extend
    while stack:
        entity = pop()
        get = entity.get
        if get("fault") is True:
            fault = 1
        if get("error") is True:
            error = 1
        if get("throttle") is True:
            throttle = 1
        subs = get("subsegments")
        if type(subs) is list:
            push([s for s in subs if type(s) is dict])
    return fault, error, throttle


def document_row(doc, body: bytes, received: float) -> tuple | None:
    """The store's row for one parsed document, or None when it cannot belong to a trace.

    Columns: trace_id, id, parent_id, kind, name, in_progress, start_time, end_time,
    http_method, url, status, fault, error, throttle, received, body.
    (This runs for every document received: it is written for speed.)
    """
    if type(doc) is not dict:
        return None
    get = doc.get
    trace_id = get("trace_id")
    ident = get("id")
    start = get("start_time")
    if type(trace_id) is not str or not 0 < len(trace_id) <= 64:
        return None
    if type(ident) is not str or not 0 < len(ident) <= 64 or type(start) not in _NUMBER:
        return None
    parent_id = get("parent_id")
    if type(parent_id) is not str or not parent_id:
        parent_id = None
    if get("type") == "subsegment":
        if parent_id is None:
            return None
        kind = "subsegment"
    else:
        kind = "segment"
    in_progress = 1 if get("in_progress") is True else 0
    end = get("end_time")
    if type(end) not in _NUMBER:
        if not in_progress:
            return None
        end = None
    name = get("name")
    if type(name) is not str:
        name = None
    method = url = status = None
    http = get("http")
    if type(http) is dict:
        request = http.get("request")
        if type(request) is dict:
            method = request.get("method")
            if type(method) is not str:
                method = None
            url = request.get("url")
            if type(url) is not str:
                url = None
        response = http.get("response")
        if type(response) is dict:
            code = response.get("status")
            if type(code) is int:
                status = code
            elif type(code) is str and code.isdigit():
                status = int(code)
    # Most documents carry no flag at all: a scan of the raw bytes (in C) says so. (A key
    # spelled with \u escapes would be missed here; no SDK writes one.)
    if b'"fault"' in body or b'"error"' in body or b'"throttle"' in body:
        fault, error, throttle = _tree_flags(doc)
    else:
        fault = error = throttle = 0
    return (
        trace_id, ident, parent_id, kind, name, in_progress, float(start),
        None if end is None else float(end), method, url, status, fault, error, throttle,
        received, body,
    )


def decode(data: bytes, received: float) -> tuple[str | None, tuple | None]:
    """Turn one datagram into a store row: (reject reason or None, row or None)."""
    newline = data.find(b"\n")
    if newline < 0 or data[:newline] not in _KNOWN_HEADERS or len(data) - newline > MAX_DOCUMENT:
        # not the common case: let split_datagram say what is wrong, if anything
        reason, body = split_datagram(data)
        if reason is not None:
            return reason, None
    else:
        body = data[newline + 1 :]
    try:
        doc = _DECODER.decode(body.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return (EMPTY if body.isspace() or not body else BAD_JSON), None
    row = document_row(doc, body, received)
    if row is None:
        return INVALID, None
    return None, row


def encode(doc: dict) -> bytes:
    """A datagram for one document, as the SDKs send it (used by tests and the benchmark)."""
    return b'{"format": "json", "version": 1}\n' + json.dumps(doc, separators=(",", ":")).encode()
