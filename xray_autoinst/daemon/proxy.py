"""The sampling proxy on the daemon's TCP port, and its status endpoint.

Like the AWS daemon it serves ``POST /GetSamplingRules`` and ``POST /SamplingTargets``; unlike
it, nothing else is proxied. When forwarding, the request is replayed through botocore (which
signs it) and X-Ray's answer is returned; otherwise the answer comes from local rules
(``XRAY_SAMPLING_RULES``, else X-Ray's default rule: 1 request a second, then 5%).
``GET /xray-autoinst/status`` tells ``xray-run --local`` that this daemon is ours.
"""

from __future__ import annotations

import datetime
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from xray_autoinst.daemon.local import STATUS_PATH

log = logging.getLogger("xray_autoinst.daemon")

MAX_BODY = 1 << 20
TARGET_INTERVAL = 10  # seconds between SamplingTargets calls the SDKs are told to make
DEFAULT_RULE = {"name": "Default", "fixed_target": 1, "rate": 0.05}


class LocalSampling:
    """Answers the two sampling operations from local rules, in the X-Ray API's shapes."""

    def __init__(self, rules=None, *, clock: Callable[[], float] = time.time):
        """``rules``: a ``core.sampling.LocalRules`` (None: the X-Ray default rule)."""
        self._clock = clock
        self.loaded_at = clock()
        self._rules: list[dict] = []
        if rules is not None:
            for i, rule in enumerate(rules.rules):
                self._rules.append(
                    {
                        "name": f"local-{i + 1}",
                        "description": getattr(rule, "description", ""),
                        "priority": i + 1,
                        "fixed_target": rule.fixed_target,
                        "rate": rule.rate,
                        "host": rule.host or "*",
                        "method": rule.method or "*",
                        "path": rule.path or "*",
                    }
                )
            default = rules.default
            self._default = {
                "name": "Default", "fixed_target": default.fixed_target, "rate": default.rate,
            }
        else:
            self._default = dict(DEFAULT_RULE)

    def _record(self, rule: dict, priority: int, host: str, method: str, path: str) -> dict:
        name = rule["name"]
        return {
            "SamplingRule": {
                "RuleName": name,
                "RuleARN": f"arn:aws:xray:local:000000000000:sampling-rule/{name}",
                "ResourceARN": "*",
                "Priority": priority,
                "FixedRate": float(rule["rate"]),
                "ReservoirSize": int(rule["fixed_target"]),
                "ServiceName": "*",
                "ServiceType": "*",
                "Host": host,
                "HTTPMethod": method,
                "URLPath": path,
                "Version": 1,
                "Attributes": {},
            },
            "CreatedAt": self.loaded_at,
            "ModifiedAt": self.loaded_at,
        }

    def get_sampling_rules(self, request: dict) -> dict:
        records = [
            self._record(r, r["priority"], r["host"], r["method"], r["path"]) for r in self._rules
        ]
        records.append(self._record(self._default, 10000, "*", "*", "*"))
        return {"SamplingRuleRecords": records}

    def get_sampling_targets(self, request: dict) -> dict:
        by_name = {r["name"]: r for r in self._rules}
        by_name["Default"] = self._default
        now = self._clock()
        targets, unprocessed, seen = [], [], set()
        docs = request.get("SamplingStatisticsDocuments")
        if not isinstance(docs, list):
            docs = []
        for doc in docs:
            name = doc.get("RuleName") if isinstance(doc, dict) else None
            rule = by_name.get(name) if isinstance(name, str) else None
            if rule is None:
                unprocessed.append(
                    {"RuleName": str(name), "ErrorCode": "400", "Message": "unknown sampling rule"}
                )
                continue
            if name in seen:
                continue
            seen.add(name)
            targets.append(
                {
                    "RuleName": name,
                    "FixedRate": float(rule["rate"]),
                    # Each client gets the whole reservoir: a local daemon serves few processes.
                    "ReservoirQuota": int(rule["fixed_target"]),
                    "ReservoirQuotaTTL": now + 3 * TARGET_INTERVAL,
                    "Interval": TARGET_INTERVAL,
                }
            )
        return {
            "SamplingTargetDocuments": targets,
            "LastRuleModification": self.loaded_at,
            "UnprocessedStatistics": unprocessed,
        }


def _wire(value):
    """botocore's parsed answer back to the X-Ray wire form (timestamps as epoch seconds)."""
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


class ProxyError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ForwardSampling:
    """Replays the two operations through a botocore ``xray`` client (signed)."""

    _PARAMS = {
        "get_sampling_rules": ("NextToken",),
        "get_sampling_targets": ("SamplingStatisticsDocuments", "SamplingBoostStatisticsDocuments"),
    }

    def __init__(self, client):
        self._client = client

    def _call(self, operation: str, request: dict) -> dict:
        from botocore import exceptions as bex

        params = {k: request[k] for k in self._PARAMS[operation] if k in request}
        try:
            answer = getattr(self._client, operation)(**params)
        except bex.ClientError as exc:
            err = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 502
            message = " ".join(str(err.get("Message", "")).split())[:300]
            raise ProxyError(status, str(err.get("Code") or "Error"), message)
        except bex.ParamValidationError as exc:
            raise ProxyError(400, "InvalidRequestException", str(exc))
        except bex.BotoCoreError as exc:
            raise ProxyError(502, "ServiceUnavailable", f"cannot reach X-Ray: {exc}")
        return _wire(answer)

    def get_sampling_rules(self, request: dict) -> dict:
        return self._call("get_sampling_rules", request)

    def get_sampling_targets(self, request: dict) -> dict:
        return self._call("get_sampling_targets", request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "xray-autoinst-daemon"
    server: _ProxyServer

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        log.debug("tcp %s: %s", self.address_string(), format % args)

    def _answer(self, status: int, payload: dict, error_type: str | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if error_type:
            self.send_header("x-amzn-ErrorType", error_type)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        self._answer(status, {"__type": code, "message": message}, code)

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path.split("?", 1)[0] == STATUS_PATH:
            self._answer(200, self.server.status())
            return
        self._not_proxied()

    def _not_proxied(self) -> None:
        # Drain a body so keep-alive stays in step.
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= MAX_BODY:
            self.rfile.read(int(length))
        self._error(
            404,
            "UnknownOperationException",
            "this daemon proxies only POST /GetSamplingRules and POST /SamplingTargets",
        )

    def do_POST(self):  # noqa: N802
        path = self.path.split("?", 1)[0]
        operations = {
            "/GetSamplingRules": "get_sampling_rules",
            "/SamplingTargets": "get_sampling_targets",
        }
        if path not in operations:
            self._not_proxied()
            return
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit():
            self.close_connection = True
            self._error(411, "LengthRequired", "Content-Length is required")
            return
        if int(length) > MAX_BODY:
            self.close_connection = True
            self._error(413, "RequestEntityTooLarge", "request body too large")
            return
        raw = self.rfile.read(int(length)) if int(length) else b""
        try:
            request = json.loads(raw) if raw.strip() else {}
        except ValueError:
            request = None
        if not isinstance(request, dict):
            self._error(400, "SerializationException", "the body is not a JSON object")
            return
        self.server.requests += 1
        try:
            answer = getattr(self.server.sampling, operations[path])(request)
        except ProxyError as exc:
            self.server.failures += 1
            log.warning("sampling proxy: %s failed: %s %s", path[1:], exc.code, exc.message)
            self._error(exc.status, exc.code, exc.message)
            return
        except Exception as exc:  # never let one request take the server down
            self.server.failures += 1
            log.exception("sampling proxy: %s failed", path[1:])
            self._error(500, "InternalFailure", f"{type(exc).__name__}: {exc}")
            return
        self._answer(200, answer)


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sock: socket.socket, sampling, status: Callable[[], dict]):
        # The socket is bound (and listening) already, so bind errors surface before --detach.
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.address_family = sock.family
        self.server_address = sock.getsockname()
        self.sampling = sampling
        self.status = status
        self.requests = 0
        self.failures = 0


class SamplingProxy:
    """Serves HTTP on an already listening TCP socket from a background thread."""

    def __init__(self, sock: socket.socket, sampling, status: Callable[[], dict]):
        self.server = _ProxyServer(sock, sampling, status)
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
            name="xray-sampling-proxy", daemon=True,
        )

    @property
    def requests(self) -> int:
        return self.server.requests

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
