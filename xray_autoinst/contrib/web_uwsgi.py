"""uWSGI: it loads the application from C, so there is no server class to patch. Once its
embedded ``uwsgi`` module appears (before it imports the application), read the options it was
started with (``module``/``wsgi``/``mount`` and ``callable``) and wrap the application's callable
when its module is imported. Documents are sent from a thread only when uWSGI runs Python
threads properly in its workers (``enable-threads`` or ``threads``, with ``py-call-osafterfork``),
and inline otherwise.
``--wsgi-file`` loads the file without the import system: use ``--module`` (see README).
"""

import sys

from .. import importhook
from .. import log as _log
from .web_wsgi import wrap_app

_hooked = set()


def get_version():
    uwsgi = sys.modules.get("uwsgi")
    v = getattr(uwsgi, "version", b"") if uwsgi is not None else b""
    return v.decode() if isinstance(v, bytes) else str(v)


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _values(opt, key):
    value = opt.get(key)
    if value is None:
        return []
    if isinstance(value, list):
        return [_text(v) for v in value]
    return [_text(value)]


def app_specs(opt):
    """(module, callable) pairs from uWSGI's options."""
    default_callable = (_values(opt, "callable") or ["application"])[-1]
    specs = []
    for key in ("module", "wsgi"):
        for value in _values(opt, key):
            specs.append(value)
    for value in _values(opt, "mount"):
        if "=" in value:
            specs.append(value.split("=", 1)[1])
    out = []
    for spec in specs:
        module, _, attr = spec.partition(":")
        module = module.strip()
        if module.endswith(".py") or "/" in module or not module:
            continue
        out.append((module, attr.strip() or default_callable))
    return out


def _wrap_callable(attr):
    def hook(module):
        try:
            app = getattr(module, attr, None)
            if app is not None:
                setattr(module, attr, wrap_app(app, hint=module.__name__))
        except Exception:  # noqa: BLE001
            _log.limited("uwsgi-wrap", _log.WARNING, "could not wrap the uWSGI application",
                         exc_info=True)

    return hook


def _threads_usable(opt):
    """A sender thread runs in a uWSGI worker only when Python threads are enabled AND uWSGI
    tells the interpreter about its forks (``py-call-osafterfork``): without that, a thread
    started in a C-forked worker never got the GIL in our tests, and nothing was sent."""
    if not opt.get("py-call-osafterfork"):
        return False
    if opt.get("enable-threads"):
        return True
    try:
        return int(_text(opt.get("threads", b"1") or b"1")) > 1
    except ValueError:
        return False


def _chain_post_fork(uwsgi):
    """uWSGI forks workers in C: ``os.register_at_fork`` hooks do not run there, its own
    ``post_fork_hook`` does (an application's hook, if any, still runs after ours)."""
    from ..core.tracer import after_fork_in_child

    previous = getattr(uwsgi, "post_fork_hook", None)

    def _xray_autoinst_post_fork():
        after_fork_in_child()
        if previous is not None:
            previous()

    try:
        uwsgi.post_fork_hook = _xray_autoinst_post_fork
    except (AttributeError, TypeError):
        pass


def patch():
    uwsgi = sys.modules.get("uwsgi")
    if uwsgi is None or getattr(uwsgi, "_xray_autoinst_patched", False):
        return
    opt = getattr(uwsgi, "opt", {}) or {}
    if not _threads_usable(opt):
        from ..core.tracer import get_tracer

        get_tracer().emitter.synchronous = True
    _chain_post_fork(uwsgi)
    specs = app_specs(opt)
    if not specs and (opt.get("wsgi-file") or opt.get("file")):
        _log.once("uwsgi-file", _log.WARNING,
                  "uWSGI --wsgi-file loads the application outside the import system, so it "
                  "cannot be traced automatically: use --module NAME:CALLABLE instead")
    for module, attr in specs:
        if (module, attr) not in _hooked:
            _hooked.add((module, attr))
            importhook.when_imported(module, _wrap_callable(attr))
    try:
        uwsgi._xray_autoinst_patched = True
    except (AttributeError, TypeError):
        pass


def unpatch():
    pass
