"""Centralized sampling rules: the ``SamplingRuleRecord`` objects of the daemon's proxy made
into ``Rule`` objects (definition, matching, the per-process counters and quota that
``CentralizedSampler`` in ``centralized`` uses to decide), and the HTTP calls to the proxy
(``http_post``, ``fetch_rules``, ``probe`` for ``xray-run --check``). Standard library only.

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

from .sampling import _wildcard

TIMEOUT = 2.0  # socket timeout for the proxy
MAX_BODY = 4 << 20  # largest answer read from the proxy
MAX_PAGES = 100  # GetSamplingRules pages followed


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
