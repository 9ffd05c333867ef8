"""Centralized sampling: X-Ray sampling rules and reservoir quotas from the daemon's proxy.

The daemon's TCP port is a proxy to the X-Ray API (``POST /GetSamplingRules``,
``POST /SamplingTargets``, the API's JSON shapes). ``CentralizedSampler`` has the interface of
``sampling.LocalRules`` (``sample(host, method, path) -> bool``, ``reset()``):

- One daemon thread (started on the first ``sample()`` of each process, never at import or
  configuration) fetches the rules every 5 minutes and reports statistics / fetches reservoir
  quotas every 10 seconds, each with jitter; a target's ``Interval`` sets how often that rule is
  reported. Errors back off exponentially (1 s doubling to 60 s), sockets time out after 2 s,
  and a broken proxy costs at most one log line a minute.
- ``sample()`` only reads memory and takes no lock: the rule list is an immutable tuple swapped
  whole by the poller; counters are plain integers (a race may lose a count, never a request).
- A matched rule takes from its reservoir quota while the quota's TTL holds; without a quota
  (none yet, or expired) it borrows one request a second if the rule has a reservoir, as the
  X-Ray SDKs do; then it samples at its ``FixedRate`` (updated by targets). A borrowed request
  counts in ``SampledCount`` and ``BorrowCount``.
- While the rules are unknown (not fetched yet, proxy unreachable from the start) or when the
  proxy has not answered for an hour (the SDKs' rule cache lifetime; quotas run out sooner, by
  their TTL), the local rules decide: ``XRAY_SAMPLING_RULES`` or X-Ray's default rule.
- After a fork (checked by PID on use, since uWSGI forks in C where ``os.register_at_fork``
  does not run) the child keeps the rule definitions but gets fresh counters, no quota, a new
  ClientID and its own poller on first use.

Rule matching: ``ServiceName`` against the service name, ``Host``, ``HTTPMethod`` and ``URLPath``
against the request (``*`` any run of characters, ``?`` one, case-insensitive; a value the
request lacks is the empty string, as in local rules), by ``Priority`` then ``RuleName``; the
``Default`` rule catches the rest. Rules are skipped, and never match, when they are not
``Version`` 1, when they target a ``ResourceARN`` other than ``*`` (the agent knows no resource
ARN of its own), when they constrain ``Attributes`` (requests carry no X-Ray attributes here), or
when their ``ServiceType`` is a specific platform (``AWS::EC2::Instance`` ...: the agent does not
detect its platform, so only ``*`` matches). Such rules are what the X-Ray SDKs skip too.
"""

from __future__ import annotations

import os
import random
import threading
import time
import weakref

from .. import log as _log
from .sampling import _wildcard

RULES_INTERVAL = 30  # rules are fetched every RULES_INTERVAL * poll seconds (5 minutes)
DEFAULT_POLL = 10.0  # seconds between SamplingTargets calls
RULES_TTL = 3600.0  # rules are dropped when the proxy has not answered for an hour
TIMEOUT = 2.0  # socket timeout for the proxy
MAX_BODY = 4 << 20  # largest answer read from the proxy
MAX_PAGES = 100  # GetSamplingRules pages followed
MAX_DOCS = 25  # SamplingStatisticsDocuments per call (the API's limit)
LOG_KEY = "sampling-proxy"

_getpid = os.getpid
_time = time.time


class ProxyError(Exception):
    """The proxy could not be reached or its answer was unusable."""


class _State:
    """A rule's per-process state: counters (cumulative) and the reservoir quota."""

    __slots__ = ("requests", "sampled", "borrowed", "rep_requests", "rep_sampled",
                 "rep_borrowed", "second", "taken", "borrowed_this_second", "quota", "quota_ttl",
                 "rate", "interval", "last_report")

    def __init__(self):
        self.requests = self.sampled = self.borrowed = 0
        self.rep_requests = self.rep_sampled = self.rep_borrowed = 0
        self.second = 0
        self.taken = 0
        self.borrowed_this_second = 0
        self.quota = None  # requests a second granted by the service, with its TTL
        self.quota_ttl = 0.0
        self.rate = None  # FixedRate from the last target (None: the rule's own)
        self.interval = None  # Interval from the last target (None: the default poll)
        self.last_report = 0.0


class Rule:
    """One centralized rule (immutable definition + a mutable ``_State``)."""

    __slots__ = ("name", "priority", "fixed_rate", "reservoir_size", "service", "host",
                 "method", "path", "is_default", "_service", "_host", "_method", "_path",
                 "state")

    def __init__(self, name, priority, fixed_rate, reservoir_size, service="*", host="*",
                 method="*", path="*"):
        self.name = name
        self.priority = priority
        self.fixed_rate = fixed_rate
        self.reservoir_size = reservoir_size
        self.service = service
        self.host = host
        self.method = method
        self.path = path
        self.is_default = name == "Default"
        self._service = _wildcard(service)
        self._host = _wildcard(host)
        self._method = _wildcard(method)
        self._path = _wildcard(path)
        self.state = _State()

    def __repr__(self):
        return (f"Rule({self.name!r}, priority={self.priority}, rate={self.fixed_rate}, "
                f"reservoir={self.reservoir_size})")

    def matches_service(self, service):
        pat = self._service
        return self.is_default or pat is None or pat.match(service or "") is not None

    def matches(self, host, method, path):
        if self.is_default:
            return True
        pat = self._host
        if pat is not None and pat.match(host or "") is None:
            return False
        pat = self._method
        if pat is not None and pat.match(method or "") is None:
            return False
        pat = self._path
        return pat is None or pat.match(path or "") is not None

    def same_definition(self, other):
        return (self.fixed_rate, self.reservoir_size) == (other.fixed_rate,
                                                          other.reservoir_size)

    def decide(self, now, rand):
        """Count the request; take from the quota, else borrow, else sample at the rate."""
        st = self.state
        st.requests += 1
        second = int(now)
        if second != st.second:
            st.second = second
            st.taken = 0
            st.borrowed_this_second = 0
        quota = st.quota
        if quota is not None and now <= st.quota_ttl:
            if st.taken < quota:
                st.taken += 1
                st.sampled += 1
                return True
        elif self.reservoir_size > 0 and st.borrowed_this_second < 1:
            st.borrowed_this_second += 1
            st.borrowed += 1
            st.sampled += 1
            return True
        rate = st.rate
        if rate is None:
            rate = self.fixed_rate
        if rate > 0 and rand() < rate:
            st.sampled += 1
            return True
        return False


# -- parsing the proxy's answers ----------------------------------------------------------------
def _number(value, *, integer=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(value)
    if integer and value != int(value):
        raise ValueError(value)
    return int(value) if integer else float(value)


def _timestamp(value):
    """Epoch seconds (the X-Ray JSON wire form), or ISO 8601 text."""
    if isinstance(value, str):
        from datetime import datetime, timezone

        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    return _number(value)


def parse_rule(record):
    """A ``SamplingRuleRecord`` -> (Rule or None, reason it was skipped)."""
    if not isinstance(record, dict):
        return None, "not an object"
    r = record.get("SamplingRule")
    if not isinstance(r, dict):
        return None, "no SamplingRule"
    name = r.get("RuleName")
    if not isinstance(name, str) or not 1 <= len(name) <= 32:
        return None, f"RuleName {name!r}"
    version = r.get("Version")
    if version != 1 or isinstance(version, bool):
        return None, f"{name}: Version {version!r} (only 1 is supported)"
    arn = r.get("ResourceARN")
    if arn not in (None, "", "*"):
        return None, f"{name}: ResourceARN {arn!r} (only '*' applies to this agent)"
    if r.get("Attributes"):
        return None, f"{name}: Attributes constraints (requests carry no attributes here)"
    stype = r.get("ServiceType", "*")
    if not isinstance(stype, str):
        return None, f"{name}: ServiceType {stype!r}"
    pat = _wildcard(stype)
    if pat is not None and pat.match("") is None:
        return None, f"{name}: ServiceType {stype!r} (platform not detected: only '*' applies)"
    try:
        priority = _number(r.get("Priority"), integer=True)
        rate = _number(r.get("FixedRate"))
        size = _number(r.get("ReservoirSize"), integer=True)
    except ValueError:
        return None, f"{name}: Priority, FixedRate or ReservoirSize missing or not a number"
    if not 0 <= rate <= 1 or size < 0:
        return None, f"{name}: FixedRate {rate} or ReservoirSize {size} out of range"
    fields = []
    for key in ("ServiceName", "Host", "HTTPMethod", "URLPath"):
        v = r.get(key, "*")
        if not isinstance(v, str):
            return None, f"{name}: {key} {v!r}"
        fields.append(v)
    service, host, method, path = fields
    return Rule(name, priority, rate, size, service, host, method, path), None


def parse_rules(records):
    """Valid rules sorted by (Priority, RuleName), and the reasons others were skipped."""
    rules, skipped, seen = [], [], set()
    for record in records:
        rule, why = parse_rule(record)
        if rule is None:
            skipped.append(why)
        elif rule.name not in seen:
            seen.add(rule.name)
            rules.append(rule)
    rules.sort(key=lambda r: (r.priority, r.name))
    return rules, skipped


# -- talking to the proxy ----------------------------------------------------------------------
def http_post(address, path, body, timeout=TIMEOUT):
    """POST a JSON body to the proxy; the decoded JSON object, or ProxyError."""
    import http.client
    import json

    host, port = address
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.__dict__["_xray_autoinst_internal"] = True  # the agent's own: never traced
    try:
        data = json.dumps(body).encode()
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read(MAX_BODY)
        if resp.status != 200:
            raise ProxyError(f"{path} answered HTTP {resp.status}: {raw[:200]!r}")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise ProxyError(f"{path} answered something that is not JSON: {raw[:100]!r}") \
                from None
        if not isinstance(doc, dict):
            raise ProxyError(f"{path} answered JSON that is not an object")
        return doc
    except OSError as exc:
        raise ProxyError(f"{path}: {exc or type(exc).__name__}") from None
    except http.client.HTTPException as exc:
        raise ProxyError(f"{path}: {type(exc).__name__} {exc}") from None
    finally:
        conn.close()


def fetch_rules(post):
    """All pages of GetSamplingRules: a list of SamplingRuleRecord objects."""
    records, token, pages = [], None, 0
    while True:
        doc = post("/GetSamplingRules", {"NextToken": token} if token else {})
        page = doc.get("SamplingRuleRecords")
        if not isinstance(page, list):
            raise ProxyError("GetSamplingRules answered no SamplingRuleRecords list")
        records.extend(page)
        token = doc.get("NextToken")
        pages += 1
        if not token or not isinstance(token, str) or pages >= MAX_PAGES:
            return records


def probe(address, timeout=TIMEOUT):
    """For ``xray-run --check``: (answers, one line describing what the proxy said)."""
    try:
        records = fetch_rules(lambda p, b: http_post(address, p, b, timeout))
    except ProxyError as exc:
        return False, str(exc)
    rules, skipped = parse_rules(records)
    text = f"{len(rules)} rule(s) apply: " + ", ".join(r.name for r in rules[:8])
    if len(rules) > 8:
        text += ", ..."
    if skipped:
        text += f"; {len(skipped)} skipped"
    return True, text


# -- the sampler ---------------------------------------------------------------------------------
class CentralizedSampler:
    """``sample(host, method, path)``; see the module documentation."""

    def __init__(self, address, fallback, service_name=None, *, poll=DEFAULT_POLL,
                 post=None, clock=None, timeout=TIMEOUT):
        """``address``: the proxy's (host, port); ``fallback``: a LocalRules; ``service_name``:
        a callable returning the service name (or a string); ``poll``: seconds between
        SamplingTargets calls (rules every 30 times that). ``post(path, body) -> dict`` and
        ``clock`` replace the HTTP transport and ``time.time`` in tests."""
        self.address = tuple(address)
        self.fallback = fallback
        if service_name is None or isinstance(service_name, str):
            name = service_name or ""
            self._service_name = lambda: name
        else:
            self._service_name = service_name
        self.poll = float(poll)
        self.timeout = timeout
        self._post = post  # None: HTTP to the proxy (no closure over self: see _run)
        self._clock = clock or _time
        # rules: swapped whole by the poller; sample() only reads these
        self.rules: tuple = ()
        self.rules_fetched = 0.0  # when the rules were last fetched (0: never)
        self.last_answer = 0.0  # when the proxy last answered anything
        self._by_service = (None, None, ())  # (rules, service name, the rules for it)
        self._closed = False
        self._init_process()
        _samplers.add(self)

    # -- per process ---------------------------------------------------------------------------
    def _init_process(self):
        self._pid = _getpid()
        self._pid_check_at = 0.0
        self.client_id = os.urandom(12).hex()
        self._rand = random.Random(os.urandom(16)).random
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        self.rule_failures = 0
        self.target_failures = 0
        self.next_rules = 0.0
        self.next_targets = 0.0
        for rule in self.rules:
            rule.state = _State()

    def reset(self):
        """Fresh counters and no quota (and, in a forked child, a new ClientID and poller)."""
        if self._pid != _getpid():
            self._init_process()
        else:
            for rule in self.rules:
                rule.state = _State()
        reset = getattr(self.fallback, "reset", None)
        if reset is not None:
            reset()

    def close(self):
        """Stop this process's poller (it exits at its next wake-up)."""
        self._closed = True
        self._wake.set()

    # -- the request path ----------------------------------------------------------------------
    def sample(self, host=None, method=None, path=None) -> bool:
        # os.getpid() is a system call (0.3-0.5 us here): a forked child is told by the fork
        # hooks (os.register_at_fork, uWSGI's post-fork hook -> reset()); the PID is checked
        # here at most once a second as well, for C forks nothing told us about
        now = self._clock()
        if now >= self._pid_check_at:
            self._pid_check_at = now + 1.0
            if self._pid != _getpid():
                self.reset()
        if self._thread is None and not self._closed:
            self._start()
        rules = self.rules
        if rules:
            if now - self.last_answer < RULES_TTL:
                service = self._service_name()
                cached_rules, cached_service, mine = self._by_service
                if cached_rules is not rules or cached_service != service:
                    mine = tuple(r for r in rules if r.matches_service(service))
                    self._by_service = (rules, service, mine)
                for rule in mine:
                    if rule.matches(host, method, path):
                        return rule.decide(now, self._rand)
        return self.fallback.sample(host, method, path)

    def _start(self):
        with self._start_lock:
            if self._thread is not None or self._closed:
                return
            t = threading.Thread(target=_run, args=(weakref.ref(self), self._wake),
                                 name="xray-autoinst-sampling", daemon=True)
            t._xray_autoinst_internal = True  # outbound HTTP integrations skip its traffic
            self._thread = t
            try:
                t.start()
            except RuntimeError:  # interpreter shutting down
                pass

    # -- the poller ----------------------------------------------------------------------------
    def _call(self, path, body):
        post = self._post
        if post is not None:
            return post(path, body)
        return http_post(self.address, path, body, self.timeout)

    def _backoff(self, failures):
        """Exponential back-off with jitter: poll/10 doubling, at most 6 polls (1 s .. 60 s)."""
        delay = min(self.poll * 6, self.poll / 10 * 2 ** min(failures - 1, 20))
        return delay * (0.5 + self._rand() / 2)

    def _failed(self, what, exc):
        host, port = self.address
        _log.limited(
            LOG_KEY, _log.WARNING,
            "sampling proxy %s:%d: %s failed (%s); the local sampling rule applies until it "
            "answers", host, port, what, exc,
        )

    def poll_rules(self):
        """Fetch the rules; True on success. (Poller thread.)"""
        now = self._clock()
        try:
            records = fetch_rules(self._call)
        except Exception as exc:  # noqa: BLE001 - any failure of the proxy backs off
            self.rule_failures += 1
            self.next_rules = now + self._backoff(self.rule_failures)
            self._failed("GetSamplingRules", exc)
            return False
        rules, skipped = parse_rules(records)
        old = {r.name: r for r in self.rules}
        for rule in rules:
            prev = old.get(rule.name)
            if prev is not None:
                st = prev.state
                if not rule.same_definition(prev):
                    st.rate = None  # a new definition wins over the last target's rate
                rule.state = st
        self.rules = tuple(rules)
        if skipped:
            _log.limited("sampling-skipped", _log.DEBUG, "sampling rules skipped: %s",
                         "; ".join(skipped[:10]))
        if not self.rules_fetched:
            _log.get().info("centralized sampling: %d rule(s) from %s:%d", len(rules),
                            *self.address)
        self.rules_fetched = self.last_answer = self._clock()
        self.rule_failures = 0
        self.next_rules = now + self.poll * RULES_INTERVAL + self._rand() * self.poll / 2
        if not self.next_targets:
            self.next_targets = now + self.poll + self._rand() * self.poll / 10
        return True

    def _due(self, now):
        """Rules with requests since their last report whose reporting interval has come."""
        due = []
        for rule in self.rules:
            st = rule.state
            if st.requests == st.rep_requests:
                continue
            interval = st.interval or self.poll
            if now + 0.05 * self.poll >= st.last_report + interval:
                due.append(rule)
        return due

    def poll_targets(self):
        """Report statistics and load targets; True on success or nothing to report."""
        now = self._clock()
        due = self._due(now)
        if not due:
            self._schedule_targets(now)
            return True
        stamp = int(self._clock())
        ok = True
        for i in range(0, len(due), MAX_DOCS):
            batch = due[i:i + MAX_DOCS]
            snaps, docs = [], []
            for rule in batch:
                st = rule.state
                snap = (st, st.requests, st.sampled, st.borrowed)
                snaps.append(snap)
                docs.append({
                    "RuleName": rule.name,
                    "ClientID": self.client_id,
                    "Timestamp": stamp,
                    "RequestCount": max(0, snap[1] - st.rep_requests),
                    "SampledCount": max(0, snap[2] - st.rep_sampled),
                    "BorrowCount": max(0, snap[3] - st.rep_borrowed),
                })
            try:
                answer = self._call("/SamplingTargets", {"SamplingStatisticsDocuments": docs})
                self._load_targets(answer)
            except Exception as exc:  # noqa: BLE001
                self.target_failures += 1
                self._failed("SamplingTargets", exc)
                ok = False
                break
            for st, requests, sampled, borrowed in snaps:
                st.rep_requests, st.rep_sampled, st.rep_borrowed = requests, sampled, borrowed
                st.last_report = now
        if ok:
            self.target_failures = 0
            self._schedule_targets(now)
        else:
            self.next_targets = now + max(self.poll, self._backoff(self.target_failures))
        return ok

    def _schedule_targets(self, now):
        interval = self.poll
        for rule in self.rules:
            if rule.state.interval:
                interval = min(interval, rule.state.interval)
        self.next_targets = now + interval + self._rand() * interval / 10

    def _load_targets(self, answer):
        docs = answer.get("SamplingTargetDocuments")
        if not isinstance(docs, list):
            raise ProxyError("SamplingTargets answered no SamplingTargetDocuments list")
        by_name = {r.name: r for r in self.rules}
        for doc in docs:
            rule = by_name.get(doc.get("RuleName")) if isinstance(doc, dict) else None
            if rule is None:
                continue
            st = rule.state
            try:
                rate = doc.get("FixedRate")
                if rate is not None:
                    rate = _number(rate)
                    if 0 <= rate <= 1:
                        st.rate = rate
                interval = doc.get("Interval")
                if interval is not None:
                    interval = _number(interval)
                    st.interval = min(max(interval, 0.05), 3600.0) if interval > 0 else None
                quota, ttl = doc.get("ReservoirQuota"), doc.get("ReservoirQuotaTTL")
                if ttl is not None:
                    st.quota_ttl = _timestamp(ttl)
                if quota is not None:
                    st.quota = max(0, _number(quota, integer=True))
            except (ValueError, TypeError, OverflowError):
                _log.limited("sampling-target", _log.DEBUG, "bad sampling target %r", doc)
        self.last_answer = self._clock()
        modified = answer.get("LastRuleModification")
        if modified is not None:
            try:
                if _timestamp(modified) > self.rules_fetched:
                    self.next_rules = 0.0  # the rules changed: fetch them now
            except (ValueError, TypeError, OverflowError):
                pass

    def step(self):
        """One round of the poller: what is due, then the seconds until the next round."""
        now = self._clock()
        if now >= self.next_rules:
            self.poll_rules()
        now = self._clock()
        if self.rules and self.next_targets and now >= self.next_targets:
            self.poll_targets()
        now = self._clock()
        nxt = self.next_rules
        if self.rules and self.next_targets:
            nxt = min(nxt, self.next_targets)
        return max(0.01, nxt - now)


def _run(ref, wake):
    """The poller thread: holds the sampler weakly, so a replaced sampler's thread ends."""
    pid = _getpid()
    while True:
        sampler = ref()
        if sampler is None or sampler._closed or sampler._pid != pid:
            return
        try:
            wait = sampler.step()
        except Exception:  # noqa: BLE001 - the poller must survive anything
            _log.limited("sampling-poller", _log.WARNING, "sampling poller failed",
                         exc_info=True)
            wait = sampler.poll
        del sampler
        wake.wait(wait)
        wake.clear()


_samplers: weakref.WeakSet = weakref.WeakSet()


def _after_fork_in_child():
    for sampler in list(_samplers):
        try:
            sampler.reset()
        except Exception:  # noqa: BLE001
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
