"""One grammar for AWS_XRAY_DAEMON_ADDRESS: the agent (config.from_env, the launcher's --local)
and the daemon (protocol.parse_listen, hence --listen and the daemon's environment) read every
value the same way. Before, ``2000``, ``localhost`` and ``UDP:...`` made the daemon listen while
the agent turned tracing off."""

import pytest

from xray_autoinst import config
from xray_autoinst.daemon.protocol import ListenAddresses, parse_listen
from xray_autoinst.daemon_address import parse_daemon_address

V4 = ("127.0.0.1", 2000)
# value -> (udp, tcp), or None when refused by both
TABLE = [
    ("127.0.0.1:2000", (V4, V4)),
    ("  127.0.0.1:2000  ", (V4, V4)),
    ("xray-daemon:2000", (("xray-daemon", 2000), ("xray-daemon", 2000))),
    ("[::1]:2000", (("::1", 2000), ("::1", 2000))),
    ("[fe80::1%eth0]:2000", (("fe80::1%eth0", 2000), ("fe80::1%eth0", 2000))),
    ("udp:10.0.0.1:2001 tcp:10.0.0.2:2002", (("10.0.0.1", 2001), ("10.0.0.2", 2002))),
    ("tcp:h2:9 udp:h1:8", (("h1", 8), ("h2", 9))),
    ("UDP:h1:8 TCP:h2:9", (("h1", 8), ("h2", 9))),
    ("Udp:[::1]:8\ttcp:localhost:9", (("::1", 8), ("localhost", 9))),
    ("localhost:65535", (("localhost", 65535), ("localhost", 65535))),
    # refused by both: no host or no port is never completed with a guess
    ("2000", None), (":2000", None), ("localhost", None), ("[::1]", None), ("host:", None),
    ("", None), ("   ", None),
    ("host:99999", None), ("host:abc", None), ("host:-1", None), ("host:65536", None),
    ("::1:2000", None), ("[::1]2000", None), ("[::1:2000", None),
    ("udp:h:1", None), ("udp:h:1 udp:h:2", None), ("udp:h:1 tcp:h:2 tcp:h:3", None),
    ("http:h:1 tcp:h:2", None), ("udp:h:1 bogus", None), ("a:1 b:2", None), ("UDP:2000", None),
]


@pytest.mark.parametrize("value, expected", TABLE)
def test_agent_and_daemon_agree(value, expected):
    cfg = config.from_env({"AWS_XRAY_DAEMON_ADDRESS": value})
    if expected is None:
        with pytest.raises(ValueError) as exc:
            parse_daemon_address(value)
        assert repr(value) in str(exc.value) and "host:port" in str(exc.value)
        with pytest.raises(ValueError):
            parse_listen(value)
        if value.strip():
            assert cfg.enabled is False and len(cfg.problems) == 1
        else:  # blank is unset: the default
            assert cfg.udp_address == V4 and not cfg.problems
        return
    udp, tcp = expected
    assert parse_daemon_address(value) == (udp, tcp)
    assert parse_listen(value) == ListenAddresses(udp, tcp)
    assert (cfg.udp_address, cfg.tcp_address) == (udp, tcp)
    assert cfg.enabled and not cfg.problems


def test_port_zero_only_for_listening():
    assert parse_listen("127.0.0.1:0") == ListenAddresses(("127.0.0.1", 0), ("127.0.0.1", 0))
    with pytest.raises(ValueError):
        parse_daemon_address("127.0.0.1:0")
    assert config.from_env({"AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:0"}).enabled is False


def test_the_daemon_refuses_what_the_agent_refuses():
    from xray_autoinst.daemon import cli

    args = cli.daemon_parser().parse_args([])
    with pytest.raises(ValueError):
        cli.daemon_settings(args, {"AWS_XRAY_DAEMON_ADDRESS": "2000"})


def test_standard_library_only():
    import ast
    import inspect
    import sys

    import xray_autoinst.daemon_address as mod

    tree = ast.parse(inspect.getsource(mod))
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names
