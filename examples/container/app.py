"""The application the example image runs: a plain WSGI app, no tracing code."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello from the container\n"]
