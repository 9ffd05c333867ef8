"""The vision app from the X-Ray post ("Instrumenting Go using AWS X-Ray"), ported to Python.

Each page view fetches two random pictures from picsum.photos, asks Amazon Rekognition
``DetectLabels`` what is in each, and shows the pictures with their labels and confidences.
There is no tracing code here at all: run it under ``xray-run`` and every page view becomes the
X-Ray trace of the post (segment, one subsegment per HTTP exchange with picsum, one per
Rekognition call):

    XRAY_SERVICE_NAME=VisionService.Analyse xray-run python examples/vision/main.go-port.py

Configured by environment only:
    PICSUM_URL                     where the pictures come from (default https://picsum.photos)
    AWS_REGION, AWS_DEFAULT_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID, ...
                                   the standard AWS configuration (the post used eu-west-1,
                                   which is the default here when no region is configured)
    AWS_ENDPOINT_URL_REKOGNITION   another Rekognition endpoint (a local moto server, say)
    PORT                           listen port (default 8000, as the post; 0 picks a free one)
    HOST                           listen address (default 127.0.0.1; 0.0.0.0 for every
                                   interface, as the Go program listened)

A failure of either service shows on the page and makes the answer a 5xx (502 when a picture
cannot be fetched, 500 when Rekognition fails, as the Go version answered), so the trace shows
the fault where it happened. As in the Go version, the pictures are fetched concurrently (a
thread each, where Go starts a goroutine each), then labelled one after the other. Unlike it, a
failed picture fetch is reported rather than crashing the handler, and each thread writes its
own slot of the result list (the Go goroutines append to one slice without a lock).
"""

from __future__ import annotations

import base64
import html
import http.client
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import boto3
import botocore.exceptions

IMAGE_COUNT = 2
IMAGE_SIZE = 500  # the post asks for /500/500
DEFAULT_REGION = "eu-west-1"  # the post's region, used when none is configured
FETCH_TIMEOUT = 10  # seconds


class UpstreamError(Exception):
    """A downstream service failed; ``status`` is the answer this app gives for it."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


def picsum_url() -> str:
    return os.environ.get("PICSUM_URL", "https://picsum.photos").rstrip("/")


def get_image(index: int) -> tuple[bytes, str]:
    """One random picture and its media type; urllib follows picsum's redirect."""
    url = f"{picsum_url()}/{IMAGE_SIZE}/{IMAGE_SIZE}?random={index}"
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as resp:
            body = resp.read()
            media_type = resp.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        raise UpstreamError("502 Bad Gateway", f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts, resets, bad URL
        raise UpstreamError("502 Bad Gateway", f"{url}: {exc}") from exc
    if not media_type.startswith("image/"):
        raise UpstreamError("502 Bad Gateway", f"{url}: got {media_type}, not an image")
    return body, media_type


def get_images(count: int) -> list[tuple[bytes, str]]:
    """``count`` pictures, fetched concurrently; the first failure is raised."""
    results: list = [None] * count

    def fetch(index: int) -> None:
        try:
            results[index] = get_image(index)
        except UpstreamError as exc:
            results[index] = exc

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, UpstreamError):
            raise result
    return results


_client = None
_client_lock = threading.Lock()


def rekognition():
    """The Rekognition client, made once (boto3 clients are thread-safe)."""
    global _client
    with _client_lock:
        if _client is None:
            session = boto3.session.Session()
            region = session.region_name or DEFAULT_REGION
            _client = session.client("rekognition", region_name=region)
        return _client


def detect_labels(image: bytes) -> list[tuple[str, float]]:
    try:
        answer = rekognition().detect_labels(Image={"Bytes": image})
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise UpstreamError("500 Internal Server Error", f"Rekognition: {exc}") from exc
    return [(label["Name"], label["Confidence"]) for label in answer.get("Labels", [])]


PAGE_HEAD = (
    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Vision</title></head>\n<body>\n"
)


def app(environ, start_response):
    """GET /: two pictures and what Rekognition sees in them."""
    if environ.get("PATH_INFO", "/") != "/":
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found\n"]
    parts = [PAGE_HEAD]
    try:
        for image, media_type in get_images(IMAGE_COUNT):
            labels = detect_labels(image)
            data = base64.b64encode(image).decode("ascii")
            parts.append(f'<img src="data:{media_type};base64,{data}"> <br>\n')
            for name, confidence in labels:
                parts.append(f"{html.escape(name)} %{confidence:.2f} <br>\n")
        status = "200 OK"
    except UpstreamError as exc:
        status = exc.status
        parts = [PAGE_HEAD, f"<p>{html.escape(status)}: {html.escape(str(exc))}</p>\n"]
    parts.append("</body></html>\n")
    body = "".join(parts).encode("utf-8")
    start_response(status, [
        ("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
    ])
    return [body]


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """wsgiref, one thread per request (the Go server serves requests concurrently too)."""

    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        sys.stderr.write(f"vision: {self.address_string()} {format % args}\n")


def main() -> int:
    host = os.environ.get("HOST", "127.0.0.1")
    try:
        port = int(os.environ.get("PORT", "8000"))
    except ValueError:
        sys.stderr.write(f"vision: PORT must be a number, not {os.environ['PORT']!r}\n")
        return 2
    server = make_server(host, port, app, server_class=ThreadingWSGIServer,
                         handler_class=QuietHandler)
    # SIGTERM (docker stop, kill) ends the program normally, so atexit handlers run
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    bound_host, bound_port = server.server_address[:2]
    print(f"vision: serving on http://{bound_host}:{bound_port}/ "
          f"(pictures from {picsum_url()})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
