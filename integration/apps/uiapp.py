"""Two small WSGI services for the console's browser tests (no tracing code).

``python uiapp.py shop PORT STOCK_PORT``: /orders reads SQLite and asks the stock service;
/boom raises; /xss raises with markup in its message.
``python uiapp.py stock PORT``: /level answers.
"""

import http.client
import sqlite3
import sys

XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def shop(stock_port):
    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/orders":
            db = sqlite3.connect(":memory:")
            db.execute("CREATE TABLE orders (id INTEGER, item TEXT)")
            db.execute("INSERT INTO orders VALUES (1, 'secret-item')")
            rows = db.execute("SELECT item FROM orders WHERE id = 1").fetchall()
            db.close()
            conn = http.client.HTTPConnection("127.0.0.1", stock_port, timeout=10)
            conn.request("GET", "/level?item=1")
            level = conn.getresponse().read()
            conn.close()
            body = f"{len(rows)} order(s), stock {level.decode()}".encode()
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [body]
        if path == "/boom":
            raise RuntimeError("boom from the shop")
        if path.startswith("/xss"):
            raise ValueError(XSS)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"missing"]

    return app


def stock(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"7"]


if __name__ == "__main__":
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    kind, port = sys.argv[1], int(sys.argv[2])
    application = shop(int(sys.argv[3])) if kind == "shop" else stock
    make_server("127.0.0.1", port, application, handler_class=Quiet).serve_forever()
