"""``xray-run --check``: the effective configuration, the integrations, the daemon address."""

from __future__ import annotations

import socket
import sys

from . import __version__
from . import config as _config
from .registry import INTEGRATIONS, UNTRACED


def _version(dist):
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _stdlib(module):
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def report(environ=None) -> tuple[str, bool]:
    cfg = _config.from_env(environ)
    lines = [f"xray-autoinst {__version__} (Python {sys.version.split()[0]}, {sys.prefix})", ""]
    lines.append("configuration:")
    width = max(len(v) for v, _, _ in _config.DOCS)
    for var, default, _doc in _config.DOCS:
        value, origin = cfg.sources.get(var, (default, "default"))
        lines.append(f"  {var:<{width}}  {value}  [{origin}]")
    lines.append(f"  {'tracing':<{width}}  {'on' if cfg.enabled else 'OFF'}")
    lines.append("")
    lines.append("integrations:")
    for name, (targets, _patcher, dist) in INTEGRATIONS.items():
        if dist is None:
            installed = "standard library" if _stdlib(targets[0]) else "not available"
        else:
            # a tuple names alternative distributions (psycopg2-binary or psycopg2)
            dists = dist if isinstance(dist, tuple) else (dist,)
            found = [(d, _version(d)) for d in dists]
            found = [(d, v) for d, v in found if v] or [(" or ".join(dists), None)]
            d, v = found[0]
            installed = f"{d} {v}" if v else f"{d} not installed"
        state = "disabled" if name in cfg.disabled_instrumentations else "enabled"
        if not cfg.enabled:
            state = "off"
        lines.append(f"  {name:<14} {state:<9} {installed}")
    untraced = [f"{m} ({what})" for m, what in UNTRACED.items() if _stdlib(m)]
    if untraced:
        lines.append("")
        lines.append("installed but NOT traced (their calls are not recorded):")
        lines += [f"  {u}" for u in untraced]
    lines.append("")
    udp_host, udp_port = cfg.udp_address
    tcp_host, tcp_port = cfg.tcp_address
    lines.append("daemon:")
    for kind, host, port in (("udp", udp_host, udp_port), ("tcp", tcp_host, tcp_port)):
        try:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            where = info[0][4][0]
            lines.append(f"  {kind} {host}:{port} resolves to {where}")
        except OSError as exc:
            lines.append(f"  {kind} {host}:{port} does NOT resolve ({exc})")
    lines.append("")
    lines.append("sampling:")
    fallback = "local rules" if cfg.sampling_rules is not None else "default rule (1/s + 5%)"
    if cfg.sampling_mode == "centralized":
        from .core.centralized import probe

        lines.append(f"  mode: centralized, from the proxy at tcp {tcp_host}:{tcp_port}; "
                     f"fallback: {fallback}")
        answers, said = probe(cfg.tcp_address)
        lines.append(f"  proxy {'answers' if answers else 'does NOT answer'}: {said}")
        if not answers:
            lines.append(f"  (until it answers, the {fallback} decides)")
    else:
        lines.append(f"  mode: local, {fallback}")
    lines.append("")
    lines.extend(_reach())
    lines.append("")
    lines += _where(cfg)
    ok = not cfg.problems
    if cfg.problems:
        lines.append("")
        lines.append("problems:")
        for p in cfg.problems:
            lines.append(f"  - {p}")
    return "\n".join(lines) + "\n", ok


def _reach() -> list[str]:
    """Where the start-up hook reaches, and where it cannot (issue 12)."""
    from .launcher import bootstrap_dir

    return [
        "start-up hook:",
        f"  {bootstrap_dir()}",
        "  put on PYTHONPATH by xray-run: every child Python of this installation that",
        "  inherits it is traced. Untraced: children started with -I or -E, or with an",
        "  environment whose PYTHONPATH no longer holds this directory (env={...}).",
    ]


def main(argv=None) -> int:
    text, ok = report()
    sys.stdout.write(text)
    return 0 if ok else 1


def _where(cfg) -> list:
    """Where the service runs, as the segments will say (detected now, synchronously)."""
    out = ["where the service runs (origin and aws.* on segments):"]
    if not cfg.resource_detection:
        return out + ["  detection off (XRAY_RESOURCE_DETECTION=false)"]
    from .core import resources

    found = resources.detect(cfg)
    if not found:
        return out + ["  nothing detected (not Elastic Beanstalk, EKS, ECS or EC2)"]
    out.append(f"  origin: {resources.origin(found)}")
    for name, block in found.items():
        out.append(f"  aws.{name}: " + ", ".join(f"{k}={v}" for k, v in block.items()))
    return out

