"""Celery: publishing a task records a subsegment and carries the trace; each task execution in
a worker is a segment of its own continuing it.

Publishing
    ``Celery.send_task`` is wrapped (``delay``, ``apply_async``, canvas primitives and retries
    all go through it): a ``remote`` subsegment named after the task, with the task's name and
    id in its ``metadata``. The ``X-Amzn-Trace-Id`` value (``Parent`` = that subsegment) is put
    in the task message's headers by a ``before_task_publish`` receiver, unless the application
    put one there itself (the one Celery copies from a task into its retry is replaced, so the
    retry's execution is a child of the retry's publish).

The worker
    ``task_prerun`` begins a segment named after the service (``XRAY_SERVICE_NAME``, else the
    Celery application's name), continuing the header the message carries (a fresh trace when
    none or an invalid one; sampled by the rules, with the task name as the path, when it holds
    no decision) and current while the task runs; ``task_postrun`` ends it. Recorded: the task
    name, id, retries and final state (annotations ``celery_task``, ``celery_task_id``,
    ``celery_retries``, ``celery_state``), the queue in ``metadata``; a task that raises is a
    ``fault`` with its ``cause`` (``task_failure``); a retry is ``celery_state = RETRY`` plus
    the publish of the retry, whose execution continues the same trace. Arguments, keyword
    arguments and results are never recorded. Eager executions (``task.apply()``,
    ``task_always_eager``) run inside the caller's trace and get no segment of their own.
    Works in the prefork (forked children), threads and solo pools. In a worker (``worker_init``),
    ``XRAY_CONTEXT_MISSING=process`` covers the start-up only (``_work.become_worker``): the
    worker's own broker traffic between tasks must not grow one never-ending segment.
"""

from __future__ import annotations

import contextvars

from ..core import header as _header
from ..core import tracer as _tracer_mod
from ..core.entities import clean_name, clip
from . import _calls, _guard

TRACE_HEADER = "X-Amzn-Trace-Id"
_UID = "xray-autoinst"
_current = _tracer_mod.current_entity
# the execution running in this context: (task id, segment, token, incoming token, previous).
# Not a dict by task id: a retry keeps its task id and may start before the first run ends.
_exec: contextvars.ContextVar = contextvars.ContextVar("xray_autoinst_celery_exec", default=None)
# the header of the task running in this context: Celery copies it into the messages the task
# sends for retries, where it must give way to the retry's own publish subsegment
_incoming: contextvars.ContextVar = contextvars.ContextVar("xray_autoinst_celery", default=None)


def get_version():
    import celery

    return celery.__version__


_fail = _guard.reporter(
    "celery", "xray-autoinst Celery instrumentation failed (%s); the task is unaffected")


# -- publishing --------------------------------------------------------------------------------
def _begin_publish(args, kwargs):
    tracer = _tracer_mod.get_tracer()
    if not tracer.enabled:
        return None
    name = args[0] if args else kwargs.get("name")
    if not isinstance(name, str):
        return None
    sub = tracer.begin_subsegment(clean_name(clip(name, 200)), "remote")
    if sub is not None:
        meta = {"task": clip(name)}
        task_id = kwargs.get("task_id")
        if isinstance(task_id, str):
            meta["id"] = clip(task_id)
        sub.metadata = {"celery": meta}
    return sub


def _end_publish(sub, result=None, exc=None):
    try:
        if exc is not None:
            if isinstance(exc, Exception):
                sub.add_exception(exc, remote=False)
        else:
            task_id = getattr(result, "id", None)
            if isinstance(task_id, str):
                sub.metadata["celery"]["id"] = clip(task_id)
    finally:
        _tracer_mod.tracer.end_subsegment(sub)


def _close_publish(sub, result, exc) -> None:
    try:
        _end_publish(sub, result, exc)
    except Exception:  # noqa: BLE001
        _fail("publish-end")


def _traced_send_task(wrapped, instance, args, kwargs):
    sub = _calls.attempt(_fail, "publish", _begin_publish, args, kwargs)
    return _calls.call(sub, _close_publish, wrapped, args, kwargs)


def _on_before_publish(sender=None, headers=None, **_kwargs):
    try:
        if not isinstance(headers, dict):
            return
        own = headers.get(TRACE_HEADER)
        if own is not None and own != _incoming.get():
            return  # set by the application
        value = _tracer_mod.get_tracer().outgoing_header(None)
        if value is not None:
            headers[TRACE_HEADER] = value
    except Exception:  # noqa: BLE001
        _fail("header")


# -- the worker --------------------------------------------------------------------------------
def _on_prerun(task_id=None, task=None, **_kwargs):
    try:
        request = getattr(task, "request", None)
        if request is None or getattr(request, "is_eager", False) or task_id is None:
            return
        tracer = _tracer_mod.get_tracer()
        if not tracer.enabled:
            return
        raw = getattr(request, TRACE_HEADER, None)
        if raw is None:
            headers = getattr(request, "headers", None)  # protocol 1 / custom headers
            if isinstance(headers, dict):
                raw = headers.get(TRACE_HEADER)
        hdr = _header.parse(raw) if isinstance(raw, str) else None
        name = getattr(task, "name", None) or "task"
        seg, token = tracer.begin_segment(None, hdr, path=name)
        _exec.set((task_id, seg, token, _incoming.set(raw), _exec.get()))
        if seg.sampled:
            retries = getattr(request, "retries", 0) or 0
            seg.annotations = {
                "celery_task": clip(name), "celery_task_id": clip(task_id),
                "celery_retries": retries if isinstance(retries, int) else 0,
            }
            meta = {"task": clip(name), "id": clip(task_id)}
            info = getattr(request, "delivery_info", None)
            if isinstance(info, dict):
                queue = info.get("routing_key") or info.get("exchange")
                if isinstance(queue, str) and queue:
                    meta["queue"] = clip(queue)
            hostname = getattr(request, "hostname", None)
            if isinstance(hostname, str):
                meta["hostname"] = clip(hostname)
            seg.metadata = {"celery": meta}
    except Exception:  # noqa: BLE001
        _fail("prerun")


def _on_failure(task_id=None, exception=None, **_kwargs):
    try:
        entry = _exec.get()
        if entry is not None and entry[0] == task_id and entry[1].sampled and isinstance(
                exception, BaseException):
            entry[1].add_exception(exception)
    except Exception:  # noqa: BLE001
        _fail("failure")


def _on_postrun(task_id=None, state=None, **_kwargs):
    try:
        entry = _exec.get()
        if entry is None or entry[0] != task_id:
            return
        _task_id, seg, token, incoming, previous = entry
        _exec.set(previous)
        try:
            _incoming.reset(incoming)
        except ValueError:  # ended in another context
            _incoming.set(None)
        if seg.sampled and isinstance(state, str):
            seg.annotations["celery_state"] = clip(state)
            seg.metadata["celery"]["state"] = clip(state)
        _tracer_mod.tracer.end_segment(seg, token)
    except Exception:  # noqa: BLE001
        _fail("postrun")


def _on_worker_init(sender=None, **_kwargs):
    """In a worker: its name for the segments, and no process-wide segment."""
    try:
        tracer = _tracer_mod.get_tracer()
        app = getattr(sender, "app", None)
        main = getattr(app, "main", None)
        if isinstance(main, str) and main and main != "__main__":
            tracer.set_name_hint(main)
        from . import _work

        _work.become_worker(tracer, "Celery worker")
    except Exception:  # noqa: BLE001
        _fail("worker")


_RECEIVERS = (
    ("before_task_publish", _on_before_publish),
    ("task_prerun", _on_prerun),
    ("task_failure", _on_failure),
    ("task_postrun", _on_postrun),
    ("worker_init", _on_worker_init),
)


def patch():
    from celery import signals
    from celery.app import base as target

    from ..core import wrapping

    if getattr(target, "_xray_autoinst_patched", False):
        return
    wrapping.wrap(target.Celery, "send_task", _traced_send_task)
    for name, receiver in _RECEIVERS:
        getattr(signals, name).connect(receiver, weak=False, dispatch_uid=_UID + name)
    target._xray_autoinst_patched = True


def unpatch():
    from celery import signals
    from celery.app import base as target

    from ..core import wrapping

    if not getattr(target, "_xray_autoinst_patched", False):
        return
    wrapping.unwrap(target.Celery, "send_task")
    for name, receiver in _RECEIVERS:
        getattr(signals, name).disconnect(receiver, dispatch_uid=_UID + name)
    target._xray_autoinst_patched = False
