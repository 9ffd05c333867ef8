import os
import socket
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests"))

from xray_testing import FakeDaemon, skip_or_fail  # noqa: E402

CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def daemon():
    d = FakeDaemon()
    yield d
    d.close()


def require_service(name: str, host: str, port: int, install_hint: str):
    """Skip (or under CI=true, fail) when a service the test needs is not reachable."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        skip_or_fail(f"{name} is not reachable on {host}:{port} ({exc}); {install_hint}")


@pytest.fixture
def tracer():
    """The process tracer configured for 100% sampling with an in-process emitter."""
    from xray_testing import install_tracer

    from xray_autoinst.core.tracer import current_entity

    t, emitter = install_tracer()
    token = current_entity.set(None)
    yield t, emitter
    current_entity.reset(token)
