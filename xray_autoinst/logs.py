"""Trace ids in logs for structlog and loguru users (no dependency on either). The standard
``logging`` needs nothing: under ``xray-run`` its records carry ``xray_trace_id`` and
``xray_entity_id``.

structlog::

    structlog.configure(processors=[xray_autoinst.logs.structlog_processor, ...])

loguru::

    logger.configure(patcher=xray_autoinst.logs.loguru_patcher)
    logger.add(sys.stderr, format="{time} {level} [{extra[xray_trace_id]}] {message}")
"""

from __future__ import annotations


def ids() -> tuple[str, str]:
    """(trace id, entity id) of what is being recorded now; empty strings outside a trace."""
    from .core.tracer import current_entity

    entity = current_entity.get()
    if entity is None:
        return "", ""
    return entity.segment.trace_id, entity.id if entity.sampled else ""


def structlog_processor(logger, method_name, event_dict):
    trace_id, entity_id = ids()
    if trace_id:
        event_dict["xray_trace_id"] = trace_id
        if entity_id:
            event_dict["xray_entity_id"] = entity_id
    return event_dict


def loguru_patcher(record) -> None:
    trace_id, entity_id = ids()
    extra = record["extra"]
    extra["xray_trace_id"] = trace_id
    extra["xray_entity_id"] = entity_id
