"""Small, dependency-free wrapping helpers, instead of wrapt.

Why not wrapt: this code is imported by every interpreter ``xray-run`` starts, and importing
wrapt costs more than the agent's whole start-up. Measured with ``python -X importtime -c
'import wrapt'`` (CPython 3.11, a fresh venv per version, min / median of 9 runs on the 2-core
development machine): wrapt 1.17.3 26 / 32 ms, wrapt 2.5.2 80 / 82 ms in a bare interpreter
(it imports ``inspect`` -- hence ``ast``, ``dis``, ``tokenize`` -- and more); after the imports a
typical application has already made (asyncio, importlib.metadata, inspect, typing, json,
logging, dataclasses) 2.4 / 3.4 ms and 4.4 / 7.5 ms. The agent must not add that to a
``python -c`` or a short job, and must not depend on a version the application pins.

``wrap(owner, name, wrapper)`` replaces ``owner.name`` with a function that calls
``wrapper(wrapped, instance, args, kwargs)`` -- the wrapt calling convention -- where ``wrapped``
is bound for methods. ``unwrap`` is its exact mirror and removes exactly one layer, ours, found
by identity: a wrapt-based tool (aws-xray-sdk, ddtrace) that wrapped over ours keeps its layer.
Both are idempotent: a marker on the replacement says it is ours, and the original is kept on
it. Modules that build their own replacement mark it with ``mark``.
"""

from __future__ import annotations

import functools
import os
import types

MARK = "_xray_autoinst_wrapped"  # the attribute holding the original on our replacements
INHERITED = "_xray_autoinst_inherited"  # True: the original came from a base class
SELF = "_xray_autoinst_self"  # the replacement itself: a functools.wraps copy is not ours
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
    inherited = False
    if isinstance(owner, type):
        raw = owner.__dict__.get(name)
        if raw is None:  # inherited: the base's own object (a classmethod stays one)
            raw = next((k.__dict__[name] for k in owner.__mro__ if name in k.__dict__), None)
            if raw is None:
                raw = getattr(owner, name)
            inherited = True
    else:
        raw = getattr(owner, name)
    if is_wrapped(raw):
        return False
    if not callable(raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw):
        raise TypeError(f"xray-autoinst cannot wrap {owner!r}.{name}: not callable ({raw!r})")
    if isinstance(owner, type) and isinstance(raw, staticmethod):
        original = raw.__func__

        @functools.wraps(original)
        def static(*args, **kwargs):
            try:
                return wrapper(original, None, args, kwargs)
            except BaseException as exc:
                hide_frames(exc)
                raise

        mark(static, raw, inherited)
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

        mark(klass, raw, inherited)
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
    mark(replacement, raw, inherited)
    setattr(owner, name, replacement)
    return True


def wrap_async(owner, name, wrapper) -> bool:
    """``wrap`` for a coroutine method of a class: the replacement is itself a coroutine
    function (``inspect.iscoroutinefunction`` still says so) that awaits
    ``wrapper(wrapped, instance, args, kwargs)``, an ``async def``. ``unwrap`` undoes it."""
    raw = owner.__dict__.get(name)
    inherited = raw is None
    if inherited:
        raw = getattr(owner, name)
    if is_wrapped(raw):
        return False
    original = raw

    @functools.wraps(original)
    async def method(self, /, *args, **kwargs):
        return await wrapper(original.__get__(self, type(self)), self, args, kwargs)

    mark(method, raw, inherited)
    setattr(owner, name, method)
    return True


def mark(replacement, original, inherited=False):
    """Make ``replacement`` (a plain function standing for ``original``) one of ours: ``unwrap``
    puts ``original`` back. For the modules that build their own replacements."""
    replacement.__dict__[MARK] = original
    replacement.__dict__[INHERITED] = inherited
    replacement.__dict__[SELF] = replacement
    return replacement


def _ours(obj) -> bool:
    """``obj`` is one of our replacements itself, by identity: never something that only
    looks like one -- a wrapt proxy around ours (``getattr(proxy, MARK)`` answers through it),
    or a ``functools.wraps`` copy of ours (which copies our ``__dict__``)."""
    if type(obj) in (staticmethod, classmethod):
        obj = obj.__func__
    if type(obj) is not types.FunctionType:
        return False
    own = obj.__dict__
    return MARK in own and own.get(SELF, obj) is obj


def _is_wrapt_proxy(obj) -> bool:
    """A wrapt ``ObjectProxy`` (its C or Python implementation, or a vendored copy): setting
    its ``__wrapped__`` changes what it calls."""
    return any(k.__name__ in ("ObjectProxy", "BaseObjectProxy")
               and k.__module__.rpartition(".")[2] in ("_wrappers", "wrappers", "proxies")
               for k in type(obj).__mro__)


def _original(replacement):
    func = replacement.__func__ if type(replacement) in (staticmethod, classmethod) \
        else replacement
    return func.__dict__[MARK], func.__dict__.get(INHERITED, False)


def unwrap(owner, name) -> bool:
    """Undo one ``wrap`` of ``owner.name``: exactly our layer, found by identity.

    Our replacement is put back to its original (or removed from ``owner``, when the original
    was inherited from a base class). When another tool wrapped over ours with wrapt
    (aws-xray-sdk, ddtrace: a wrapt proxy whose ``__wrapped__`` is our replacement), its layer
    stays and now wraps our original. Anything else found there -- someone replaced the
    attribute, or wrapped ours without wrapt -- is left alone: False."""
    raw = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
    if _ours(raw):
        original, inherited = _original(raw)
        if inherited:
            delattr(owner, name)
        else:
            setattr(owner, name, original)
        return True
    parent = raw
    for _ in range(8):  # a few wrapt layers at most
        if not _is_wrapt_proxy(parent):
            return False
        try:
            layer = object.__getattribute__(parent, "__wrapped__")
        except AttributeError:
            try:
                layer = parent.__wrapped__
            except AttributeError:
                return False
        if _ours(layer):
            parent.__wrapped__ = _original(layer)[0]
            return True
        parent = layer
    return False
