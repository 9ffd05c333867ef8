"""What stands in for the SDK's sampler and emitter on a bridged recorder: the agent decides
sampling and sends every document (no UDP socket of the SDK's, no sampling poller thread)."""

from __future__ import annotations

import contextvars

from ... import log as _log
from ._shared import Tolerant, fail, get_current, tracer

# the decision the bridged sampler just made for a segment about to begin (SDK middlewares ask
# the sampler, then pass its answer to begin_segment): used once, never decided twice
_decided: contextvars.ContextVar = contextvars.ContextVar("xray_autoinst_sdk_decided",
                                                          default=None)


def take_decision():
    """The sampler's decision for the segment about to begin (True/False), or None; consumed."""
    pending = _decided.get()
    if pending is not None:
        _decided.set(None)
    return pending


class BridgeSampler(Tolerant):
    """The recorder's sampler while bridged: the agent decides, once per segment."""

    _what = "sampler"

    def should_trace(self, sampling_req=None):
        try:
            cur = get_current()
            if cur is not None:  # inside the agent's request: its decision stands
                return bool(cur.sampled)
            req = sampling_req if isinstance(sampling_req, dict) else {}
            decision = bool(tracer().should_sample(
                req.get("host"), req.get("method"), req.get("path")))
            _decided.set(decision)
            return decision
        except Exception:  # noqa: BLE001
            fail("sampler")
            return False

    def load_local_rules(self, rules):
        _log.once("sdk-rules", _log.INFO,
                  "aws-xray-sdk sampling rules are not used under xray-autoinst: sampling is "
                  "decided by the agent (XRAY_SAMPLING_RULES, or centralized rules)")

    def load_settings(self, /, *args, **kwargs):
        pass

    def start(self):
        pass


class BridgeEmitter(Tolerant):
    """The recorder's emitter while bridged: the agent's emitter sends every document."""

    _what = "emitter"

    def send_entity(self, entity):
        _log.once("sdk-send", _log.DEBUG,
                  "aws-xray-sdk emitter bypassed: documents go out through xray-autoinst")

    def set_daemon_address(self, address):
        pass


SAMPLER = BridgeSampler()
EMITTER = BridgeEmitter()
