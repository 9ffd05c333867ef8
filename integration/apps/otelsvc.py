"""A service instrumented with OpenTelemetry's own SDK and its default W3C propagator (no
xray-autoinst): the other side of the trace-context end-to-end test. Finished spans are written
as JSON lines to the file named by OTEL_SPANS_FILE."""

import json
import os
import sys
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

from opentelemetry import propagate, trace
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

OUT = os.environ["OTEL_SPANS_FILE"]


class FileExporter(SpanExporter):
    def export(self, spans):
        with open(OUT, "a") as f:
            for s in spans:
                f.write(json.dumps({
                    "name": s.name, "kind": s.kind.name,
                    "trace_id": format(s.context.trace_id, "032x"),
                    "span_id": format(s.context.span_id, "016x"),
                    "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
                }) + "\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
trace.set_tracer_provider(provider)


def app(environ, start_response):
    if environ["PATH_INFO"] == "/call":  # call the URL in the query string, propagating
        headers = {}
        propagate.inject(headers)  # traceparent of the current (server) span
        req = urllib.request.Request(environ["QUERY_STRING"], headers=headers)
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
    else:
        body = b"otel here"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


if __name__ == "__main__":
    make_server("127.0.0.1", int(sys.argv[1]), OpenTelemetryMiddleware(app),
                handler_class=Quiet).serve_forever()
