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

The rules as the proxy serves them, their matching, and the HTTP calls to the proxy are in
``centralized_rules``; this module decides and polls.
"""

from __future__ import annotations

import os
import random
import threading
import time
import weakref

from .. import log as _log
from .centralized_rules import (
    TIMEOUT,
    ProxyError,
    _number,
    _State,
    _timestamp,
    fetch_rules,
    http_post,
    parse_rules,
)

RULES_INTERVAL = 30  # rules are fetched every RULES_INTERVAL * poll seconds (5 minutes)
DEFAULT_POLL = 10.0  # seconds between SamplingTargets calls
RULES_TTL = 3600.0  # rules are dropped when the proxy has not answered for an hour
MAX_DOCS = 25  # SamplingStatisticsDocuments per call (the API's limit)
LOG_KEY = "sampling-proxy"

_getpid = os.getpid
_time = time.time


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
