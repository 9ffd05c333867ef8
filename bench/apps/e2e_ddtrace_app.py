"""The end-to-end applications under ``ddtrace-run``, which patches the libraries it finds and
configures the tracer from the environment (``DD_*``). ddtrace traces a plain WSGI or ASGI
application only through its middlewares (it has no gunicorn or uvicorn request integration),
so its user wraps the app: this module does, around the trivial apps of ``e2e_app.py`` and
``e2e_asgi_app.py``. The agent URL is a closed port: traces are encoded and their sending fails
fast, telemetry and remote configuration are off.
"""

import os
import sys

from ddtrace.contrib.asgi import TraceMiddleware
from ddtrace.contrib.wsgi import DDWSGIMiddleware

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from e2e_app import app as bare_app  # noqa: E402
from e2e_asgi_app import app as bare_asgi_app  # noqa: E402

app = DDWSGIMiddleware(bare_app)
asgi_app = TraceMiddleware(bare_asgi_app)
