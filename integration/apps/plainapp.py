"""A plain WSGI application used by the end-to-end tests (no tracing code)."""

import os
import sys


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/boom":
        raise RuntimeError("boom from the app")
    if path == "/missing":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"missing"]
    if path == "/throttled":
        start_response("429 Too Many Requests", [("Content-Type", "text/plain")])
        return [b"slow down"]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (chunk for chunk in (b"a", b"b", b"c"))
    if path == "/slow":
        import time

        time.sleep(float(environ.get("QUERY_STRING") or 1.0))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slow"]
    if path == "/pid":
        try:  # /pid?SECONDS holds the worker a little, so that load spreads over workers
            import time

            time.sleep(min(float(environ.get("QUERY_STRING") or 0), 1.0))
        except ValueError:
            pass
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    body = b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [body]


if __name__ == "__main__":
    # `python plainapp.py PORT [COUNT]`: wsgiref, serving COUNT requests (default forever)
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", int(sys.argv[1]), app, handler_class=Quiet)
    if len(sys.argv) > 2:
        for _ in range(int(sys.argv[2])):
            server.handle_request()
    else:
        server.serve_forever()
