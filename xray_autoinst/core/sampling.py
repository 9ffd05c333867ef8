"""Local sampling: X-Ray rules (version 1 and 2) with a per-second reservoir and a rate.

Rules are validated strictly; ``load_rules`` raises ``ValueError`` with a message naming the
problem. The default rule is X-Ray's: the first request each second, then 5%.
"""

from __future__ import annotations

import json
import os
import random
import re
import time

_rand = random.random
_time = time.time


class Rule:
    __slots__ = ("description", "host", "method", "path", "fixed_target", "rate", "_match",
                 "_second", "_used")

    def __init__(self, fixed_target, rate, host="*", method="*", path="*", description=""):
        self.description = description
        self.host = host
        self.method = method
        self.path = path
        self.fixed_target = fixed_target
        self.rate = rate
        pats = [_wildcard(p) for p in (host, method, path)]
        self._match = None if all(p is None for p in pats) else pats
        self._second = 0
        self._used = 0

    def matches(self, host, method, path):
        pats = self._match
        if pats is None:
            return True
        for pat, value in zip(pats, (host, method, path), strict=True):
            if pat is not None and not pat.match(value or ""):
                return False
        return True

    def sample(self, now=None):
        """Take from this second's reservoir, else sample at the rate."""
        if self.fixed_target > 0:
            # floor division, not int(): int() of a float is a type call (~1 000 instructions
            # on CPython 3.11, more than the rest of this method); the second is a float
            second = (_time() if now is None else now) // 1
            if second != self._second:
                self._second = second
                self._used = 0
            if self._used < self.fixed_target:
                self._used += 1
                return True
        return self.rate > 0 and _rand() < self.rate

    def reset(self):
        self._second = 0
        self._used = 0


def _wildcard(pattern):
    """None matches everything; otherwise a compiled case-insensitive full-match regex."""
    if pattern in (None, "", "*"):
        return None
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex + r"\Z", re.IGNORECASE | re.DOTALL)


class LocalRules:
    """First matching rule wins; the default rule catches the rest."""

    __slots__ = ("rules", "default", "version")

    def __init__(self, rules, default, version=2):
        self.rules = rules
        self.default = default
        self.version = version

    def sample(self, host=None, method=None, path=None):
        rules = self.rules
        if not rules:  # the usual case (X-Ray's default rule alone): no loop, no matching
            return self.default.sample()
        for rule in rules:
            if rule.matches(host, method, path):
                return rule.sample()
        return self.default.sample()

    def reset(self):
        for rule in self.rules:
            rule.reset()
        self.default.reset()


def default_rules() -> LocalRules:
    return LocalRules([], Rule(1, 0.05, description="Default"))


def _number(obj, key, where, *, integer=False, lo=None, hi=None):
    if key not in obj:
        raise ValueError(f"{where} has no {key!r}")
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and v != int(v)):
        raise ValueError(f"{where}: {key}={v!r} must be a {'whole ' if integer else ''}number")
    if lo is not None and v < lo:
        raise ValueError(f"{where}: {key}={v!r} must not be below {lo}")
    if hi is not None and v > hi:
        raise ValueError(f"{where}: {key}={v!r} must not be above {hi}")
    return int(v) if integer else float(v)


def _text(obj, key, where):
    v = obj.get(key, "*")
    if not isinstance(v, str) or not v:
        raise ValueError(f"{where}: {key}={v!r} must be a non-empty string")
    return v


def parse_rules(text: str) -> LocalRules:
    """Parse local sampling rules JSON (version 1 or 2). Raises ValueError."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError("the rules document must be a JSON object")
    version = doc.get("version")
    if version not in (1, 2) or isinstance(version, bool):
        raise ValueError(f"version={version!r} is not supported: use 1 or 2")
    default = doc.get("default")
    if not isinstance(default, dict):
        raise ValueError("'default' (an object with fixed_target and rate) is required")
    for key in ("host", "service_name", "http_method", "url_path"):
        if key in default:
            raise ValueError(f"the default rule must not have {key!r}")
    d_rule = Rule(
        _number(default, "fixed_target", "default", integer=True, lo=0),
        _number(default, "rate", "default", lo=0, hi=1),
        description="Default",
    )
    rules = []
    raw_rules = doc.get("rules", [])
    if not isinstance(raw_rules, list):
        raise ValueError("'rules' must be a list")
    host_key = "host" if version == 2 else "service_name"
    for i, r in enumerate(raw_rules):
        where = f"rules[{i}]"
        if not isinstance(r, dict):
            raise ValueError(f"{where} must be an object")
        other = "service_name" if version == 2 else "host"
        if other in r:
            raise ValueError(
                f"{where}: {other!r} is not a version {version} field; use {host_key!r}"
            )
        rules.append(
            Rule(
                _number(r, "fixed_target", where, integer=True, lo=0),
                _number(r, "rate", where, lo=0, hi=1),
                host=_text(r, host_key, where),
                method=_text(r, "http_method", where),
                path=_text(r, "url_path", where),
                description=str(r.get("description", "")),
            )
        )
    return LocalRules(rules, d_rule, version)


def load_rules(value: str) -> LocalRules:
    """``value`` is inline JSON or a path to a JSON file."""
    text = value.strip()
    if not text.startswith("{"):
        try:
            with open(os.path.expanduser(text), encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ValueError(f"cannot read rules file {value!r}: {exc.strerror}") from None
    return parse_rules(text)
