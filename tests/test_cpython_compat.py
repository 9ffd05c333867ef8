"""The http.client internals contrib/_http.py relies on (named in contrib/_cpython.py) still mean
what we assume, on the interpreter running the tests: tox runs this file on CPython 3.10, 3.11,
3.12 and 3.13 (py310..py313), so each version is checked."""

import http.client
import sys

import pytest

from xray_autoinst.contrib import _cpython, _http


class _Sock:
    """Stands in for the connected socket: collects what endheaders sends."""

    def __init__(self):
        self.sent = b""

    def sendall(self, data):
        self.sent += bytes(data)

    def close(self):
        pass


def _connection():
    conn = http.client.HTTPConnection("example.invalid", 8080)
    conn.sock = _Sock()  # never connects
    return conn


def test_every_assumption_holds_on_this_interpreter():
    assert _cpython.problems() == [], sys.version


def test_the_names_are_the_ones_http_client_uses():
    conn = _connection()
    assert _cpython.STATE in vars(conn)  # the name-mangled __state
    for name in (_cpython.BUFFER, _cpython.METHOD, _cpython.TUNNEL_HOST, _cpython.TUNNEL_PORT):
        assert hasattr(conn, name), name
    assert _http._STATE == _cpython.STATE and _http._REQ_STARTED == _cpython.REQ_STARTED


def test_a_line_appended_while_request_started_is_sent_as_a_header():
    conn = _connection()
    conn.putrequest("POST", "/orders", skip_accept_encoding=True)
    assert _cpython.request_state(conn) == _cpython.REQ_STARTED
    _cpython.header_lines(conn).append(b"X-Amzn-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793")
    conn.endheaders()
    head = conn.sock.sent.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"POST /orders HTTP/1.1"
    assert b"X-Amzn-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793" in head[1:]
    # once sent: no longer REQ_STARTED, the buffer emptied, putheader refused
    assert _cpython.request_state(conn) not in (_cpython.REQ_STARTED, _cpython.IDLE)
    assert _cpython.header_lines(conn) == []
    with pytest.raises(http.client.CannotSendHeader):
        conn.putheader("X-Late", "1")


def test_putheader_outside_a_request_is_refused_so_we_must_check_the_state():
    conn = _connection()
    assert _cpython.request_state(conn) != _cpython.REQ_STARTED
    with pytest.raises(http.client.CannotSendHeader):
        conn.putheader("X-Amzn-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793")


def test_inject_uses_the_buffer_on_this_interpreter():
    conn = _connection()
    conn.putrequest("GET", "/", skip_accept_encoding=True)
    _http._inject(conn, "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")
    _http._inject(conn, "Root=1-00000000-000000000000000000000000;Sampled=1")  # kept: one header
    conn.endheaders()
    sent = conn.sock.sent.lower()
    assert sent.count(b"x-amzn-trace-id:") == 1
    assert b"root=1-5759e988-bd862e3fe1be46a994272793;sampled=1" in sent


def test_tunnel_names_the_origin_not_the_proxy():
    conn = http.client.HTTPSConnection("proxy.invalid", 3128)
    conn.set_tunnel("api.example.com", 443)
    assert _cpython.tunnel(conn) == ("api.example.com", 443)
    assert (conn.host, conn.port) == ("proxy.invalid", 3128)
