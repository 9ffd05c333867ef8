"""Per-request benchmark worker: a trivial WSGI application (or a one-route Flask application)
called directly in a loop, bare and behind each tracer's middleware, batch by batch with the
variants interleaved. Runs inside the virtualenv of the tracer it measures.

    python bench/wsgi_worker.py '{"variants": ["bare", "xray-sampled"], "batches": 10, ...}'

Per batch it records three figures per request, all in microseconds:
- ``wall``: the loop's wall time (what a request waits; a sender thread running at the same
  time competes for the GIL and shows up here too);
- ``thread``: CPU time of the request thread only (``time.thread_time``): the work done on the
  request path;
- ``cpu``: CPU time of the whole process (``time.process_time``, every thread) over the batch
  plus the flush of whatever the tracer still queued: the full cost, background sending
  included.
"""

from __future__ import annotations

import gc
import io
import json
import os
import sys
import time

from benchlib import RULES_SAMPLED, RULES_UNSAMPLED, calibrate, emit_result, rotate

ENVIRON = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/",
    "QUERY_STRING": "",
    "SERVER_NAME": "localhost",
    "SERVER_PORT": "8000",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "REMOTE_PORT": "50000",
    "HTTP_HOST": "localhost:8000",
    "HTTP_USER_AGENT": "bench/1.0",
    "HTTP_ACCEPT": "*/*",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.input": io.BytesIO(b""),
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": True,
    "wsgi.run_once": False,
}


def bare_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def flask_app(name="benchapp"):
    import flask

    app = flask.Flask(name)

    @app.route("/")
    def index():
        return "ok"

    return app


def _start_response(status, headers, exc_info=None):
    return None


def serve(app, n):
    """What a WSGI server does per request, minus the socket."""
    template = ENVIRON
    sr = _start_response
    for _ in range(n):
        result = app(template.copy(), sr)
        for _chunk in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()


# -- variants ---------------------------------------------------------------------------------
# Each builder returns (wsgi_app, flush) where flush() finishes whatever background work the
# tracer queued (so the process CPU time of a batch includes it), and records versions.
VERSIONS = {}


def _xray_tracers(daemon):
    """Our tracer, configured as documented: the global one sampled, a second one unsampled."""
    cache = _xray_tracers.__dict__
    if "sampled" not in cache:
        from xray_autoinst import __version__, config
        from xray_autoinst.core import tracer as tracer_mod

        VERSIONS["xray-autoinst"] = __version__
        base = {"AWS_XRAY_DAEMON_ADDRESS": daemon, "XRAY_SERVICE_NAME": "bench",
                "XRAY_SAMPLING": "local"}
        cache["sampled"] = tracer_mod.install(
            config.from_env(dict(base, XRAY_SAMPLING_RULES=RULES_SAMPLED)))
        cache["unsampled"] = tracer_mod.Tracer(
            config.from_env(dict(base, XRAY_SAMPLING_RULES=RULES_UNSAMPLED)))
    return cache["sampled"], cache["unsampled"]


def _xray(app, daemon, sampled, flask=False):
    from xray_autoinst.wsgi import XRayMiddleware

    if flask:
        from xray_autoinst.contrib import web_flask

        web_flask.patch()  # what the agent adds to Flask: the exception signal
    s, u = _xray_tracers(daemon)
    tracer = s if sampled else u
    return XRayMiddleware(app, tracer=tracer), tracer.emitter.flush


def _sdk_recorders(daemon):
    cache = _sdk_recorders.__dict__
    if "sampled" not in cache:
        import aws_xray_sdk
        from aws_xray_sdk.core import AWSXRayRecorder, xray_recorder
        from aws_xray_sdk.core.sampling.local.sampler import LocalSampler

        VERSIONS["aws-xray-sdk"] = aws_xray_sdk.__version__ if hasattr(
            aws_xray_sdk, "__version__") else _dist("aws-xray-sdk")
        common = {"service": "bench", "daemon_address": daemon, "context_missing": "LOG_ERROR",
                  "plugins": ()}
        xray_recorder.configure(sampler=LocalSampler(json.loads(RULES_SAMPLED)), **common)
        unsampled = AWSXRayRecorder()
        unsampled.configure(sampler=LocalSampler(json.loads(RULES_UNSAMPLED)), **common)
        cache["sampled"], cache["unsampled"] = xray_recorder, unsampled
    return cache["sampled"], cache["unsampled"]


class SDKWSGIMiddleware:
    """A minimal WSGI middleware on aws-xray-sdk's recorder, doing per request what the SDK's
    own Flask and Django middlewares do (header, sampling decision, segment, http fields)."""

    def __init__(self, app, recorder):
        from aws_xray_sdk.core.models import http
        from aws_xray_sdk.ext import util

        self.app = app
        self.recorder = recorder
        self.http = http
        self.util = util

    def __call__(self, environ, start_response):
        http, util, recorder = self.http, self.util, self.recorder
        xray_header = util.construct_xray_header(environ)
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        name = util.calculate_segment_name(host, recorder)
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        decision = util.calculate_sampling_decision(
            trace_header=xray_header, recorder=recorder,
            sampling_req={"host": host, "method": method, "path": path, "service": name},
        )
        segment = recorder.begin_segment(name=name, traceid=xray_header.root,
                                         parent_id=xray_header.parent, sampling=decision)
        segment.save_origin_trace_header(xray_header)
        url = environ.get("wsgi.url_scheme", "http") + "://" + host + path
        segment.put_http_meta(http.URL, url)
        segment.put_http_meta(http.METHOD, method)
        segment.put_http_meta(http.USER_AGENT, environ.get("HTTP_USER_AGENT"))
        segment.put_http_meta(http.CLIENT_IP, environ.get("REMOTE_ADDR"))

        def _start_response(status, headers, exc_info=None):
            segment.put_http_meta(http.STATUS, int(status[:3]))
            for key, value in headers:
                if key.lower() == "content-length":
                    segment.put_http_meta(http.CONTENT_LENGTH, int(value))
            headers.append((http.XRAY_HEADER, util.prepare_response_header(xray_header, segment)))
            return start_response(status, headers, exc_info)

        try:
            result = self.app(environ, _start_response)
        except Exception as exc:
            from aws_xray_sdk.core.utils import stacktrace

            segment.put_http_meta(http.STATUS, 500)
            segment.add_exception(exc, stacktrace.get_stacktrace(limit=recorder.max_trace_back))
            recorder.end_segment()
            raise
        recorder.end_segment()
        return result


def _sdk(app, daemon, sampled, flask=False):
    s, u = _sdk_recorders(daemon)
    recorder = s if sampled else u
    if flask:
        from aws_xray_sdk.ext.flask.middleware import XRayMiddleware

        XRayMiddleware(app, recorder)  # registers request hooks on the Flask application
        return app, _noop
    return SDKWSGIMiddleware(app, recorder), _noop


def _otel_providers():
    cache = _otel_providers.__dict__
    if "sampled" not in cache:
        from opentelemetry import propagate, trace
        from opentelemetry.propagators.aws import AwsXRayPropagator
        from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

        class DroppingExporter(SpanExporter):
            def export(self, spans):
                return SpanExportResult.SUCCESS

            def shutdown(self):
                pass

        VERSIONS.update({d: _dist(d) for d in (
            "opentelemetry-sdk", "opentelemetry-instrumentation-wsgi",
            "opentelemetry-instrumentation-flask", "opentelemetry-sdk-extension-aws",
            "opentelemetry-propagator-aws-xray")})
        propagate.set_global_textmap(AwsXRayPropagator())
        providers = {}
        for key, sampler in (("sampled", ALWAYS_ON), ("unsampled", ALWAYS_OFF)):
            provider = TracerProvider(sampler=sampler, id_generator=AwsXRayIdGenerator())
            provider.add_span_processor(BatchSpanProcessor(DroppingExporter()))
            providers[key] = provider
        trace.set_tracer_provider(providers["sampled"])
        cache.update(providers)
    return cache["sampled"], cache["unsampled"]


def _otel(app, daemon, sampled, flask=False):
    s, u = _otel_providers()
    provider = s if sampled else u
    if flask:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor.instrument_app(app, tracer_provider=provider)
        return app, lambda: provider.force_flush()
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(app, tracer_provider=provider), lambda: provider.force_flush()


def _ddtrace(app, daemon, sampled, flask=False):
    import ddtrace

    VERSIONS["ddtrace"] = ddtrace.__version__
    if flask:
        # ddtrace instruments Flask at class level: the application must be built after patch()
        return app, _noop
    from ddtrace.contrib.wsgi import DDWSGIMiddleware

    return DDWSGIMiddleware(app), _noop


def _noop():
    return None


def _dist(name):
    try:
        from importlib import metadata

        return metadata.version(name)
    except Exception:  # noqa: BLE001
        return None


BUILDERS = {"xray": _xray, "sdk": _sdk, "otel": _otel, "ddtrace": _ddtrace}


def build(variant, daemon):
    """``[flask-]bare`` or ``[flask-]<tracer>[-sampled|-unsampled]``."""
    flask = variant.startswith("flask-")
    rest = variant[6:] if flask else variant
    if flask and "flask" not in VERSIONS:
        VERSIONS["flask"] = _dist("flask")
    if rest == "bare":
        return (flask_app() if flask else bare_app), _noop
    tracer, _, mode = rest.partition("-")
    if flask and tracer == "ddtrace":
        import ddtrace

        ddtrace.patch(flask=True)
    app = flask_app("benchapp_" + variant.replace("-", "_")) if flask else bare_app
    return BUILDERS[tracer](app, daemon, mode != "unsampled", flask=flask)


def main(spec) -> dict:
    variants = spec["variants"]
    batches = spec["batches"]
    target = spec["target_s"]
    daemon = spec["daemon"]
    apps = {}
    for v in variants:
        apps[v] = build(v, daemon)
    # check each answers, warm up, and size its batches
    sizes = {}
    for v, (app, flush) in apps.items():
        serve(app, 50)
        flush()
        sizes[v] = calibrate(lambda n, app=app: serve(app, n), target)
        flush()
    out = {v: {"wall": [], "thread": [], "cpu": [], "batch": sizes[v]} for v in variants}
    pt, tt, pc = time.process_time, time.thread_time, time.perf_counter
    for i in range(batches):
        for v in rotate(variants, i):
            app, flush = apps[v]
            n = sizes[v]
            gc.collect()
            c0, t0, w0 = pt(), tt(), pc()
            serve(app, n)
            w1, t1 = pc(), tt()
            flush()
            c1 = pt()
            rec = out[v]
            rec["wall"].append((w1 - w0) / n * 1e6)
            rec["thread"].append((t1 - t0) / n * 1e6)
            rec["cpu"].append((c1 - c0) / n * 1e6)
    return {"variants": out, "versions": VERSIONS, "python": sys.version.split()[0],
            "pid": os.getpid()}


if __name__ == "__main__":
    emit_result(main(json.loads(sys.argv[1])))
