"""The daemon's wire protocol: listen addresses and datagram checks (table-driven)."""

import json

import pytest

from xray_autoinst.daemon import protocol
from xray_autoinst.daemon.protocol import ListenAddresses, decode, encode, parse_listen

HEADER = b'{"format": "json", "version": 1}\n'
T0 = 1_700_000_000.0
TRACE = "1-6553f100-0123456789abcdef01234567"


@pytest.mark.parametrize(
    "value, udp, tcp",
    [
        ("127.0.0.1:2000", ("127.0.0.1", 2000), ("127.0.0.1", 2000)),
        ("localhost:3000", ("localhost", 3000), ("localhost", 3000)),
        ("0.0.0.0:2000", ("0.0.0.0", 2000), ("0.0.0.0", 2000)),
        ("[::1]:2001", ("::1", 2001), ("::1", 2001)),
        ("udp:127.0.0.1:2000 tcp:127.0.0.2:2001", ("127.0.0.1", 2000), ("127.0.0.2", 2001)),
        ("tcp:127.0.0.2:2001 udp:127.0.0.1:2000", ("127.0.0.1", 2000), ("127.0.0.2", 2001)),
        ("  udp:[::1]:5 tcp:localhost:6 ", ("::1", 5), ("localhost", 6)),
        ("UDP:127.0.0.1:0 TCP:127.0.0.1:0", ("127.0.0.1", 0), ("127.0.0.1", 0)),  # free ports
    ],
)
def test_parse_listen(value, udp, tcp):
    assert parse_listen(value) == ListenAddresses(udp, tcp)


@pytest.mark.parametrize(
    "value",
    # ":2500", "2500" and "localhost" were completed with loopback/2000 here while the agent
    # refused them (tests/test_daemon_address.py: one grammar for both now)
    ["", "   ", ":2500", "2500", "localhost", "host:99999", "host:abc", "::1:2000", "[::1]2000",
     "udp:h:1", "udp:h:1 udp:h:2",
     "udp:h:1 tcp:h:2 tcp:h:3", "http:h:1 tcp:h:2", "udp:h:1 bogus"],
)
def test_parse_listen_rejects(value):
    with pytest.raises(ValueError):
        parse_listen(value)


def seg(**extra):
    doc = {"name": "web", "id": "70de5b6f19ff9a0a", "trace_id": TRACE, "start_time": T0,
           "end_time": T0 + 0.5}
    doc.update(extra)
    return doc


def body(doc) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "datagram, reason",
    [
        (HEADER + body(seg()), None),
        (b'{"format":"json","version":1}\n' + body(seg()), None),
        (b'{"version": 1, "format": "json"}\n' + body(seg()), None),
        (b'  {"format": "json", "version": 1}  \n' + body(seg()), None),
        (HEADER + body(seg(end_time=None, in_progress=True)), None),
        (b"", "empty"),
        (b"   \n  ", "empty"),
        (HEADER, "empty"),
        (HEADER + b"   ", "empty"),
        (body(seg()), "no_header"),  # a document with no header line
        (b"hello world", "no_header"),
        (b"not json\n" + body(seg()), "no_header"),
        (b'{"format": "json", "version": 2}\n' + body(seg()), "bad_header"),
        (b'{"format": "xml", "version": 1}\n' + body(seg()), "bad_header"),
        (b'{"format": "json"}\n' + body(seg()), "bad_header"),
        (HEADER + b"{not json", "bad_json"),
        (HEADER + b'{"a": 1} trailing', "bad_json"),
        (HEADER + b'{"name": "\xff\xfe"}', "bad_json"),  # not UTF-8
        (HEADER + b"[1, 2]", "invalid"),
        (HEADER + b'"a string"', "invalid"),
        (HEADER + body({k: v for k, v in seg().items() if k != "trace_id"}), "invalid"),
        (HEADER + body({k: v for k, v in seg().items() if k != "id"}), "invalid"),
        (HEADER + body({k: v for k, v in seg().items() if k != "start_time"}), "invalid"),
        (HEADER + body(seg(start_time="yesterday")), "invalid"),
        (HEADER + body(seg(start_time=True)), "invalid"),
        (HEADER + body({k: v for k, v in seg().items() if k != "end_time"}), "invalid"),
        (HEADER + body(seg(type="subsegment")), "invalid"),  # a subsegment needs parent_id
        (HEADER + body(seg(trace_id="")), "invalid"),
        (HEADER + body(seg(trace_id="x" * 65)), "invalid"),
        (HEADER + b"{" * 100_000, "oversized"),
        (HEADER + b" " * (protocol.MAX_DOCUMENT - 200) + body(seg()), None),
    ],
)
def test_decode(datagram, reason):
    got, row = decode(datagram, T0)
    assert got == reason
    assert (row is None) == (reason is not None)


def test_row_fields():
    doc = seg(
        parent_id="1111111111111111",
        http={"request": {"method": "POST", "url": "http://h/x"}, "response": {"status": "503"}},
        subsegments=[{"name": "a", "id": "2222222222222222", "start_time": T0, "end_time": T0,
                      "subsegments": [{"name": "b", "id": "3333333333333333",
                                       "start_time": T0, "end_time": T0, "throttle": True,
                                       "error": True}]}],
    )
    raw = body(doc)
    reason, row = decode(HEADER + raw, 123.0)
    assert reason is None
    (trace_id, ident, parent, kind, name, in_progress, start, end, method, url, status,
     fault, error, throttle, received, stored_body) = row
    assert (trace_id, ident, parent, kind, name) == (TRACE, "70de5b6f19ff9a0a",
                                                      "1111111111111111", "segment", "web")
    assert (in_progress, start, end) == (0, T0, T0 + 0.5)
    assert (method, url, status) == ("POST", "http://h/x", 503)
    # flags anywhere in the tree count for the document
    assert (fault, error, throttle) == (0, 1, 1)
    assert received == 123.0
    assert json.loads(stored_body) == doc


def test_streamed_subsegment_row():
    doc = seg(type="subsegment", parent_id="abcdefabcdefabcd", fault=True)
    reason, row = decode(encode(doc), T0)
    assert reason is None
    assert row[3] == "subsegment" and row[2] == "abcdefabcdefabcd" and row[11] == 1


def test_encode_round_trip():
    reason, row = decode(encode(seg()), T0)
    assert reason is None and json.loads(row[15]) == seg()
