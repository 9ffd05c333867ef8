"""logging: every record created while a traced request is current carries its trace id and
the id of the entity recording now, as ``record.xray_trace_id`` and ``record.xray_entity_id``
(``%(xray_trace_id)s`` in a format); records made outside a traced request carry empty strings,
so a format naming them works everywhere.

``XRAY_LOG_CORRELATION=true`` also puts them into the format of applications that configure
nothing themselves: ``logging.basicConfig()`` called without a format, and Python's last-resort
handler (what prints warnings when no handler is configured)."""

from ..core import tracer as _tracer_mod
from ..core.wrapping import MARK

_get = _tracer_mod.current_entity.get
FORMAT = ("%(asctime)s %(levelname)s [%(name)s] "
          "[xray_trace_id=%(xray_trace_id)s xray_entity_id=%(xray_entity_id)s] %(message)s")
_state = {"formatter": None}


def get_version():
    return ""


def _make_factory(original):
    def factory(*args, _original=original, _get=_get, **kwargs):
        record = _original(*args, **kwargs)
        entity = _get()
        if entity is None:
            record.xray_trace_id = record.xray_entity_id = ""
        else:
            record.xray_trace_id = entity.segment.trace_id
            record.xray_entity_id = entity.id if entity.sampled else ""
        return record

    factory.__dict__[MARK] = original
    return factory


def _traced_basic_config(wrapped, instance, args, kwargs):
    if "format" not in kwargs and "handlers" not in kwargs and kwargs.get("style", "%") == "%":
        kwargs["format"] = FORMAT
    return wrapped(*args, **kwargs)


def patch():
    import logging

    if getattr(logging, "_xray_autoinst_patched", False):
        return
    logging.setLogRecordFactory(_make_factory(logging.getLogRecordFactory()))
    from .. import bootstrap

    if bootstrap.settings().log_correlation:
        from ..core import wrapping

        wrapping.wrap(logging, "basicConfig", _traced_basic_config)
        last = logging.lastResort
        if last is not None and last.formatter is None:
            last.setFormatter(logging.Formatter(FORMAT))
            _state["formatter"] = last
    logging._xray_autoinst_patched = True


def unpatch():
    import logging

    if not getattr(logging, "_xray_autoinst_patched", False):
        return
    factory = logging.getLogRecordFactory()
    original = getattr(factory, MARK, None)
    if original is not None:
        logging.setLogRecordFactory(original)
    from ..core import wrapping

    wrapping.unwrap(logging, "basicConfig")
    if _state["formatter"] is not None:
        _state["formatter"].setFormatter(None)
        _state["formatter"] = None
    logging._xray_autoinst_patched = False
