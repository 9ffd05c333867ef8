"""Flask turns an unhandled exception into a 500 response itself; take the exception from its
``got_request_exception`` signal so the segment's fault has its cause."""

from .web_wsgi import record_exception


def get_version():
    from importlib import metadata

    return metadata.version("flask")


def _on_exception(sender, exception=None, **_kw):
    if exception is not None:
        record_exception(exception)


def patch():
    import flask

    if getattr(flask, "_xray_autoinst_patched", False):
        return
    flask.got_request_exception.connect(_on_exception, weak=False)
    flask._xray_autoinst_patched = True


def unpatch():
    import flask

    if not getattr(flask, "_xray_autoinst_patched", False):
        return
    flask.got_request_exception.disconnect(_on_exception)
    flask._xray_autoinst_patched = False
