"""The CPython internals the outbound HTTP instrumentation relies on, in one place.

``contrib/_http.py`` reads (and, for the trace header, appends to) private state of
``http.client.HTTPConnection`` instead of calling ``putheader`` at a moment http.client would
refuse it. These names are not public API; they have held from CPython 3.10 to 3.13 and
``tests/test_cpython_compat.py`` checks, on every interpreter tox runs, that each still means what
we assume. When a new CPython changes one, this module is the only place to change.

``STATE`` (``_HTTPConnection__state``, name-mangled ``__state``)
    ``REQ_STARTED`` between ``putrequest`` and ``endheaders`` -- the moment ``putheader`` is
    allowed and header lines are still collected; ``IDLE`` once they are sent.
``BUFFER`` (``_buffer``)
    a list of bytes lines: the request line (``b"GET /path HTTP/1.1"``) first, then one
    ``b"Name: value"`` per header, joined and sent by ``endheaders``. Appending to it is what
    ``putheader`` does after validating the name and value.
``METHOD`` (``_method``)
    the request method (str) given to ``putrequest``.
``TUNNEL_HOST`` / ``TUNNEL_PORT`` (``_tunnel_host``, ``_tunnel_port``)
    set by ``set_tunnel``: the origin server when the connection goes through a CONNECT proxy
    (``host``/``port`` are then the proxy's); ``None`` otherwise.
"""

from __future__ import annotations

import http.client as _client

STATE = "_HTTPConnection__state"
BUFFER = "_buffer"
METHOD = "_method"
TUNNEL_HOST = "_tunnel_host"
TUNNEL_PORT = "_tunnel_port"
# the state values: http.client's module constants when it still has them
REQ_STARTED = getattr(_client, "_CS_REQ_STARTED", "Request-started")
IDLE = getattr(_client, "_CS_IDLE", "Idle")


def request_state(conn):
    """The connection's request state (``REQ_STARTED`` while headers may be added), or None."""
    return getattr(conn, STATE, None)


def header_lines(conn):
    """The list of request and header lines being written, or None outside ``putrequest``."""
    return getattr(conn, BUFFER, None)


def request_method(conn):
    return getattr(conn, METHOD, None)


def tunnel(conn):
    """(host, port) of the origin behind a CONNECT proxy, or (None, None)."""
    return getattr(conn, TUNNEL_HOST, None), getattr(conn, TUNNEL_PORT, None)


def problems() -> list[str]:
    """What no longer holds on this interpreter (empty when every assumption does); offline:
    exercises ``putrequest``/``putheader``/``set_tunnel`` without opening a socket."""
    out = []
    conn = _client.HTTPConnection("example.invalid", 8080)
    if request_state(conn) != IDLE:
        out.append(f"{STATE} of a new connection is {request_state(conn)!r}, not {IDLE!r}")
    conn.putrequest("GET", "/p?q=1", skip_accept_encoding=True)
    if request_state(conn) != REQ_STARTED:
        out.append(f"{STATE} after putrequest is {request_state(conn)!r}, not {REQ_STARTED!r}")
    lines = header_lines(conn)
    if not isinstance(lines, list) or not lines or lines[0] != b"GET /p?q=1 HTTP/1.1":
        out.append(f"{BUFFER} after putrequest is {lines!r}, not [request line, headers...]")
    elif not any(line.startswith(b"Host: ") for line in lines[1:]):
        out.append(f"{BUFFER} holds no b'Host: ...' line after putrequest: {lines!r}")
    else:
        conn.putheader("X-Probe", "1")
        if lines[-1] != b"X-Probe: 1":
            out.append(f"putheader appends {lines[-1]!r} to {BUFFER}, not b'X-Probe: 1'")
    if request_method(conn) != "GET":
        out.append(f"{METHOD} after putrequest is {request_method(conn)!r}, not 'GET'")
    proxied = _client.HTTPConnection("proxy.invalid", 3128)
    if tunnel(proxied) != (None, None):
        out.append(f"{TUNNEL_HOST}/{TUNNEL_PORT} of a direct connection are {tunnel(proxied)!r}")
    proxied.set_tunnel("origin.invalid", 8443)
    if tunnel(proxied) != ("origin.invalid", 8443):
        out.append(f"{TUNNEL_HOST}/{TUNNEL_PORT} after set_tunnel are {tunnel(proxied)!r}")
    return out
