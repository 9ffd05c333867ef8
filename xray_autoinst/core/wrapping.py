"""Small, dependency-free wrapping helpers (wrapt 2.x costs 110+ ms to import here, since it
pulls in asyncio and importlib.metadata; measured with ``python -X importtime -c 'import wrapt'``).

``wrap(owner, name, wrapper)`` replaces ``owner.name`` with a function that calls
``wrapper(wrapped, instance, args, kwargs)`` -- the wrapt calling convention -- where ``wrapped``
is bound for methods. ``unwrap`` is its exact mirror. Both are idempotent: a marker on the
replacement says it is ours, and the original is kept on it.
"""

from __future__ import annotations

import functools
import os

MARK = "_xray_autoinst_wrapped"  # the attribute holding the original on our replacements
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _reraise_switch() -> bool:
    try:
        from . import tracer as _tracer_mod

        return bool(_tracer_mod.tracer.config.reraise)
    except Exception:  # noqa: BLE001
        return False


def hide_frames(exc) -> None:
    """Drop the agent's own frames from the head of ``exc``'s traceback, so that an exception
    the wrapped call raised reads in the application's traceback as it does without the agent.

    Called by a replacement in its ``except`` block, before a bare ``raise`` (which re-raises
    with the exception's ``__traceback__`` and adds no entry for the current frame): the
    traceback then starts at the wrapped library's frame, and the caller's frames are added as
    the exception unwinds. When no library frame follows (a C function raised, called from the
    agent's frame) the agent's frames go too, unless the test switch is on (an instrumentation
    error must keep its frames there). Python 3.11 and later: before, a bare ``raise``
    re-raises the traceback saved when the exception was caught, so the frames stay."""
    tb = exc.__traceback__
    head = tb
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE):
        tb = tb.tb_next
    if tb is head or (tb is None and _reraise_switch()):
        return
    exc.__traceback__ = tb


def is_wrapped(obj) -> bool:
    return getattr(obj, MARK, None) is not None


def wrap(owner, name, wrapper) -> bool:
    """Wrap ``owner.name`` (a module function, or a class's plain, static or class method).
    False if already.

    The replacement accepts exactly what the original accepts: its receiver is positional-only
    (``def method(self, /, *args, **kwargs)``), so a keyword argument named ``self``, ``fn``,
    ``wrapped``, ``instance``, ``args`` or ``kwargs`` reaches the original as it would without
    the agent (``ThreadPoolExecutor().submit(fn, 1, self=2)``). ``functools.wraps`` keeps the
    original's name, docstring, ``__wrapped__`` and so its ``inspect.signature``."""
    if isinstance(owner, type):
        raw = owner.__dict__.get(name)
        if raw is None:
            raw = getattr(owner, name)
    else:
        raw = getattr(owner, name)
    if is_wrapped(raw):
        return False
    if isinstance(owner, type) and isinstance(raw, staticmethod):
        original = raw.__func__

        @functools.wraps(original)
        def static(*args, **kwargs):
            try:
                return wrapper(original, None, args, kwargs)
            except BaseException as exc:
                hide_frames(exc)
                raise

        static.__dict__[MARK] = raw
        setattr(owner, name, staticmethod(static))
        return True
    if isinstance(owner, type) and isinstance(raw, classmethod):
        original = raw.__func__

        @functools.wraps(original)
        def klass(cls, /, *args, **kwargs):
            try:
                return wrapper(original.__get__(cls, cls), cls, args, kwargs)
            except BaseException as exc:
                hide_frames(exc)
                raise

        klass.__dict__[MARK] = raw
        setattr(owner, name, classmethod(klass))
        return True
    original = raw
    if isinstance(owner, type):

        @functools.wraps(original)
        def method(self, /, *args, **kwargs):
            try:
                return wrapper(original.__get__(self, type(self)), self, args, kwargs)
            except BaseException as exc:
                hide_frames(exc)
                raise

        replacement = method
    else:

        @functools.wraps(original)
        def function(*args, **kwargs):
            try:
                return wrapper(original, None, args, kwargs)
            except BaseException as exc:
                hide_frames(exc)
                raise

        replacement = function
    replacement.__dict__[MARK] = raw
    setattr(owner, name, replacement)
    return True


def wrap_async(owner, name, wrapper) -> bool:
    """``wrap`` for a coroutine method of a class: the replacement is itself a coroutine
    function (``inspect.iscoroutinefunction`` still says so) that awaits
    ``wrapper(wrapped, instance, args, kwargs)``, an ``async def``. ``unwrap`` undoes it."""
    raw = owner.__dict__.get(name)
    if raw is None:
        raw = getattr(owner, name)
    if is_wrapped(raw):
        return False
    original = raw

    @functools.wraps(original)
    async def method(self, /, *args, **kwargs):
        return await wrapper(original.__get__(self, type(self)), self, args, kwargs)

    method.__dict__[MARK] = raw
    setattr(owner, name, method)
    return True


def unwrap(owner, name) -> bool:
    raw = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
    if isinstance(raw, (staticmethod, classmethod)):
        original = getattr(raw.__func__, MARK, None)
    else:
        original = getattr(raw, MARK, None)
    if original is None:
        return False
    setattr(owner, name, original)
    return True


class ObjectProxy:
    """A transparent proxy: attribute access, ``isinstance`` and comparisons go to the wrapped
    object. Subclasses keep their own state in ``_self_*`` attributes."""

    __slots__ = ("__wrapped__", "__dict__", "__weakref__")

    def __init__(self, wrapped):
        object.__setattr__(self, "__wrapped__", wrapped)

    @property
    def __class__(self):
        return self.__wrapped__.__class__

    def __getattr__(self, name):
        if name == "__wrapped__":
            raise AttributeError(name)
        return getattr(self.__wrapped__, name)

    def __setattr__(self, name, value):
        if name.startswith("_self_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.__wrapped__, name, value)

    def __delattr__(self, name):
        if name.startswith("_self_"):
            object.__delattr__(self, name)
        else:
            delattr(self.__wrapped__, name)

    def __dir__(self):
        return dir(self.__wrapped__)

    def __repr__(self):
        return repr(self.__wrapped__)

    def __str__(self):
        return str(self.__wrapped__)

    def __bool__(self):
        return bool(self.__wrapped__)

    def __len__(self):
        return len(self.__wrapped__)

    def __iter__(self):
        return iter(self.__wrapped__)

    def __next__(self):
        return next(self.__wrapped__)

    def __contains__(self, item):
        return item in self.__wrapped__

    def __getitem__(self, key):
        return self.__wrapped__[key]

    def __eq__(self, other):
        if isinstance(other, ObjectProxy):
            other = other.__wrapped__
        return self.__wrapped__ == other

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash(self.__wrapped__)

    def __enter__(self):
        result = self.__wrapped__.__enter__()
        return self if result is self.__wrapped__ else result

    def __exit__(self, *exc):
        return self.__wrapped__.__exit__(*exc)

    def __call__(self, /, *args, **kwargs):
        return self.__wrapped__(*args, **kwargs)
