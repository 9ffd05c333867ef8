"""The end-to-end benchmark's plan (bench/e2e.py): which server configurations one run holds.
Nothing is started here; the quick smoke test (test_bench_quick.py) runs this agent's part."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import e2e  # noqa: E402
from venvs import Venv  # noqa: E402

ALL = {n: Venv(n, Path("/venvs") / n)
       for n in ("xray-autoinst", "aws-xray-sdk", "opentelemetry", "ddtrace")}


def _names(plan):
    return [v.name for v in plan]


def test_quick_plan_is_this_agent_alone():
    plan = e2e.plan({"xray-autoinst": ALL["xray-autoinst"]}, "gunicorn")
    assert _names(plan) == ["bare", "xray-run", "xray-run, unsampled"]


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_every_tracer_runs_sampled_and_unsampled_beside_its_own_bare(server):
    plan = e2e.plan(ALL, server)
    by_name = {v.name: v for v in plan}
    tracers = {v.venv for v in plan if v.baseline != v.name}
    # aws-xray-sdk has no ASGI middleware: not under uvicorn, nor its bare baseline
    assert tracers == ({"xray-autoinst", "aws-xray-sdk", "opentelemetry", "ddtrace"}
                       if server == "gunicorn" else {"xray-autoinst", "opentelemetry", "ddtrace"})
    assert {v.venv for v in plan} == tracers
    for venv in tracers:
        traced = [v for v in plan if v.venv == venv and v.baseline != v.name]
        assert len(traced) == 2, traced  # sampling all, sampling none
        for v in traced:
            base = by_name[v.baseline]
            assert base.venv == venv and base.launcher is None
            assert base.wsgi == "e2e_app:app" and base.asgi == "e2e_asgi_app:app"


def test_commands_are_the_launchers_a_user_types():
    plan = {v.name: v for v in e2e.plan(ALL, "gunicorn")}
    otel = plan["opentelemetry-instrument, always_on"]
    cmd = e2e.server_command(ALL["opentelemetry"], "gunicorn", 8000, otel)
    assert cmd[0].endswith("/opentelemetry/bin/opentelemetry-instrument")
    assert cmd[1].endswith("/opentelemetry/bin/gunicorn") and cmd[-1] == "e2e_otel_app:app"
    assert dict(otel.env)["OTEL_TRACES_SAMPLER"] == "always_on"
    dd = plan["ddtrace-run, sample rate 0"]
    cmd = e2e.server_command(ALL["ddtrace"], "uvicorn", 8000, dd)
    assert cmd[0].endswith("/ddtrace/bin/ddtrace-run") and "uvicorn" in cmd[1]
    assert cmd[-1] == "e2e_ddtrace_app:asgi_app"
    sdk = plan["aws-xray-sdk middleware + patch_all(), sampled"]
    assert e2e.server_command(ALL["aws-xray-sdk"], "gunicorn", 8000, sdk)[0].endswith(
        "/aws-xray-sdk/bin/gunicorn")
    assert sdk.to_sink  # its documents reach the UDP sink and are counted
    ours = plan["xray-run, unsampled"]
    assert e2e.server_command(ALL["xray-autoinst"], "gunicorn", 8000, ours)[-1] == "e2e_app:app"
