"""Post-import hooks with a tiny ``sys.meta_path`` finder (standard library only).

Why not wrapt's importer: importing wrapt costs 26 ms (1.17) to 80 ms (2.5) in a bare
interpreter (core/wrapping.py has the measurement), and this runs in every interpreter the
launcher prepares. The finder answers only for registered module names: it asks
the finders after it for the spec and wraps the loader so that, once the module has executed,
the hooks run (and hooks for modules already imported run at once).
"""

import sys

_hooks = {}  # module name -> [callback(module)]
_finding = set()
# Modules that appear in sys.modules without going through the import system (uWSGI's embedded
# ``uwsgi`` module, created by its C plugin): their hooks run at the next import after they do.
_appearing = {}


def when_appears(name, callback):
    """Run ``callback(module)`` once ``name`` is in sys.modules, checked at each import."""
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return
    _appearing.setdefault(name, []).append(callback)
    install()


def _check_appeared():
    for name in list(_appearing):
        module = sys.modules.get(name)
        if module is not None:
            for callback in _appearing.pop(name, ()):
                callback(module)


def when_imported(name, callback):
    module = sys.modules.get(name)
    if module is not None and getattr(getattr(module, "__spec__", None), "_initializing", False) \
            is False:
        callback(module)
        return
    _hooks.setdefault(name, []).append(callback)
    install()


def _fire(name, module):
    for callback in _hooks.pop(name, ()):
        callback(module)


class _Loader:
    """Delegates to the real loader; runs the hooks after ``exec_module``."""

    def __init__(self, loader, name):
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module):
        loader = self._loader
        # the module and its spec point at the real loader, as without the agent
        try:
            module.__loader__ = loader
            if module.__spec__ is not None:
                module.__spec__.loader = loader
        except AttributeError:
            pass
        loader.exec_module(module)
        _fire(self._name, module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class Finder:
    _xray_autoinst_finder = True

    def find_spec(self, fullname, path=None, target=None):
        if _appearing:
            _check_appeared()
        if fullname not in _hooks or fullname in _finding:
            return None
        _finding.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or getattr(finder, "_xray_autoinst_finder", False):
                    continue
                find = getattr(finder, "find_spec", None)
                if find is None:
                    continue
                spec = find(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            _finding.discard(fullname)
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        spec.loader = _Loader(loader, fullname)
        return spec

    def invalidate_caches(self):
        pass


_finder = None


def install():
    global _finder
    if _finder is None:
        _finder = Finder()
        sys.meta_path.insert(0, _finder)
