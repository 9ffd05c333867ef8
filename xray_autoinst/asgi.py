"""Public API for wrapping an ASGI application by hand: ``app = XRayMiddleware(app)``.

Not needed under ``xray-run`` with a supported server (uvicorn, hypercorn, daphne, gunicorn's
uvicorn workers); an application wrapped by hand is never traced twice."""

from .contrib.web_asgi import XRayMiddleware

__all__ = ["XRayMiddleware"]
