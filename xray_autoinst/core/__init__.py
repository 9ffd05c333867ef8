"""The lean tracing core: ids, trace header, entities, context, sampling, emission."""
