"""Public API for wrapping a WSGI application by hand: ``app = XRayMiddleware(app)``."""

from .contrib.web_wsgi import XRayMiddleware

__all__ = ["XRayMiddleware"]
