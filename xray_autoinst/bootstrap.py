"""Run by the ``sitecustomize`` hook at interpreter start: read the configuration once and
register the post-import hooks of every enabled integration. Nothing heavy is imported here:
the tracer and a patcher load when the application imports a library the patcher targets.
"""

import sys

from . import config as _config
from . import importhook
from .registry import APPEARING, INTEGRATIONS, UNTRACED


class IntegrationStatus:
    """What became of one integration: ``state`` is ``"waiting"`` (its hooks are registered,
    none of its targets imported yet), ``"patched"``, ``"disabled"``
    (XRAY_DISABLED_INSTRUMENTATIONS) or ``"failed"``, with ``error`` the exception the patcher
    raised (``"RuntimeError: ..."``). ``str()`` is the text ``--check`` and the logs show."""

    __slots__ = ("state", "error")

    def __init__(self, state, error=None):
        self.state = state
        self.error = error

    @property
    def off(self):
        """True when the integration records nothing: disabled, or its patcher failed."""
        return self.state in ("disabled", "failed")

    def __eq__(self, other):
        if isinstance(other, IntegrationStatus):
            return self.state == other.state and self.error == other.error
        return NotImplemented

    def __hash__(self):
        return hash((self.state, self.error))

    def __str__(self):
        return "failed: " + str(self.error) if self.state == "failed" else self.state

    def __repr__(self):
        return "IntegrationStatus(%r, %r)" % (self.state, self.error)


WAITING = IntegrationStatus("waiting")
PATCHED = IntegrationStatus("patched")
DISABLED = IntegrationStatus("disabled")

# integration name -> its IntegrationStatus, once settled (patched, disabled or failed)
status = {}
_waiting = set()  # the integrations whose hooks are registered
_config_obj = None


def integration_status(name):
    """The ``IntegrationStatus`` of integration ``name``, or None when the bootstrap has not
    considered it (not started, or an unknown name)."""
    settled = status.get(name)
    if settled is not None:
        return settled
    return WAITING if name in _waiting else None


def settings():
    global _config_obj
    if _config_obj is None:
        _config_obj = _config.from_env()
    return _config_obj


def start(environ=None):
    """Configure and install hooks. Returns the Config."""
    global _config_obj
    cfg = _config.from_env(environ)
    _config_obj = cfg
    if cfg.problems or cfg.log_level != "warning":
        # logging is imported only when there is something to log (or a level to set)
        from . import log as _log

        _log.configure(cfg.log_level)
        for problem in cfg.problems:
            _log.get().warning("%s", problem)
    if not cfg.enabled:
        return cfg
    if cfg.log_level == "debug":  # (_log is imported above for any level but warning)
        import os

        _log.get().debug(
            "xray-autoinst active in pid %d; child interpreters started with -I or -E, or "
            "with a PYTHONPATH that drops the start-up hook, run untraced", os.getpid())
    for name, integration in INTEGRATIONS.items():
        if name in cfg.disabled_instrumentations:
            status[name] = DISABLED
            continue
        _waiting.add(name)
        for target in integration.targets:
            if target in APPEARING:
                importhook.when_appears(target, _on_import(name))
            else:
                importhook.when_imported(target, _on_import(name))
    for module in UNTRACED:
        importhook.when_imported(module, _on_untraced(module))
    return cfg


def _on_untraced(module):
    def hook(_module):
        from . import log as _log

        _log.once("untraced-" + module, _log.INFO,
                  "the application imported %s (%s): xray-autoinst does not trace it, its "
                  "calls are not recorded", module, UNTRACED[module])

    return hook


def _on_import(name):
    def hook(_module):
        apply(name)

    return hook


_applying = []  # patchers running now; hooks firing meanwhile wait (our own imports)
_deferred = []


def apply(name):
    """Run an integration's patcher through the one guard: an exception is logged once and
    the integration marked failed; the application's import goes on as without the agent.

    A hook that fires while another patcher runs (a patcher's own imports, e.g. ``threading``
    imported by the tracer) is deferred until that patcher has finished, so a patcher never
    sees the agent's modules half-initialized."""
    if _applying:
        if name not in _deferred:
            _deferred.append(name)
        return
    _applying.append(name)
    try:
        _apply(name)
    finally:
        _applying.pop()
    while _deferred:
        apply(_deferred.pop(0))


def _apply(name):
    if name in status:  # settled: patched, disabled or failed
        return
    patcher = INTEGRATIONS[name].patcher
    try:
        __import__(patcher)
        module = sys.modules[patcher]
        module.patch()
        status[name] = PATCHED
    except Exception as exc:  # noqa: BLE001 - never break the application's import
        from . import log as _log

        status[name] = IntegrationStatus("failed", f"{type(exc).__name__}: {exc}")
        _log.get().warning(
            "instrumentation %r could not be applied and is off (%s: %s); the application "
            "runs unchanged", name, type(exc).__name__, exc,
        )
        _log.get().debug("instrumentation %r failed", name, exc_info=True)
        if settings().reraise:
            raise
