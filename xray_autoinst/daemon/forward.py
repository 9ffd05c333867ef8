"""Relay documents to AWS X-Ray with ``PutTraceSegments`` (botocore, imported lazily).

Documents wait in a buffer bounded in bytes (the oldest are dropped first, and counted); a
sender thread takes up to 50 at a time, at least once a second. Throttling, 5xx answers and
connection failures are retried with exponential back-off and jitter; other failures drop the
batch. ``UnprocessedTraceSegments`` in an answer are counted and logged.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable

log = logging.getLogger("xray_autoinst.daemon")

BATCH_SIZE = 50
FLUSH_INTERVAL = 1.0
DEFAULT_BUFFER_MB = 16
MAX_ATTEMPTS = 6
BACKOFF_BASE = 0.2
BACKOFF_MAX = 5.0

RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ThrottledException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


class Retryable(Exception):
    """A failure worth trying again (throttling, 5xx, connection trouble)."""


class Fatal(Exception):
    """A failure that another try will not fix (credentials, permissions, bad request)."""


def classify(exc: BaseException) -> Exception:
    """Map a botocore exception to Retryable or Fatal, with a readable message."""
    from botocore import exceptions as bex

    if isinstance(exc, bex.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        message = f"{code or 'error'} (HTTP {status}): {err.get('Message', '')}".strip()
        if code in RETRYABLE_CODES or status == 429 or status >= 500:
            return Retryable(message)
        return Fatal(message)
    if isinstance(exc, (bex.NoCredentialsError, bex.PartialCredentialsError, bex.NoRegionError)):
        return Fatal(str(exc))
    if isinstance(
        exc,
        (
            bex.EndpointConnectionError,
            bex.ConnectionClosedError,
            bex.ReadTimeoutError,
            bex.ConnectTimeoutError,
            bex.HTTPClientError,
        ),
    ):
        return Retryable(str(exc))
    return Fatal(f"{type(exc).__name__}: {exc}")


def make_client(*, region: str | None, endpoint_url: str | None, timeout: float = 10.0,
                retries: int = 1):
    """A botocore ``xray`` client using the standard AWS configuration."""
    import botocore.session
    from botocore.config import Config

    from xray_autoinst import __version__

    session = botocore.session.get_session()
    config = Config(
        retries={"total_max_attempts": retries, "mode": "standard"},
        connect_timeout=timeout,
        read_timeout=timeout,
        user_agent_extra=f"xray-autoinst-daemon/{__version__}",
        max_pool_connections=4,
    )
    return session.create_client(
        "xray", region_name=region or None, endpoint_url=endpoint_url or None, config=config
    )


def botocore_put(client) -> Callable[[list[str]], list[dict]]:
    """A ``put(documents) -> unprocessed`` function raising Retryable or Fatal."""

    def put(documents: list[str]) -> list[dict]:
        try:
            answer = client.put_trace_segments(TraceSegmentDocuments=documents)
        except Exception as exc:  # botocore raises many types; classify them all
            raise classify(exc) from exc
        return list(answer.get("UnprocessedTraceSegments") or [])

    return put


class Forwarder:
    """Buffer documents and send them in batches from one thread."""

    def __init__(
        self,
        put: Callable[[list[str]], list[dict]],
        *,
        max_buffer_bytes: int = DEFAULT_BUFFER_MB * 1024 * 1024,
        batch_size: int = BATCH_SIZE,
        flush_interval: float = FLUSH_INTERVAL,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base: float = BACKOFF_BASE,
        backoff_max: float = BACKOFF_MAX,
    ):
        self._put = put
        self._max_bytes = max_buffer_bytes
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._buffer: collections.deque[str] = collections.deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._last_fatal = ""
        # Counters (read by the summary line; written by one thread each).
        self.submitted = 0
        self.dropped = 0  # buffer full: oldest dropped
        self.sent = 0  # accepted by X-Ray
        self.unprocessed = 0  # in UnprocessedTraceSegments
        self.failed = 0  # given up after retries or a fatal error
        self.retries = 0
        self._unprocessed_logged = 0

    # -- producer side ---------------------------------------------------------------------
    def submit_many(self, documents: list[str]) -> None:
        with self._cond:
            for doc in documents:
                self._buffer.append(doc)
                self._bytes += len(doc)
            self.submitted += len(documents)
            while self._bytes > self._max_bytes and len(self._buffer) > 1:
                self._bytes -= len(self._buffer.popleft())
                self.dropped += 1
            if len(self._buffer) >= self._batch_size:
                self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._buffer)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="xray-forward", daemon=True)
        self._thread.start()

    def stop(self, drain_timeout: float) -> None:
        """Send what is buffered (for at most ``drain_timeout`` seconds), then stop."""
        with self._cond:
            self._stopping = True
            self._deadline = time.monotonic() + drain_timeout
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(drain_timeout + 15)
        with self._cond:
            left = len(self._buffer)
            if left:
                self.failed += left
                self._buffer.clear()
                self._bytes = 0
        if left:
            log.warning("forward: %d documents not sent before the drain timeout", left)

    # -- sender ----------------------------------------------------------------------------
    def _take(self) -> list[str] | None:
        with self._cond:
            deadline = time.monotonic() + self._flush_interval
            while not self._stopping and len(self._buffer) < self._batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if not self._buffer:
                return None if self._stopping else []
            batch = []
            while self._buffer and len(batch) < self._batch_size:
                doc = self._buffer.popleft()
                self._bytes -= len(doc)
                batch.append(doc)
            return batch

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch:
                self._send(batch)
            if self._stopping and self._past_deadline():
                return

    def _wait(self, seconds: float) -> None:
        """Back-off sleep, cut short by the drain deadline."""
        end = time.monotonic() + seconds
        if self._deadline is not None:
            end = min(end, self._deadline)
        with self._cond:
            while True:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)

    def _send(self, batch: list[str]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                unprocessed = self._put(batch)
            except Retryable as exc:
                if attempt >= self._max_attempts or self._past_deadline():
                    self.failed += len(batch)
                    log.warning(
                        "forward: dropped %d documents after %d attempts: %s",
                        len(batch), attempt, exc,
                    )
                    return
                self.retries += 1
                delay = min(self._backoff_max, self._backoff_base * 2 ** (attempt - 1))
                delay *= random.uniform(0.5, 1.0)
                log.debug("forward: attempt %d failed (%s); retrying in %.2fs", attempt, exc, delay)
                self._wait(delay)
                continue
            except Fatal as exc:
                self.failed += len(batch)
                message = str(exc)
                if message != self._last_fatal:
                    log.error("forward: PutTraceSegments failed: %s", message)
                    self._last_fatal = message
                return
            except Exception as exc:  # a bug in put(): never kill the sender thread
                self.failed += len(batch)
                log.error("forward: unexpected error: %r", exc)
                return
            self._last_fatal = ""
            self.sent += len(batch) - len(unprocessed)
            if unprocessed:
                self.unprocessed += len(unprocessed)
                for item in unprocessed[: max(0, 5 - self._unprocessed_logged)]:
                    log.warning(
                        "forward: X-Ray did not accept segment %s: %s %s",
                        item.get("Id"), item.get("ErrorCode"), item.get("Message"),
                    )
                self._unprocessed_logged += len(unprocessed)
            return

    def reset_log_budget(self) -> None:
        """Allow a few more per-segment warnings (called with each summary line)."""
        self._unprocessed_logged = 0
