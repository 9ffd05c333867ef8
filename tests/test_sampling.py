import json

import pytest

from xray_autoinst.core import sampling


def rules(doc):
    return sampling.parse_rules(json.dumps(doc))


def test_default_rule_is_one_per_second_then_five_percent():
    r = sampling.default_rules()
    assert r.default.fixed_target == 1 and r.default.rate == 0.05
    r.default.rate = 0.0
    assert r.sample() is True  # the reservoir's one
    assert not any(r.sample() for _ in range(100))


def test_rate_only():
    r = rules({"version": 2, "default": {"fixed_target": 0, "rate": 0.5}})
    hits = sum(r.sample() for _ in range(20000))
    assert 9000 < hits < 11000


def test_reservoir_refills_each_second():
    rule = sampling.Rule(3, 0.0)
    assert [rule.sample(now=100.0) for _ in range(5)] == [True, True, True, False, False]
    assert [rule.sample(now=101.2) for _ in range(4)] == [True, True, True, False]


def test_version2_first_match_wins_with_wildcards():
    r = rules({
        "version": 2,
        "rules": [
            {"description": "health", "host": "*", "http_method": "GET", "url_path": "/health*",
             "fixed_target": 0, "rate": 0.0},
            {"description": "api", "host": "api.example.com", "http_method": "*",
             "url_path": "/v?/*", "fixed_target": 0, "rate": 1.0},
        ],
        "default": {"fixed_target": 0, "rate": 0.0},
    })
    assert r.sample("x", "GET", "/healthz") is False
    assert r.sample("API.example.com", "POST", "/v1/orders") is True
    assert r.sample("api.example.com", "POST", "/v10/orders") is False  # ? is one character
    assert r.sample("other", "GET", "/v1/x") is False


def test_version1_uses_service_name():
    r = rules({
        "version": 1,
        "rules": [{"service_name": "orders", "http_method": "*", "url_path": "*",
                   "fixed_target": 0, "rate": 1.0}],
        "default": {"fixed_target": 0, "rate": 0.0},
    })
    assert r.sample("orders", "GET", "/") is True
    assert r.sample("billing", "GET", "/") is False


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("{nope", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"version": 3, "default": {"fixed_target": 1, "rate": 0.1}}', "version=3"),
        ('{"version": 2}', "'default'"),
        ('{"version": 2, "default": {"fixed_target": 1, "rate": 1.5}}', "rate=1.5"),
        ('{"version": 2, "default": {"fixed_target": 1, "rate": -0.1}}', "rate=-0.1"),
        ('{"version": 2, "default": {"fixed_target": -1, "rate": 0.1}}', "fixed_target=-1"),
        ('{"version": 2, "default": {"fixed_target": 1.5, "rate": 0.1}}', "fixed_target=1.5"),
        ('{"version": 2, "default": {"fixed_target": 1, "rate": 0.1, "host": "x"}}', "'host'"),
        ('{"version": 2, "default": {"fixed_target": 1, "rate": 0.1, "url_path": "/"}}',
         "'url_path'"),
        ('{"version": 2, "default": {"fixed_target": 1, "rate": "x"}}', "must be a number"),
        ('{"version": 2, "rules": [{"service_name": "a", "fixed_target": 1, "rate": 0.1}],'
         ' "default": {"fixed_target": 1, "rate": 0.1}}', "'service_name' is not a version 2"),
        ('{"version": 2, "rules": [{"host": "a", "rate": 0.1}],'
         ' "default": {"fixed_target": 1, "rate": 0.1}}', "rules[0] has no 'fixed_target'"),
    ],
)
def test_strict_validation(text, fragment):
    with pytest.raises(ValueError) as info:
        sampling.parse_rules(text)
    assert fragment in str(info.value)


def test_load_rules_missing_file():
    with pytest.raises(ValueError, match="cannot read rules file"):
        sampling.load_rules("/nonexistent/rules.json")


def test_default_rule_alone_counts_the_segments_own_clock_read(tracer, monkeypatch):
    """X-Ray's default rule alone is asked by the tracer with the segment's start time: the
    reservoir's second is the request's, and no second clock read is made."""
    from xray_testing import install_tracer

    from xray_autoinst.core import tracer as tracer_mod

    t, emitter = install_tracer(
        {"XRAY_SAMPLING_RULES": '{"version": 2, "default": {"fixed_target": 1, "rate": 0}}'})
    reads = []
    monkeypatch.setattr(sampling, "_time", lambda: reads.append(1) or 5000.0)
    monkeypatch.setattr(tracer_mod, "_time", lambda: 7000.25)
    decisions = []
    for _ in range(3):
        seg, token = t.begin_segment("svc")
        decisions.append(seg.sampled)
        t.end_segment(seg, token)
    assert decisions == [True, False, False] and reads == []
    assert t.sampler.default._second == 7000.0
    assert emitter.documents[0]["start_time"] == 7000.25
