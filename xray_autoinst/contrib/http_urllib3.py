"""urllib3 2.x (requests, botocore): the connection phases of the connections urllib3 opens.

urllib3 opens sockets (``HTTPConnection._new_conn`` through ``urllib3.util.connection.
create_connection``) and TLS (``HTTPSConnection.connect`` through ``ssl_wrap_socket``) itself,
never through ``http.client``'s ``connect``, and connects HTTPS connections before the request
is written. This module times those connects (``connect`` with ``dns``, ``dial``, ``tls``) and
ends the exchange when urllib3 fails to write a request body. The exchange itself (subsegment,
header) is recorded by the ``httplib`` integration, since urllib3's connections are
``http.client.HTTPConnection`` subclasses that call its ``putrequest`` and ``getresponse``.
"""

from __future__ import annotations

from ..core import wrapping
from . import _http
from .http_client import _traced_connect


def get_version():
    import urllib3

    return urllib3.__version__


def _traced_new_conn(wrapped, instance, args, kwargs):
    sock = wrapped(*args, **kwargs)
    try:
        _http.tcp_done(instance)
    except Exception:  # noqa: BLE001
        _http.fail("new_conn")
    return sock


def _traced_request(original):
    """urllib3 sends the body after ``endheaders``: a failure there ends the exchange."""

    def request(self, /, *args, **kwargs):
        try:
            return original(self, *args, **kwargs)
        except BaseException as exc:
            if self._xray_autoinst_sub is not None:
                try:
                    _http.send_failed(self, exc)
                except Exception:  # noqa: BLE001
                    _http.fail("request")
            wrapping.hide_frames(exc)
            raise

    return request


def patch():
    from urllib3 import connection as target

    from ..core import wrapping

    if getattr(target, "_xray_autoinst_patched", False):
        return
    wrapping.wrap(target.HTTPConnection, "connect", _traced_connect)
    wrapping.wrap(target.HTTPConnection, "_new_conn", _traced_new_conn)
    _http.replace_method(target.HTTPConnection, "request", _traced_request)
    wrapping.wrap(target.HTTPSConnection, "connect", _traced_connect)
    _http.install("urllib3")
    target._xray_autoinst_patched = True


def unpatch():
    from urllib3 import connection as target

    from ..core import wrapping

    if not getattr(target, "_xray_autoinst_patched", False):
        return
    for name in ("connect", "_new_conn", "request"):
        wrapping.unwrap(target.HTTPConnection, name)
    wrapping.unwrap(target.HTTPSConnection, "connect")
    _http.uninstall("urllib3")
    target._xray_autoinst_patched = False
