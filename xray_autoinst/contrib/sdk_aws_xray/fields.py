"""The SDK's annotations, metadata and sql dict made valid for the segment schema (and safe:
no password in a URL, SQL text sanitized as the agent's SQL integrations do)."""

from __future__ import annotations

import json
import math

from ... import log as _log
from ...core.entities import clip
from ...core.urls import clean_url
from ._shared import tracer

ANNOTATION_KEY_MAX = 500
ANNOTATION_VALUE_MAX = 1000
_KEY_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
NAMESPACES = ("aws", "remote")


def valid_annotation(key, value):
    if not isinstance(key, str) or not key or len(key) > ANNOTATION_KEY_MAX:
        return False
    if any(c not in _KEY_OK for c in key):
        return False
    if isinstance(value, bool) or isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str)


def put_annotation(entity, key, value):
    if not entity.sampled:
        return
    if not valid_annotation(key, value):
        _log.limited("sdk-annotation", _log.INFO,
                     "annotation %.60r ignored: keys are 1-500 letters, digits or _, values a "
                     "string, number or boolean", key)
        return
    if isinstance(value, str) and len(value) > ANNOTATION_VALUE_MAX:
        value = value[: ANNOTATION_VALUE_MAX - 3] + "..."
    entity.put_annotation(key, value)


def _jsonable(value):
    try:
        json.dumps(value, default=repr)
        return value
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def put_metadata(entity, key, value, namespace="default"):
    if not entity.sampled:
        return
    if not isinstance(namespace, str) or namespace.startswith("AWS."):
        _log.limited("sdk-metadata", _log.INFO,
                     "metadata namespace %.60r ignored: a string not starting with 'AWS.'",
                     namespace)
        return
    entity.put_metadata(key if isinstance(key, str) else str(key), _jsonable(value), namespace)


def clean_sql(sql):
    """The SDK's sql dict made schema-valid and safe: no password in the url, the query text
    sanitized as the agent's own SQL integrations do (or dropped with XRAY_SQL_QUERIES=off)."""
    cfg = tracer().config
    out = {}
    for key, value in sql.items():
        if value is None or not isinstance(key, str):
            continue
        if key == "sanitized_query":
            if cfg.sql_queries == "off":
                continue
            from .._sql import sanitize

            value = sanitize(str(value))
        elif key in ("url", "connection_string"):
            value = clean_url(str(value), cfg.redact_query_params)
        elif key == "user":
            value = clip(str(value))
        else:
            value = str(value)
        out[key] = value
    return out

