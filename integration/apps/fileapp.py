"""A WSGI application answering with the server's ``wsgi.file_wrapper`` (no tracing code).

``/none``: no Content-Length; ``/right``: the file's size; ``/long``: ten bytes more than the
file holds. For comparison, ordinary iterables without Content-Length: ``/sized`` (an object
with a length of one block), ``/generator``. ``python fileapp.py PORT [wsgiref|werkzeug]``
serves it with either server."""

import os
import sys
import tempfile

SIZE = 70_000  # larger than every server's block size
PATH = os.path.join(tempfile.gettempdir(), "xray-autoinst-fileapp-%d.bin" % SIZE)
if not os.path.exists(PATH) or os.path.getsize(PATH) != SIZE:
    with open(PATH + ".%d" % os.getpid(), "wb") as f:
        f.write(bytes(range(256)) * (SIZE // 256) + bytes(SIZE % 256))
    os.replace(PATH + ".%d" % os.getpid(), PATH)


class OneBlock:
    def __init__(self, data):
        self.data = data

    def __len__(self):
        return 1

    def __iter__(self):
        return iter([self.data])


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    headers = [("Content-Type", "application/octet-stream")]
    if path in ("/sized", "/generator"):
        start_response("200 OK", headers)
        with open(PATH, "rb") as f:
            data = f.read()
        if path == "/sized":
            return OneBlock(data)
        return (data[i:i + 8192] for i in range(0, len(data), 8192))
    if path == "/right":
        headers.append(("Content-Length", str(SIZE)))
    elif path == "/long":
        headers.append(("Content-Length", str(SIZE + 10)))
    elif path != "/none":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    start_response("200 OK", headers)
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is None:  # werkzeug's development server offers none: its own helper
        from werkzeug.wsgi import wrap_file

        return wrap_file(environ, open(PATH, "rb"))
    return wrapper(open(PATH, "rb"), 8192)


if __name__ == "__main__":
    port = int(sys.argv[1])
    kind = sys.argv[2] if len(sys.argv) > 2 else "wsgiref"
    if kind == "werkzeug":
        from werkzeug.serving import WSGIRequestHandler, run_simple

        WSGIRequestHandler.log_request = lambda *a, **k: None
        WSGIRequestHandler.protocol_version = "HTTP/1.1"  # keep-alive, as a user may set
        run_simple("127.0.0.1", port, app, threaded=True)
    else:
        from wsgiref.simple_server import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args):
                pass

        make_server("127.0.0.1", port, app, handler_class=Quiet).serve_forever()
