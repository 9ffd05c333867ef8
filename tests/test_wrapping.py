"""core/wrapping.py on its own: wrap/unwrap of functions, methods, static and class methods,
inherited attributes, coroutine methods, and unwrap removing exactly our layer when a
wrapt-based tool (aws-xray-sdk, ddtrace) wrapped over it."""

import asyncio
import inspect
import types

import pytest
from xray_testing import need

from xray_autoinst.core import wrapping

calls = []


def tracer(wrapped, instance, args, kwargs):
    calls.append(("ours", instance, args, kwargs))
    return wrapped(*args, **kwargs)


@pytest.fixture(autouse=True)
def _clear():
    calls.clear()


def _module():
    mod = types.ModuleType("fake_lib")

    def get(x, *, y=0):
        """Docs."""
        return x + y

    mod.get = get
    return mod


class Base:
    def method(self, x):
        return ("method", x)

    @classmethod
    def build(cls, x):
        return (cls.__name__, x)

    @staticmethod
    def helper(x):
        return ("helper", x)

    async def fetch(self, x):
        return ("fetch", x)


def test_function_wrapped_once_and_restored_to_the_same_object():
    mod = _module()
    original = mod.get
    assert wrapping.wrap(mod, "get", tracer) is True
    assert wrapping.wrap(mod, "get", tracer) is False  # idempotent
    assert mod.get(1, y=2) == 3 and len(calls) == 1
    assert mod.get.__name__ == "get" and mod.get.__doc__ == "Docs."
    assert inspect.signature(mod.get) == inspect.signature(original)
    assert wrapping.unwrap(mod, "get") is True
    assert mod.get is original
    assert wrapping.unwrap(mod, "get") is False


def test_methods_static_and_class_methods_keep_their_kind():
    class C:
        method = Base.__dict__["method"]
        build = Base.__dict__["build"]
        helper = Base.__dict__["helper"]

    for name in ("method", "build", "helper"):
        assert wrapping.wrap(C, name, tracer)
    assert type(C.__dict__["build"]) is classmethod
    assert type(C.__dict__["helper"]) is staticmethod
    obj = C()
    assert obj.method(1) == ("method", 1)
    assert C.build(2) == ("C", 2) and obj.build(2) == ("C", 2)
    assert C.helper(3) == ("helper", 3)
    assert [c[1] for c in calls] == [obj, C, C, None]
    for name in ("method", "build", "helper"):
        assert wrapping.unwrap(C, name)
        assert C.__dict__[name] is Base.__dict__[name]


def test_inherited_attributes_are_wrapped_on_the_subclass_and_removed_again():
    class Sub(Base):
        pass

    for name in ("method", "build", "helper"):
        assert name not in Sub.__dict__
        assert wrapping.wrap(Sub, name, tracer)
    # an inherited classmethod stays a classmethod (bound to the subclass, not to Base)
    assert Sub.build(1) == ("Sub", 1)
    assert Sub.helper(2) == ("helper", 2)
    assert Sub().method(3) == ("method", 3)
    assert Base.build(1) == ("Base", 1) and len(calls) == 3  # the base is untouched
    for name in ("method", "build", "helper"):
        assert wrapping.unwrap(Sub, name)
        assert name not in Sub.__dict__  # inheritance restored, no shadowing copy left


def test_coroutine_methods_stay_coroutine_functions():
    class C(Base):
        pass

    async def around(wrapped, instance, args, kwargs):
        calls.append("async")
        return await wrapped(*args, **kwargs)

    assert wrapping.wrap_async(C, "fetch", around)
    assert inspect.iscoroutinefunction(C.fetch)
    assert asyncio.run(C().fetch(5)) == ("fetch", 5) and calls == ["async"]
    assert wrapping.unwrap(C, "fetch") and "fetch" not in C.__dict__


def test_not_callable_is_refused_at_patch_time():
    mod = types.ModuleType("fake")
    mod.VALUE = 3
    with pytest.raises(TypeError, match="cannot wrap"):
        wrapping.wrap(mod, "VALUE", tracer)
    assert mod.VALUE == 3


def test_exceptions_pass_through_unchanged():
    mod = types.ModuleType("fake")

    def boom():
        raise KeyError("k")

    mod.boom = boom
    wrapping.wrap(mod, "boom", tracer)
    with pytest.raises(KeyError) as info:
        mod.boom()
    assert info.value.args == ("k",)


def test_a_wrapt_layer_over_ours_survives_our_unwrap():
    wrapt = need("wrapt")
    mod = _module()
    original = mod.get
    wrapping.wrap(mod, "get", tracer)
    ours = mod.get

    def theirs(wrapped, instance, args, kwargs):
        calls.append("theirs")
        return wrapped(*args, **kwargs)

    wrapt.wrap_function_wrapper(mod, "get", theirs)
    assert mod.get(1) == 1 and calls[-2:] == ["theirs", ("ours", None, (1,), {})]
    # through the proxy our mark is visible: wrapping again is refused, never doubled
    assert wrapping.is_wrapped(mod.get) and wrapping.wrap(mod, "get", tracer) is False
    assert wrapping.unwrap(mod, "get") is True
    assert isinstance(mod.get, wrapt.FunctionWrapper)  # their layer is kept ...
    assert mod.get.__wrapped__ is original and mod.get.__wrapped__ is not ours  # ... over ours
    calls.clear()
    assert mod.get(2, y=1) == 3 and calls == ["theirs"]
    assert wrapping.unwrap(mod, "get") is False


def test_a_wrapt_layer_over_our_method_survives_our_unwrap():
    wrapt = need("wrapt")

    class C(Base):
        pass

    wrapping.wrap(C, "method", tracer)
    wrapt.wrap_function_wrapper(C, "method", lambda w, i, a, k: ("theirs",) + w(*a, **k))
    assert C().method(1) == ("theirs", "method", 1) and len(calls) == 1
    assert wrapping.unwrap(C, "method")
    calls.clear()
    assert C().method(2) == ("theirs", "method", 2) and calls == []


def test_a_plain_decorator_over_ours_is_left_alone():
    import functools

    mod = _module()
    wrapping.wrap(mod, "get", tracer)
    inner = mod.get

    @functools.wraps(inner)
    def theirs(*args, **kwargs):
        return inner(*args, **kwargs)

    mod.get = theirs
    # getattr(theirs, MARK) would find our mark through functools.wraps' __dict__ copy; unwrap
    # must not restore the original over their function
    assert wrapping.unwrap(mod, "get") is False
    assert mod.get is theirs


def test_object_proxy_is_gone():
    assert not hasattr(wrapping, "ObjectProxy")
