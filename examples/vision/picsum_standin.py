"""A local stand-in for picsum.photos: generated landscape pictures behind picsum's URLs.

Like picsum, ``GET /WIDTH/HEIGHT`` (or ``/SIZE`` for a square; ``?random``, ``?grayscale`` and
``?blur`` accepted) answers ``302 Found`` with the address of one particular picture,
``/id/N/WIDTH/HEIGHT.jpg?hmac=...``, and that address serves the image. ``/seed/WORD/W/H``
redirects to the same picture for the same word. Pictures are drawn here (sky, sun, ridges),
seeded by their id: JPEG through Pillow when it is installed, else PNG (``.png`` always works)
from a small encoder on ``zlib``. Every request is recorded with its headers, so a test can see
the ``X-Amzn-Trace-Id`` a traced client sent.

    python examples/vision/picsum_standin.py [--port 8001]      # then PICSUM_URL=http://127.0.0.1:8001
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import random
import re
import struct
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_SIDE = 5000  # picsum's limit
PICTURES = 64  # ids 0..63, like picsum's catalogue but smaller
_CACHE_SIZE = 32

try:  # JPEG needs Pillow; PNG never does
    from PIL import Image  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    Image = None


# -- pictures --------------------------------------------------------------------------------
_PALETTES = (  # (sky top, sky horizon, sun, (ridges from far to near))
    ((38, 84, 160), (250, 196, 140), (255, 236, 170),
     ((120, 110, 150), (80, 90, 120), (40, 60, 70))),
    ((20, 110, 200), (170, 215, 240), (255, 250, 220),
     ((110, 150, 170), (60, 120, 90), (30, 80, 50))),
    ((60, 30, 90), (240, 120, 90), (255, 210, 120),
     ((140, 70, 90), (90, 50, 80), (40, 30, 50))),
    ((10, 20, 50), (60, 80, 130), (235, 235, 255),
     ((50, 60, 90), (30, 40, 65), (15, 20, 35))),
    ((90, 160, 210), (230, 240, 245), (255, 255, 235),
     ((170, 180, 190), (120, 140, 150), (210, 220, 225))),
)


def _mix(a, b, t):
    return tuple(int(a[i] + (b[i] - a[i]) * t) for i in range(3))


def render_rgb(picture: int, width: int, height: int, gray: bool = False) -> bytes:
    """Raw RGB rows of picture ``picture``: a sky, a sun and three ridges, seeded by the id."""
    rng = random.Random(picture * 7919 + 17)
    top, horizon, sun, ridge_colours = _PALETTES[picture % len(_PALETTES)]
    # ridge heights per column, far (high) to near (low); owner value 2+layer
    ridges = []
    for layer in range(3):
        base = 0.45 + 0.15 * layer + rng.uniform(-0.05, 0.05)
        waves = [(rng.uniform(0.02, 0.08) / (k + 1), rng.uniform(1, 4) * (k + 1),
                  rng.uniform(0, 2 * math.pi)) for k in range(3)]
        heights = []
        for x in range(width):
            u = x / max(width - 1, 1)
            level = base + sum(a * math.sin(2 * math.pi * f * u + p) for a, f, p in waves)
            heights.append(min(height, max(0, int(level * height))))
        ridges.append(heights)
    starts: list[list[tuple[int, int]]] = [[] for _ in range(height + 1)]
    for layer, heights in enumerate(ridges):
        for x, y in enumerate(heights):
            starts[y].append((x, layer))
    sun_x, sun_y = rng.uniform(0.2, 0.8) * width, rng.uniform(0.15, 0.35) * height
    sun_r = min(width, height) * rng.uniform(0.06, 0.1)

    owner = bytearray(width)  # what covers each column at this row: 0 sky, 1 sun, 2+ ridge
    out = bytearray(width * height * 3)
    for y in range(height):
        for x, layer in starts[y]:
            if owner[x] < 2 + layer:  # a nearer ridge hides a farther one
                owner[x] = 2 + layer
        row = owner
        dy = y + 0.5 - sun_y
        if abs(dy) < sun_r:
            half = math.sqrt(sun_r * sun_r - dy * dy)
            lo, hi = max(0, int(sun_x - half)), min(width, int(sun_x + half) + 1)
            row = bytearray(owner)
            span = row[lo:hi]
            row[lo:hi] = span.replace(b"\x00", b"\x01")
        colours = [_mix(top, horizon, min(1.0, y / (0.6 * height))), sun]
        for layer, colour in enumerate(ridge_colours):
            colours.append(_mix(colour, (0, 0, 0), 0.35 * y / height * (layer + 1) / 3))
        if gray:
            colours = [((299 * r + 587 * g + 114 * b) // 1000,) * 3 for r, g, b in colours]
        offset = y * width * 3
        for channel in range(3):
            table = bytes(colours[i][channel] if i < len(colours) else 0 for i in range(256))
            out[offset + channel:offset + width * 3:3] = row.translate(table)
    return bytes(out)


def box_blur(rgb: bytes, width: int, height: int, radius: int) -> bytes:
    """A cheap horizontal blur for ``?blur`` (picsum's is gaussian; this stands in for it)."""
    if radius <= 0:
        return rgb
    out = bytearray(len(rgb))
    stride = width * 3
    for y in range(height):
        row = rgb[y * stride:(y + 1) * stride]
        for c in range(3):
            vals = row[c::3]
            acc = [0]
            for v in vals:
                acc.append(acc[-1] + v)
            blurred = bytes(
                (acc[min(width, x + radius + 1)] - acc[max(0, x - radius)])
                // (min(width, x + radius + 1) - max(0, x - radius))
                for x in range(width)
            )
            out[y * stride + c:(y + 1) * stride:3] = blurred
    return bytes(out)


def encode_png(rgb: bytes, width: int, height: int) -> bytes:
    """An 8-bit RGB PNG: signature, IHDR, one IDAT (filter 0 rows, zlib), IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF
        )

    stride = width * 3
    raw = b"".join(b"\x00" + rgb[y * stride:(y + 1) * stride] for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def _pillow(kind: str, **options):
    def encode(rgb: bytes, width: int, height: int) -> bytes:
        buf = io.BytesIO()
        Image.frombytes("RGB", (width, height), rgb).save(buf, kind, **options)
        return buf.getvalue()

    return encode


ENCODERS = {"png": encode_png, "jpg": _pillow("JPEG", quality=85), "webp": _pillow("WEBP")}


def default_extension() -> str:
    return "jpg" if Image is not None else "png"


class Pictures:
    """Encoded pictures, with a small cache (the same id and size come back often)."""

    def __init__(self):
        self._cache: dict[tuple, bytes] = {}
        self._lock = threading.Lock()

    def get(self, picture: int, width: int, height: int, ext: str, gray: bool, blur: int):
        key = (picture, width, height, ext, gray, blur)
        with self._lock:
            data = self._cache.get(key)
        if data is None:
            rgb = box_blur(render_rgb(picture, width, height, gray), width, height, blur)
            data = ENCODERS[ext](rgb, width, height)
            with self._lock:
                if len(self._cache) >= _CACHE_SIZE:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = data
        return data


# -- the server ------------------------------------------------------------------------------
_SIZE = r"(\d+)(?:/(\d+))?/?"
_RANDOM = re.compile(rf"^/{_SIZE}$")
_SEED = re.compile(rf"^/seed/([^/]+)/{_SIZE}$")
_IMAGE = re.compile(r"^/id/(\d+)/(\d+)/(\d+)(?:\.(jpg|jpeg|png|webp))?/?$")


class Handler(BaseHTTPRequestHandler):
    server_version = "picsum-standin/1"
    protocol_version = "HTTP/1.1"  # keep-alive, as the real service

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write(f"picsum-standin: {self.address_string()} {fmt % args}\n")

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head=False):
        self.server.record(self)
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        gray = "grayscale" in query
        blur = 0
        if "blur" in query:
            value = (query["blur"] or [""])[0]
            blur = int(value) if value.isdigit() and 1 <= int(value) <= 10 else 1
        if match := _IMAGE.match(url.path):
            picture, width, height = (int(g) for g in match.group(1, 2, 3))
            ext = {"jpeg": "jpg", None: "jpg"}.get(match.group(4), match.group(4))
            if ext in ("jpg", "webp") and Image is None:
                ext = "png"  # without Pillow, every picture is a PNG
            if picture >= PICTURES:
                return self._text(404, "Image does not exist\n", head)
            if not self._size_ok(width, height, head):
                return
            kind = "webp" if ext == "webp" else ("png" if ext == "png" else "jpeg")
            data = self.server.pictures.get(picture, width, height, ext, gray, blur)
            self.send_response(200)
            self.send_header("Content-Type", f"image/{kind}")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "public, max-age=2592000, stale-while-revalidate=60")
            self.send_header("Picsum-ID", str(picture))
            self.end_headers()
            if not head:
                self.wfile.write(data)
            return
        if (match := _SEED.match(url.path)) is not None:
            seed = match.group(1)
            picture = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big") % PICTURES
            width, height = match.group(2, 3)
        elif (match := _RANDOM.match(url.path)) is not None:
            picture = self.server.rng.randrange(PICTURES)
            width, height = match.group(1, 2)
        else:
            return self._text(404, "Not Found\n", head)
        width = int(width)
        height = int(height) if height is not None else width
        if not self._size_ok(width, height, head):
            return
        location = self._base() + f"/id/{picture}/{width}/{height}.{default_extension()}"
        extras = [
            k if not v[0] else f"{k}={v[0]}"
            for k, v in query.items() if k in ("grayscale", "blur")
        ]
        hmac = hashlib.sha256(location.encode()).hexdigest()[:43]
        location += "?" + "&".join([*extras, f"hmac={hmac}"])
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Cache-Control", "no-cache, no-store, must-revalidate")
        body = f"Found. Redirecting to {location}\n".encode()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _base(self) -> str:
        host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
        return f"http://{host}"

    def _size_ok(self, width, height, head) -> bool:
        if 1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE:
            return True
        self._text(400, f"Invalid size: width and height must be 1 to {MAX_SIDE}\n", head)
        return False

    def _text(self, status, text, head):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


class PicsumStandin(ThreadingHTTPServer):
    """The stand-in server; ``requests`` holds every request received (method, path, headers)."""

    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, host: str = "127.0.0.1", port: int = 0, verbose: bool = False,
                 seed: int | None = None):
        super().__init__((host, port), Handler)
        self.verbose = verbose
        self.rng = random.Random(seed)
        self.pictures = Pictures()
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def record(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append({
                "time": time.time(),
                "method": handler.command,
                "path": handler.path,
                "headers": dict(handler.headers.items()),
            })

    def start(self) -> PicsumStandin:
        """Serve from a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="picsum-standin",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
            self._thread = None
        self.server_close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="A local stand-in for picsum.photos.")
    p.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    p.add_argument("--port", type=int, default=8001, help="default: 8001 (0: any free port)")
    p.add_argument("--quiet", action="store_true", help="no access log")
    args = p.parse_args(argv)
    server = PicsumStandin(args.host, args.port, verbose=not args.quiet)
    print(f"picsum stand-in on {server.url} (PICSUM_URL={server.url})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
