"""xray-autoinst: zero-code AWS X-Ray auto-instrumentation for Python services.

This module is imported by the ``xray-run`` launcher, so it must stay tiny.
"""

__version__ = "0.1.0"
