"""The recorder: begins and ends segments and subsegments, keeps the current entity in a
``contextvars.ContextVar`` and hands finished segments to the emitter.

Integrations use four calls::

    sub = tracer.begin_subsegment(name, namespace)   # None when nothing is to be recorded
    ...                                               # fill sub.http / sub.sql / sub.aws
    tracer.end_subsegment(sub)
    tracer.outgoing_header(sub)                       # X-Amzn-Trace-Id for a downstream call
"""

from __future__ import annotations

import atexit
import contextvars
import os
import sys
import threading
import time

from .. import config as _config
from .. import log as _log
from . import encoder, header, ids
from .entities import FacadeSegment, Segment, Subsegment, UnsampledSegment, unsampled_segment
from .sampling import LocalRules, default_rules

_process_lock = threading.Lock()
current_entity: contextvars.ContextVar = contextvars.ContextVar(
    "xray_autoinst_entity", default=None
)
_get = current_entity.get
_set = current_entity.set
_reset = current_entity.reset
_time = time.time
# the lock every segment shares (a class attribute of Segment): read once here rather than
# through each segment
_lock = Segment.lock
# segment (sampled, unsampled or facade) -> a function called with it once, as it ends: the
# agent's own bookkeeping (contrib._work: a received message taken while a request was current
# is let go when that request ends). Empty unless such a message was taken, so a request pays
# one truth test. Never rebound: the web middlewares hold it for requests that end without
# end_segment (unsampled ones).
ending: dict = {}


def run_ending(seg) -> None:
    """Run what waits for ``seg`` to end, if anything (see ``ending``)."""
    hook = ending.pop(seg, None)
    if hook is not None:
        hook(seg)


class Tracer:
    def __init__(self, cfg: _config.Config | None = None, emitter=None):
        self.configure(cfg or _config.Config(), emitter)

    def configure(self, cfg: _config.Config, emitter=None) -> None:
        from .emitter import Emitter

        self.config = cfg
        self.enabled = cfg.enabled
        self.emitter = emitter if emitter is not None else Emitter(cfg.udp_address)
        sampler = cfg.sampling_rules if cfg.sampling_rules is not None else default_rules()
        if cfg.sampling_mode == "centralized":  # the local rules are the fallback
            from .centralized import CentralizedSampler

            sampler = CentralizedSampler(
                cfg.tcp_address, sampler, lambda: self.service_name, poll=cfg.sampling_poll
            )
        self.sampler = sampler
        self.trust_header = cfg.trust_trace_header
        self.use_xray = "xray" in cfg.propagators  # X-Amzn-Trace-Id read and sent
        self.use_w3c = "tracecontext" in cfg.propagators  # traceparent/tracestate too
        self.context_missing = cfg.context_missing
        self._service_name = cfg.service_name
        self.name_hint = None
        self.open_segments: dict = {}
        self.process_segment = None
        self.call_segments: set = set()
        self._pid = os.getpid()

    # -- names ---------------------------------------------------------------------------------
    @property
    def service_name(self) -> str:
        name = self._service_name
        if name is None:
            name = self._service_name = _program_name(self.name_hint)
        return name

    def set_name_hint(self, hint: str | None) -> None:
        """Servers call this with what the user started (the application's project) when
        they load it. The first hint wins, and a name already used is never changed: every
        document of a run carries the same service name."""
        if hint and self._service_name is None and self.name_hint is None:
            self.name_hint = hint

    # -- sampling ------------------------------------------------------------------------------
    @property
    def sampler(self):
        """What decides: ``sample(host, method, path) -> bool`` (LocalRules, or the
        CentralizedSampler); replaceable (tests, the aws-xray-sdk bridge's tests)."""
        return self._sampler

    @sampler.setter
    def sampler(self, sampler):
        self._sampler = sampler
        # local rules with no rule but the default (X-Ray's own default, the usual case):
        # begin_segment asks that rule itself, with its own clock read (the two calls down
        # through LocalRules.sample and the rule's second clock read were ~1 100 instructions,
        # a twentieth of an unsampled request), and the web middlewares need not read the
        # request's host, method and path for it (``reads_request`` False)
        self._rule = sampler.default if type(sampler) is LocalRules and not sampler.rules \
            else None
        self.reads_request = self._rule is None

    def should_sample(self, host=None, method=None, path=None) -> bool:
        try:
            return self._sampler.sample(host, method, path)
        except Exception:  # noqa: BLE001 - a broken sampler must not break requests
            return _sampler_failed()

    # -- segments ------------------------------------------------------------------------------
    def begin_segment(self, name=None, hdr=None, host=None, method=None, path=None,
                      sampled=None, unsampled=UnsampledSegment):
        """Open a segment for an incoming request and make it current.

        ``hdr`` is a parsed TraceHeader or None. ``sampled`` (True/False) is a decision already
        made for this segment (the aws-xray-sdk bridge hands over one its middleware obtained
        from the agent's sampler): it wins over the header and the sampler. ``unsampled``: the
        class of an unsampled request's entity (a subclass of UnsampledSegment: the WSGI
        middleware's also answers ``start_response``). Returns (entity, token)."""
        now = _time()  # one clock read for the trace id, the start and the reservoir
        if sampled is not None:
            sampled = bool(sampled)
        if hdr is not None:
            trace_id = hdr.root
            parent_id = hdr.parent
            lineage = hdr.lineage
            if sampled is None and self.trust_header:
                decision = hdr.sampled
                if decision == "1":
                    sampled = True
                elif decision == "0":
                    sampled = False
        else:
            trace_id = ids.trace_id(now)
            parent_id = None
            lineage = None
        if sampled is None:
            # the sampler called here rather than through should_sample, and the default rule
            # alone called directly (see the ``sampler`` setter): the Python calls saved are
            # ~500 instructions each, a twentieth of the unsampled request each
            rule = self._rule
            try:
                sampled = rule.sample(now) if rule is not None else \
                    self._sampler.sample(host, method, path)
            except Exception:  # noqa: BLE001 - a broken sampler must not break requests
                sampled = _sampler_failed()
        if sampled:
            # the name once made read without the property's call
            seg = Segment(name or self._service_name or self.service_name, trace_id,
                          parent_id, now)
            if lineage:
                seg.lineage = lineage
            self.open_segments[seg.id] = seg
        else:
            seg = unsampled()  # no __init__ (see UnsampledSegment)
            seg.trace_id = trace_id
            if lineage:
                seg.lineage = lineage
        token = _set(seg)
        return seg, token

    def end_segment(self, seg, token=None, end_time=None) -> None:
        if token is not None:
            try:
                _reset(token)
            except ValueError:  # ended in another context
                _set(None)
        if ending:
            run_ending(seg)
        if not seg.sampled:
            return
        seg.end_time = _time() if end_time is None else end_time
        self.open_segments.pop(seg.id, None)
        # _emit inline (one Python call less per request)
        with _lock:
            seg.emitted = True
        self.emitter.submit(seg)

    def begin_facade(self, hdr, name=None):
        """Make the segment someone else records (Lambda's function segment) current, without
        ever emitting it: ``hdr`` (a parsed TraceHeader) gives its trace id (Root) and id
        (Parent). Subsegments begun under it are sent as standalone documents as they end.
        Only ``Sampled=1`` with a Parent records anything: ``Sampled=0``, ``?`` or none (the
        recorder of the segment decided, or did not say) gives an unsampled context, which
        propagates ``Sampled=0`` downstream. Returns (entity or None, token); pass both to
        ``end_facade``."""
        if hdr is None:
            return None, None
        if hdr.sampled == "1" and hdr.parent:
            seg = FacadeSegment(name or self.service_name, hdr.root, hdr.parent)
            seg.lineage = hdr.lineage
        else:
            seg = unsampled_segment(hdr.root, hdr.lineage)
        return seg, _set(seg)

    def end_facade(self, seg, token) -> None:
        """Leave the facade's context; nothing is emitted for the facade itself."""
        if token is not None:
            try:
                _reset(token)
            except ValueError:  # ended in another context
                _set(None)
        if ending:
            run_ending(seg)

    def _emit(self, seg) -> None:
        with _lock:
            seg.emitted = True
        self.emitter.submit(seg)

    # -- subsegments ---------------------------------------------------------------------------
    def begin_subsegment(self, name, namespace=None):
        parent = _get()
        if parent is None:
            parent = self._context_missing(name)
            if parent is None:
                return None
        elif not parent.sampled:
            return None
        sub = Subsegment(name, parent, namespace)
        _set(sub)
        return sub

    def end_subsegment(self, sub, end_time=None) -> None:
        sub.end_time = end_time = _time() if end_time is None else end_time
        parent = sub.parent
        calls = self.call_segments
        own_call = parent in calls if calls else False
        if _get() is sub:
            _set(None if own_call else parent)
        seg = sub.segment
        # one locked block: attach to an unsent parent, or mark the subsegment sent on its own
        # (its parent was sent already, or it is the process segment's direct work, streamed as
        # it finishes and never attached)
        with _lock:
            if parent.emitted or (parent is seg and seg is self.process_segment):
                sub.emitted = True
                attached = False
            else:
                subs = parent.subsegments
                if subs is None:
                    parent.subsegments = [sub]
                else:
                    subs.append(sub)
                attached = True
        if not attached:
            self.emitter.submit(sub)
        elif own_call:
            calls.discard(seg)
            self.end_segment(seg, end_time=end_time)

    def current(self):
        return _get()

    def outgoing_header(self, sub=None):
        """The X-Amzn-Trace-Id value for a downstream call made by ``sub`` (or the current
        entity when ``sub`` is None, e.g. an unsampled request). None outside any trace."""
        entity = sub if sub is not None else _get()
        if entity is None or not self.use_xray:
            return None
        seg = entity.segment
        return header.format(seg.trace_id, entity.id, entity.sampled, seg.lineage)

    def w3c_headers(self, entity):
        """W3C ``traceparent`` (and the incoming ``tracestate``, passed on) for a downstream call
        made by ``entity``: [(name, value)], empty unless the tracecontext propagator is on."""
        if not self.use_w3c or entity is None:
            return ()
        seg = entity.segment
        value = header.format_traceparent(seg.trace_id, entity.id, entity.sampled)
        if value is None:
            return ()
        if seg.tracestate:
            return (("traceparent", value), ("tracestate", seg.tracestate))
        return (("traceparent", value),)

    # -- outside a request ---------------------------------------------------------------------
    def _context_missing(self, name):
        mode = self.context_missing
        if mode == "ignore":
            return None
        if mode == "log":
            # WARNING: the level a user who chose "log" sees by default (XRAY_LOG_LEVEL=warning)
            _log.limited(
                "context-missing", _log.WARNING,
                "a traced call (%s) was made outside any request: not recorded "
                "(XRAY_CONTEXT_MISSING=call or process records such calls)", name,
            )
            return None
        if mode == "call":
            if not self.should_sample():
                return None
            seg = Segment(self.service_name, ids.trace_id())
            self.call_segments.add(seg)
            return seg
        if mode == "process":
            seg = self.process_segment
            if seg is None:
                with _process_lock:  # two threads' first calls open one segment
                    seg = self.process_segment
                    if seg is None:
                        seg = Segment(self.service_name, ids.trace_id())
                        self.process_segment = seg
                        self.open_segments[seg.id] = seg
                        self.emitter.send_document(encoder.in_progress_document(seg))
            return seg
        return None

    # -- fork ----------------------------------------------------------------------------------
    def after_fork(self) -> None:
        """In a forked child: no entity inherited from the parent, nothing of its state sent
        again. (The emitter and ids check the PID on use as well, for C forks such as
        uWSGI's, where ``os.register_at_fork`` hooks do not run.)"""
        _set(None)
        ending.clear()  # the parent's requests end in the parent
        self.open_segments = {}
        self.process_segment = None
        self.call_segments = set()
        self._pid = os.getpid()
        reset = getattr(self._sampler, "reset", None)
        if reset is not None:
            reset()

    # -- exit ----------------------------------------------------------------------------------
    def shutdown(self, timeout: float = 2.0) -> None:
        """Send what is left: the process segment, open segments as in_progress, the queue."""
        try:
            # calls made after this point (atexit handlers registered before ours) could not
            # be sent: a new process segment would stay in_progress for ever
            if self.context_missing in ("call", "process"):
                self.context_missing = "ignore"
            seg = self.process_segment
            if seg is not None:
                self.process_segment = None
                self.open_segments.pop(seg.id, None)
                seg.end_time = _time()
                self._emit(seg)
            self.emitter.flush(timeout)
            # requests still open: sent as in_progress with what they finished so far
            for seg in list(self.open_segments.values()):
                with seg.lock:
                    docs = encoder.documents(seg)
                    seg.emitted = True
                for doc in docs:
                    self.emitter.send_document(doc)
            self.open_segments.clear()
        except Exception:  # noqa: BLE001
            _log.get().debug("shutdown failed", exc_info=True)


def _sampler_failed() -> bool:
    _log.limited("sampler", _log.WARNING, "sampler failed", exc_info=True)
    return False


def _program_name(hint=None) -> str:
    """The main script's stem, the -m module, or the server's application module."""
    name = hint
    if not name:
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        if spec is not None and getattr(spec, "name", None):
            name = spec.name
            if name.endswith(".__main__"):
                name = name[: -len(".__main__")]
        else:
            argv0 = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else ""
            if argv0:
                name = os.path.splitext(os.path.basename(argv0))[0]
    if not name:
        name = "python"
    fixed, _ = _config.clean_name(name)
    return fixed


tracer = Tracer.__new__(Tracer)  # configured by bootstrap.start() or on first use
_configured = False


def get_tracer() -> Tracer:
    if not _configured:
        install(_config.from_env())
    return tracer


def after_fork_in_child():
    """Everything a new process needs: fresh ids, its own emitter state, no inherited entity.
    Run by ``os.register_at_fork`` and by the uWSGI integration's post-fork hook."""
    from . import emitter as _emitter

    try:
        ids.reseed()
        _emitter.after_fork_in_child()
        if _configured:
            tracer.after_fork()
            from . import resources

            resources.after_fork(tracer.config)
            _flush_at_multiprocessing_exit()
    except Exception:  # noqa: BLE001
        pass


def _flush_at_multiprocessing_exit() -> None:
    """A ``multiprocessing`` child (fork start method) ends with ``os._exit``, skipping atexit,
    right after its target returns: the documents it queued in its last sender interval would
    be lost. Its exit function runs the finalizers registered in the child after its
    bootstrap cleared the parent's (it runs the after-fork hooks next), so register one from
    such a hook. (A process ``multiprocessing`` did not start never runs its after-fork hooks;
    atexit's ``shutdown`` covers it.)"""
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.register_after_fork(tracer, _finalize_in_multiprocessing_child)


def _finalize_in_multiprocessing_child(t) -> None:
    sys.modules["multiprocessing.util"].Finalize(None, t.shutdown, exitpriority=-100)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=after_fork_in_child)


def _on_sigterm(signum, frame):
    """SIGTERM with Python's default disposition ends the process at once, skipping atexit:
    send what is queued first, then die of the same signal, as without the agent."""
    import signal

    try:
        tracer.shutdown(timeout=1.0)
    finally:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _flush_on_sigterm() -> None:
    """Only where SIGTERM still has its default disposition (servers such as gunicorn and
    uWSGI install their own handlers and exit through atexit), and only from the main thread."""
    try:
        import signal

        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, AttributeError):  # not the main thread, or no SIGTERM
        pass


def install(cfg: _config.Config, emitter=None) -> Tracer:
    global _configured
    first = not _configured
    _configured = True
    tracer.configure(cfg, emitter)
    if cfg.enabled:
        try:  # where the service runs: detected in the background, never on a request's path
            from . import resources

            resources.start(cfg)
        except Exception:  # noqa: BLE001
            _log.get().debug("resource detection could not start", exc_info=True)
    if first:
        atexit.register(tracer.shutdown)
        # not in AWS Lambda: each invocation's documents are sent before its result is posted,
        # so nothing waits for SIGTERM (and importing signal costs ~10 M instructions at the
        # cold start)
        if cfg.lambda_function_name is None:
            _flush_on_sigterm()
    return tracer
