"""The relay's buffer, batching, retries and error classification (a fake put function)."""

import logging
import threading
import time

import pytest
from botocore import exceptions as bex

from xray_autoinst.daemon import forward
from xray_autoinst.daemon.forward import Fatal, Forwarder, Retryable, classify


class FakePut:
    def __init__(self, script=()):
        self.script = list(script)  # exceptions or unprocessed lists, used in turn
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def __call__(self, docs):
        with self.lock:
            self.calls.append(list(docs))
            step = self.script.pop(0) if self.script else []
        if isinstance(step, Exception):
            raise step
        return step

    @property
    def delivered(self):
        return [d for call in self.calls for d in call]


def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_batches_of_at_most_50_and_stop_drains():
    put = FakePut()
    f = Forwarder(put, flush_interval=0.05)
    f.start()
    docs = [f"doc{i}" for i in range(173)]
    f.submit_many(docs)
    f.stop(drain_timeout=5)
    assert put.delivered == docs
    assert all(len(c) <= 50 for c in put.calls)
    assert f.sent == 173 and f.failed == 0 and f.pending() == 0


def test_small_batches_are_flushed_within_the_interval():
    put = FakePut()
    f = Forwarder(put, flush_interval=0.2)
    f.start()
    start = time.monotonic()
    f.submit_many(["one", "two"])
    wait_for(lambda: put.calls)
    assert time.monotonic() - start < 1.0
    assert put.calls == [["one", "two"]]
    f.stop(1)


def test_throttling_is_retried_with_backoff():
    put = FakePut([Retryable("ThrottlingException"), Retryable("HTTP 503"), []])
    f = Forwarder(put, flush_interval=0.01, backoff_base=0.05)
    f.start()
    f.submit_many(["a", "b"])
    wait_for(lambda: f.sent == 2)
    assert put.calls == [["a", "b"]] * 3
    assert f.retries == 2 and f.failed == 0
    f.stop(1)


def test_gives_up_after_max_attempts():
    put = FakePut([Retryable("throttled")] * 10)
    f = Forwarder(put, flush_interval=0.01, backoff_base=0.001, max_attempts=3)
    f.start()
    f.submit_many(["a"])
    wait_for(lambda: f.failed == 1)
    assert len(put.calls) == 3 and f.sent == 0
    f.stop(1)


def test_fatal_errors_drop_the_batch_and_log_once(caplog):
    put = FakePut([Fatal("AccessDeniedException (HTTP 403): no")] * 3)
    f = Forwarder(put, flush_interval=0.01, batch_size=1)
    f.start()
    with caplog.at_level(logging.ERROR, logger="xray_autoinst.daemon"):
        f.submit_many(["a", "b", "c"])
        wait_for(lambda: f.failed == 3)
    assert len(put.calls) == 3
    assert sum("AccessDeniedException" in r.message for r in caplog.records) == 1
    f.stop(1)


def test_unprocessed_segments_are_counted_and_reported(caplog, monkeypatch):
    # (earlier tests may have set up the agent's or the daemon's loggers, which do not
    # propagate to the root logger: caplog's handler is put on the daemon's logger itself)
    daemon_log = logging.getLogger("xray_autoinst.daemon")
    monkeypatch.setattr(daemon_log, "handlers", [caplog.handler])
    monkeypatch.setattr(daemon_log, "propagate", False)
    put = FakePut([[{"Id": "abc", "ErrorCode": "InvalidSegment", "Message": "bad name"}]])
    f = Forwarder(put, flush_interval=0.01)
    f.start()
    with caplog.at_level(logging.WARNING, logger="xray_autoinst.daemon"):
        f.submit_many(["a", "b"])
        wait_for(lambda: f.sent + f.unprocessed == 2)
    assert f.sent == 1 and f.unprocessed == 1
    assert any("abc" in r.message and "InvalidSegment" in r.message for r in caplog.records)
    f.stop(1)


def test_full_buffer_drops_the_oldest():
    gate = threading.Event()

    def slow_put(docs):
        gate.wait(5)
        return []

    f = Forwarder(slow_put, max_buffer_bytes=10, batch_size=50, flush_interval=10)
    f.submit_many([f"d{i}" for i in range(10)])  # 2 bytes each: room for five
    assert f.dropped == 5 and f.pending() == 5
    f.submit_many(["d10"])
    assert f.pending() == 4  # "d10" is 3 bytes: two more old ones go
    assert f.dropped == 7


def test_stop_counts_what_could_not_be_sent():
    put = FakePut([Retryable("down")] * 100)
    f = Forwarder(put, flush_interval=0.01, backoff_base=0.5, max_attempts=100)
    f.start()
    f.submit_many([f"d{i}" for i in range(120)])
    wait_for(lambda: put.calls)
    f.stop(drain_timeout=0.3)
    assert f.sent == 0 and f.failed == 120 and f.pending() == 0


def client_error(code, status):
    return bex.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutTraceSegments",
    )


@pytest.mark.parametrize(
    "exc, kind",
    [
        (client_error("ThrottlingException", 400), Retryable),
        (client_error("ThrottledException", 429), Retryable),
        (client_error("Whatever", 429), Retryable),
        (client_error("InternalFailure", 500), Retryable),
        (client_error("", 503), Retryable),
        (client_error("AccessDeniedException", 403), Fatal),
        (client_error("InvalidRequestException", 400), Fatal),
        (bex.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), Retryable),
        (bex.ReadTimeoutError(endpoint_url="http://x"), Retryable),
        (bex.NoCredentialsError(), Fatal),
        (ValueError("bug"), Fatal),
    ],
)
def test_classify(exc, kind):
    assert isinstance(classify(exc), kind)


def test_botocore_put_maps_errors():
    class Client:
        def __init__(self, outcome):
            self.outcome = outcome

        def put_trace_segments(self, TraceSegmentDocuments):  # noqa: N803 - botocore's name
            if isinstance(self.outcome, Exception):
                raise self.outcome
            return self.outcome

    ok = forward.botocore_put(Client({"UnprocessedTraceSegments": [{"Id": "x"}]}))
    assert ok(["d"]) == [{"Id": "x"}]
    assert forward.botocore_put(Client({}))(["d"]) == []
    with pytest.raises(Retryable):
        forward.botocore_put(Client(client_error("ThrottlingException", 400)))(["d"])
