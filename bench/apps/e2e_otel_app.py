"""The end-to-end applications under ``opentelemetry-instrument``, which configures the SDK
from the environment (sampler, X-Ray id generator and propagator, no exporter of its own) and
instruments the libraries it finds installed. It has no instrumentation for a plain WSGI or
ASGI application served by gunicorn or uvicorn (only for frameworks), so its user wraps the
app in OpenTelemetry's own middleware: this module does, around the trivial apps of
``e2e_app.py`` and ``e2e_asgi_app.py``.

The spans go through a ``BatchSpanProcessor`` (the one ``opentelemetry-instrument`` installs
for an exporter) to an exporter that drops them, as in the per-request section: OpenTelemetry
pays for the spans, their queue and the batch thread, not for encoding or sending anything, so
its figures here are a lower bound (this agent and aws-xray-sdk do encode and send).
"""

import os
import sys

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware as ASGIMiddleware
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware as WSGIMiddleware
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from e2e_app import app as bare_app  # noqa: E402
from e2e_asgi_app import app as bare_asgi_app  # noqa: E402


class DroppingExporter(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


# the SDK provider opentelemetry-instrument set (OTEL_TRACES_EXPORTER=none: no processor yet);
# imported after the fork (gunicorn without --preload), so the batch thread is this worker's
trace.get_tracer_provider().add_span_processor(BatchSpanProcessor(DroppingExporter()))

app = WSGIMiddleware(bare_app)
asgi_app = ASGIMiddleware(bare_asgi_app)
