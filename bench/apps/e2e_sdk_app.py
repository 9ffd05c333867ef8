"""The end-to-end application under aws-xray-sdk, as its user deploys it on a plain WSGI app:
``patch_all()``, ``xray_recorder`` configured with local sampling rules, and a middleware.

The SDK has no generic WSGI middleware (only Flask, Django, Bottle and aiohttp ones), so the
trivial app of ``e2e_app.py`` is wrapped in the same minimal middleware on ``xray_recorder`` as
the per-request section uses (``wsgi_worker.SDKWSGIMiddleware``: header, sampling decision,
segment, http fields, response header). ``BENCH_SAMPLING_RULES``: the local rules (JSON); the
daemon address is the SDK's own ``AWS_XRAY_DAEMON_ADDRESS``, the benchmark's UDP sink, so every
sampled segment is really encoded and sent.
"""

import json
import os
import sys

from aws_xray_sdk.core import patch_all, xray_recorder
from aws_xray_sdk.core.sampling.local.sampler import LocalSampler

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from e2e_app import app as bare_app  # noqa: E402
from wsgi_worker import SDKWSGIMiddleware  # noqa: E402

xray_recorder.configure(
    service="bench", context_missing="LOG_ERROR", plugins=(),
    daemon_address=os.environ["AWS_XRAY_DAEMON_ADDRESS"],
    sampler=LocalSampler(json.loads(os.environ["BENCH_SAMPLING_RULES"])))
patch_all()

app = SDKWSGIMiddleware(bare_app, xray_recorder)
