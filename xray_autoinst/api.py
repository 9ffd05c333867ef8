"""The public API (``import xray_autoinst``): a few calls for application code, with no
dependency, recording into whatever request is current. Every call is a no-op when tracing is
off, when no request is being traced, or when the program runs without ``xray-run``; none ever
raises into the application (a bad annotation is one warning)."""

from __future__ import annotations

import functools
import inspect
import re

from . import log as _log
from .core import tracer as _tracer_mod

_current = _tracer_mod.current_entity
_KEY = re.compile(r"[A-Za-z0-9_]{1,500}\Z")


def current_trace_id() -> str | None:
    """The X-Ray trace id (``1-xxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx``) of the request being
    handled, sampled or not; None outside any traced request."""
    entity = _current.get()
    return None if entity is None else entity.segment.trace_id


def current_entity_id() -> str | None:
    """The id of the segment or subsegment recording now; None when nothing is recorded."""
    entity = _current.get()
    return entity.id if entity is not None and entity.sampled else None


def annotate(key, value) -> None:
    """An indexed annotation on the current segment or subsegment (X-Ray: keys of letters,
    digits and ``_``; values string, number or boolean)."""
    entity = _current.get()
    if entity is None or not entity.sampled:
        return
    if not isinstance(key, str) or not _KEY.match(key):
        _warn("annotation key %r is not valid (letters, digits and _ only, 1-500): not recorded",
              key)
        return
    if not isinstance(value, (str, int, float, bool)) or value != value:  # NaN
        _warn("annotation %r: value of type %s is not a string, number or boolean: not "
              "recorded", key, type(value).__name__)
        return
    try:
        entity.put_annotation(key, value if not isinstance(value, str) else value[:1000])
    except Exception:  # noqa: BLE001
        _warn("annotation %r could not be recorded", key)


def add_metadata(key, value, namespace="default") -> None:
    """Metadata (any JSON-serialisable value, not indexed) on the current entity."""
    entity = _current.get()
    if entity is None or not entity.sampled:
        return
    if not isinstance(key, str) or not isinstance(namespace, str) or \
            namespace.startswith("AWS."):
        _warn("metadata %r in namespace %r: key and namespace must be strings, and AWS. "
              "namespaces are reserved: not recorded", key, namespace)
        return
    try:
        entity.put_metadata(key, value, namespace)
    except Exception:  # noqa: BLE001
        _warn("metadata %r could not be recorded", key)


def set_user(user) -> None:
    """The user the current request acts for (the segment's ``user``: searchable)."""
    entity = _current.get()
    if entity is None or not entity.sampled or user is None:
        return
    from .core.entities import clip

    entity.segment.user = clip(str(user))


class subsegment:
    """A subsegment around a block or a function, nested under whatever is current::

        with xray_autoinst.subsegment("price"):
            ...

        @xray_autoinst.subsegment("render")
        async def render(...):
            ...

    An exception leaving it is recorded (fault, cause) and passes through unchanged. Create one
    per use (``with`` / ``async with``); as a decorator each call gets its own."""

    __slots__ = ("name", "_open")

    def __init__(self, name):
        self.name = name
        self._open = []

    def __enter__(self):
        self._open.append(_begin(self.name))
        return self

    def __exit__(self, exc_type, exc, tb):
        _end(self._open.pop() if self._open else None, exc)
        return False

    async def __aenter__(self):
        return self.__enter__()

    async def __aexit__(self, exc_type, exc, tb):
        return self.__exit__(exc_type, exc, tb)

    def __call__(self, fn):
        name = self.name
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def traced_coroutine(*args, **kwargs):
                sub = _begin(name)
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    _end(sub, exc)
                    raise
                _end(sub, None)
                return result

            return traced_coroutine

        @functools.wraps(fn)
        def traced(*args, **kwargs):
            sub = _begin(name)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                _end(sub, exc)
                raise
            _end(sub, None)
            return result

        return traced


def _begin(name):
    if _current.get() is None or not _tracer_mod._configured:
        return None  # outside a traced request, or without the agent: nothing to record
    try:
        from .config import clean_name

        return _tracer_mod.tracer.begin_subsegment(clean_name(str(name))[0])
    except Exception:  # noqa: BLE001
        _warn("subsegment %r could not be started", name)
        return None


def _end(sub, exc):
    if sub is None:
        return
    try:
        if isinstance(exc, Exception):
            sub.add_exception(exc)
        _tracer_mod.tracer.end_subsegment(sub)
    except Exception:  # noqa: BLE001
        _warn("subsegment %r could not be ended", sub.name)


def _warn(msg, *args):
    _log.limited("api-" + msg[:40], _log.WARNING, "xray_autoinst: " + msg, *args)
