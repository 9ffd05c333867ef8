"""The ASGI benchmarks alone: ``bench/run.py``'s sections ``per_request_asgi`` (a trivial ASGI
app in process, bare and behind xray-autoinst's, OpenTelemetry's and ddtrace's ASGI
middlewares, each in its virtualenv) and ``e2e_asgi`` (uvicorn under load: bare, ``xray-run``
sampling every request, and none).

    .venv/bin/python bench/bench_asgi.py [--quick] [--out PATH] [--rounds N] [--e2e-seconds S]

Prints the Markdown tables (medians, [p25, p75], ratios to bare and to this agent) and writes
``PATH`` (JSON) and its ``.md`` beside it. ``--quick``: this agent only, briefly.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--out" not in argv:
        argv += ["--out", os.path.join(run.ROOT, ".bench", "asgi.json")]
    sys.exit(run.main(["--sections", "per_request_asgi,e2e_asgi", *argv]))
