"""``xray-run --check``: the effective configuration, the integrations, the daemon address."""

from __future__ import annotations

import os
import re
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


# servers whose first target argument ("shop.wsgi:app") names the service
_TARGET = re.compile(r"^[A-Za-z_][\w.]*(:[\w.()]*)?$")
_SERVERS = ("gunicorn", "uvicorn", "hypercorn", "daphne", "waitress-serve", "celery")


def service_name(cfg, command=None) -> str:
    """The service name the segments would carry, and where it comes from."""
    if cfg.service_name:
        var = next((v for v in (_config.SERVICE_NAME, _config.TRACING_NAME)
                    if cfg.sources.get(v, (None, ""))[1] == "env"), _config.SERVICE_NAME)
        return f"{cfg.service_name}  [{var}]"
    if not command:
        return ("derived from the program: its main script's stem, its -m module, or the "
                "application a server loads (give the command after --check to see it)")
    from .contrib._web import project_name

    prog = os.path.basename(command[0])
    args = command[1:]
    name = None
    if prog.startswith("python"):
        while args:
            arg = args.pop(0)
            if arg == "-m" and args:
                name, prog, args = args[0], args[0], args[1:]
                break
            if arg in ("-c", "-"):
                name = "python"
                break
            if not arg.startswith("-"):
                name = os.path.splitext(os.path.basename(arg))[0]
                break
    if prog in _SERVERS:
        targets = [v for o, v in zip([""] + args, args, strict=False) if o in ("-A", "--app")]
        targets += [v.split("=", 1)[1] for v in args if v.startswith("--app=")]
        targets += [a for a in args if _TARGET.match(a)]
        name = next((n for n in map(project_name, targets) if n), None) or name
        how = "from the server's application target (the application may refine it)"
    else:
        how = "from the command"
    if not name:
        name = os.path.splitext(prog)[0]
    fixed, _ = _config.clean_name(name)
    return f"{fixed}  [{how}]"


def _command_lines(command, enabled) -> tuple[list[str], bool]:
    """What ``xray-run --check COMMAND`` says about COMMAND (which it never runs), and whether
    it would be traced (False: not found, or a Python of another installation)."""
    import shutil
    import subprocess

    from .launcher import expected_interpreter

    lines = ["command:", f"  {' '.join(command)}", "  (not run: --check only describes it)"]
    path = shutil.which(command[0])
    if path is None:
        return lines + [f"  {command[0]}: command NOT found on PATH"], False
    interp = path if os.path.basename(path).startswith("python") else None
    if interp is None:
        try:
            with open(path, "rb") as f:
                first = f.readline(512)
        except OSError:
            first = b""
        if first.startswith(b"#!") and b"python" in first:
            words = first[2:].decode("utf-8", "replace").split()
            interp = words[1] if words and os.path.basename(words[0]) == "env" and \
                len(words) > 1 else (words[0] if words else None)
            interp = shutil.which(interp) if interp else None
    if interp is None:
        return lines + [f"  {path}: not a Python program; the Python interpreters of this "
                        "installation it starts are traced"], True
    try:
        out = subprocess.run(
            [interp, "-I", "-c", "import sys, importlib.util as u; print('%s|%d.%d' % "
             "((sys.prefix,) + tuple(sys.version_info[:2]))); "
             "print(u.find_spec('xray_autoinst') is not None)"],
            capture_output=True, text=True, timeout=15)
        theirs, _, has_agent = out.stdout.strip().partition("\n")
    except (OSError, subprocess.SubprocessError) as exc:
        return lines + [f"  interpreter {interp} does not start ({exc})"], False
    if theirs == expected_interpreter():
        if enabled:
            return lines + [f"  interpreter {interp}: this installation's -- traced"], True
        return lines + [f"  interpreter {interp}: this installation's -- traced when tracing is "
                        "on, but tracing is OFF (see problems and the settings below)"], True
    prefix = theirs.split("|")[0]
    if has_agent.strip() == "True":
        advice = (f"  it has xray-autoinst of its own: check with {prefix}/bin/xray-run --check "
                  f"{' '.join(command)}")
    else:
        advice = "  install xray-autoinst in that environment and use its xray-run"
    return lines + [
        f"  interpreter {interp} ({theirs.replace('|', ', Python ')}) is NOT this installation's "
        f"({sys.prefix}, Python {sys.version_info[0]}.{sys.version_info[1]}): it is NOT traced;",
        advice, "  (the integrations below are this installation's, not that interpreter's)"], \
        False


def _sampling_lines(rules, source) -> list[str]:
    """The local rules (from ``source``, XRAY_SAMPLING_RULES' value): how many, the default,
    then one line each, first match wins."""
    def one(rule):
        what = " ".join(f"{k}={v}" for k, v in (("host", rule.host), ("method", rule.method),
                                                   ("path", rule.path)) if v != "*") or "any"
        desc = f"{rule.description!r}: " if rule.description else ""
        return f"{desc}{what} -> {rule.fixed_target}/s then {rule.rate:.0%}"

    n = len(rules.rules)
    out = [f"  {n} rule{'' if n == 1 else 's'} before the default rule "
           f"({rules.default.fixed_target}/s then {rules.default.rate:.0%}), from "
           f"{'inline JSON' if source.lstrip().startswith('{') else source}",
           f"  local rules (version {rules.version}), first match wins:"]
    out += [f"    {i}. {one(r)}" for i, r in enumerate(rules.rules, 1)]
    out.append(f"    default: {rules.default.fixed_target}/s then {rules.default.rate:.0%}")
    return out


def report(environ=None, command=None) -> tuple[str, bool]:
    cfg = _config.from_env(environ)
    lines = [f"xray-autoinst {__version__} (Python {sys.version.split()[0]}, {sys.prefix})", ""]
    traced = True
    if command:
        more, traced = _command_lines(command, cfg.enabled)
        lines += more + [""]
    lines.append(f"service name: {service_name(cfg, command)}")
    lines.append("")
    lines.append("configuration:")
    width = max(len(row[_config.VAR]) for row in _config.SETTINGS)
    for var, _field, _parse, _default, shown, _doc in _config.SETTINGS:
        value, origin = cfg.sources.get(var, (shown, "default"))
        lines.append(f"  {var:<{width}}  {value}  [{origin}]")
    lines.append(f"  {'tracing':<{width}}  {'on' if cfg.enabled else 'OFF'}")
    lines.append("")
    lines.append("integrations:")
    for name, integration in INTEGRATIONS.items():
        dist = integration.distribution
        if dist is None:
            installed = "standard library" if _stdlib(integration.targets[0]) else "not available"
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
    daemon_value, daemon_origin = cfg.sources.get(_config.DAEMON_ADDRESS, ("", "default"))
    bad_daemon = daemon_origin not in ("env", "default")
    if bad_daemon:  # never probe the default address in its place
        try:
            _config.parse_daemon_address(daemon_value)
            why = ""
        except ValueError as exc:
            why = str(exc)
        lines.append(f"  {_config.DAEMON_ADDRESS}={daemon_value!r} is not valid: {why}")
        lines.append("  tracing is OFF: nothing is sent, no address probed")
    for kind, host, port in (("udp", udp_host, udp_port), ("tcp", tcp_host, tcp_port)):
        if bad_daemon:
            break
        try:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            where = info[0][4][0]
            lines.append(f"  {kind} {host}:{port} resolves to {where}")
        except OSError as exc:
            lines.append(f"  {kind} {host}:{port} does NOT resolve ({exc})")
    lines.append("")
    lines.append("sampling:")
    fallback = "local rules" if cfg.sampling_rules is not None else "default rule (1/s + 5%)"
    if bad_daemon:
        lines.append("  none: tracing is off")
    elif cfg.sampling_mode == "centralized":
        from .core.centralized import RULES_INTERVAL
        from .core.centralized_rules import probe

        lines.append(f"  mode: centralized, from the proxy at tcp {tcp_host}:{tcp_port}; "
                     f"fallback: {fallback}")
        lines.append(f"  (the rules and quotas come from the daemon: rules every "
                     f"{cfg.sampling_poll * RULES_INTERVAL:g} s, quotas every "
                     f"{cfg.sampling_poll:g} s)")
        answers, said = probe(cfg.tcp_address)
        lines.append(f"  proxy {'answers' if answers else 'does NOT answer'}: {said}")
        if not answers:
            lines.append(f"  (until it answers, the {fallback} decides)")
    else:
        lines.append(f"  mode: local, {fallback}")
    if cfg.sampling_rules is not None and not bad_daemon:
        lines += _sampling_lines(cfg.sampling_rules, cfg.sources[_config.SAMPLING_RULES][0])
    lines.append("")
    lines.extend(_reach())
    lines.append("")
    lines += _where(cfg)
    problems = list(cfg.problems)
    if not traced:
        problems.append(f"the command ({command[0]}) would NOT be traced: see command above")
    if problems:
        lines.append("")
        lines.append("problems:")
        for p in problems:
            lines.append(f"  - {p}")
    ok = not problems
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
    """``argv``: the command given after ``--check`` (described, never run), or None."""
    command = list(argv or ())
    if command[:1] == ["--"]:
        command = command[1:]
    text, ok = report(command=command or None)
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

