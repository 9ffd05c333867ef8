"""The one parser of ``AWS_XRAY_DAEMON_ADDRESS`` (and of the daemon's ``--listen``), used by the
agent (``config``, ``launcher``) and by the daemon (``daemon/protocol``, ``daemon/cli``), so a
value never means one thing to the agent and another to the daemon. Standard library only.

The grammar (the one every AWS X-Ray SDK and the AWS daemon read; surrounding blanks ignored)::

    address   := hostport                          UDP and TCP on the same host and port
               | proto hostport  " "+  proto hostport   one udp: and one tcp:, either order
    proto     := "udp:" | "tcp:"                   any case (UDP: is udp:)
    hostport  := host ":" port | "[" ipv6 "]" ":" port
    port      := 1..65535 (decimal); 0 too when listening ("any free port")

Host and port are both required: ``2000``, ``:2000``, ``localhost`` and ``[::1]`` are refused
(by the agent, which then turns tracing off with one warning, and by the daemon, which refuses to
start) rather than completed with a guess. UDP carries the segment documents, TCP the sampling
proxy. Nothing is resolved here: a hostname is kept as written.
"""

from __future__ import annotations

EXPECTED = "host:port, [ipv6]:port or 'udp:host:port tcp:host:port'"


def parse_hostport(text: str, listening: bool = False) -> tuple[str, int]:
    """``host:port`` or ``[ipv6]:port`` to (host, port). Raises ValueError saying what is wrong."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"{text!r}: write an IPv6 address as [addr]:port")
        host, port = text[1:end], text[end + 2 :]
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"{text!r}: expected host:port")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address as [addr]:port")
    if not host:
        raise ValueError(f"{text!r}: no host (write 127.0.0.1:{port or 'port'} for loopback)")
    if not port.isdigit() or not (0 if listening else 1) <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from {0 if listening else 1} "
                         "to 65535")
    return host, int(port)


def parse_daemon_address(value: str, listening: bool = False
                         ) -> tuple[tuple[str, int], tuple[str, int]]:
    """``value`` to ((udp host, port), (tcp host, port)) by the grammar above; ``listening``
    also accepts port 0. Raises ValueError with a readable message naming the value."""
    parts = value.split()
    try:
        if not parts:
            raise ValueError("empty")
        if len(parts) == 1 and not parts[0].lower().startswith(("udp:", "tcp:")):
            addr = parse_hostport(parts[0], listening)
            return addr, addr
        found: dict[str, tuple[str, int]] = {}
        for part in parts:
            proto, sep, rest = part.partition(":")
            proto = proto.lower()
            if not sep or proto not in ("udp", "tcp"):
                raise ValueError(f"{part!r}: expected udp:host:port or tcp:host:port")
            if proto in found:
                raise ValueError(f"{proto} given twice")
            found[proto] = parse_hostport(rest, listening)
        if len(found) != 2:
            raise ValueError("give both udp:host:port and tcp:host:port")
        return found["udp"], found["tcp"]
    except ValueError as exc:
        raise ValueError(f"bad address {value!r} ({exc}): expected {EXPECTED}") from None
