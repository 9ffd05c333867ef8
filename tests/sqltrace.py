"""Helpers for the SQL integration tests (tests/test_db_*.py)."""

from __future__ import annotations

import contextlib

from xray_testing import validate

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test password=hunter2-not-used"
PASSWORD = "hunter2-not-used"


def require_postgres():
    from conftest import require_service

    require_service("PostgreSQL", "127.0.0.1", 5432,
                    "start it with scripts/services.sh (apt-get install postgresql)")


def walk(doc, parent=None):
    yield doc, parent
    for sub in doc.get("subsegments", ()):
        yield from walk(sub, doc)


def sql_subsegments(emitter):
    """Every subsegment with an ``sql`` field in the documents sent, in time order; each
    document validated against the schema."""
    found = []
    for doc in emitter.documents:
        validate(doc)
        for entity, _parent in walk(doc):
            if "sql" in entity and (entity is not doc or entity.get("type") == "subsegment"):
                found.append(entity)
    return sorted(found, key=lambda s: s["start_time"])


@contextlib.contextmanager
def request_segment(tracer, name="test-request"):
    """A sampled segment open around the block, as a web request would have."""
    seg, token = tracer.begin_segment(name)
    try:
        yield seg
    finally:
        tracer.end_segment(seg, token)


def assert_no_secret(emitter, *secrets):
    for raw in emitter.raw:
        for secret in secrets:
            assert secret not in raw, (secret, raw)
