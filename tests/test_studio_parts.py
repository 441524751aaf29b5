"""The studio's pieces on their own: the frame hub, the guard, settings and upload checks, the page's files."""
from __future__ import annotations

import io
import re
import struct
import threading
import zlib
from typing import Any

import anyio
import cv2
import httpx
import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ipmcam.errors import UserError
from ipmcam.studio.app import STATIC, decode_upload, upload_label
from ipmcam.studio.bench import iter_parts, letterbox
from ipmcam.studio.guard import COOKIE, Guard, check_exposure, is_loopback
from ipmcam.studio.hub import FrameHub
from ipmcam.studio.remote import engine_info, parse_settings

# --------------------------------------------------------------------------- hub


def frame(value: int) -> np.ndarray:
    return np.full((48, 64, 3), value, np.uint8)


def test_hub_encodes_only_when_asked_and_once_per_frame() -> None:
    hub = FrameHub()
    for value in range(5):
        hub.write(frame(value))
    assert hub.encoded == 0 and hub.frames == 5
    assert hub.next_jpeg(0, timeout=1) is None and hub.encoded == 0  # nobody watches: nothing to encode
    with hub.watch(), hub.watch():
        first = hub.next_jpeg(0, timeout=1)
        again = hub.next_jpeg(0, timeout=1)
        assert first is again and first.seq == 5 and hub.encoded == 1  # a second viewer reuses the bytes
        assert cv2.imdecode(np.frombuffer(first.data, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
        assert hub.next_jpeg(5, timeout=0.05) is None  # nothing newer


def test_hub_wakes_a_waiting_viewer_and_ends_streams_on_close() -> None:
    hub = FrameHub()
    got: list[object] = []
    with hub.watch():
        waiter = threading.Thread(target=lambda: got.append(hub.next_jpeg(0, timeout=30)))
        waiter.start()
        hub.write(frame(9))
        waiter.join(timeout=30)
        assert got[0].seq == 1  # type: ignore[attr-defined]
        hub.close()
        assert hub.closed and hub.next_jpeg(1, timeout=30) is None


def test_hub_counts_viewers_and_rate() -> None:
    now = [100.0]
    hub = FrameHub(clock=lambda: now[0])
    with hub.watch(), hub.watch():
        assert hub.viewers == 2
    assert hub.viewers == 0
    assert hub.fps == 0.0
    for value in range(10):  # one frame every 40 ms
        hub.write(frame(value))
        now[0] += 0.04
    assert hub.fps == pytest.approx(25.0) and hub.latest() is not None
    now[0] += 2.5  # no frame for 2.5 s: the stream has stalled
    assert hub.fps == 0.0


# --------------------------------------------------------------------------- settings, uploads


def test_parse_settings_takes_any_subset() -> None:
    assert parse_settings({"intensity": 0, "strengths": {"lips": 0.5}, "split": True}) == \
        {"intensity": 0.0, "strengths": {"lips": 0.5}, "split": True}
    assert parse_settings({}) == {}
    with pytest.raises(UserError, match="intensity must be a number from 0 to 1"):
        parse_settings({"intensity": float("nan")})
    with pytest.raises(UserError, match="strength of eyes must be"):
        parse_settings({"strengths": {"eyes": -0.1}})


def test_engine_info_from_the_engine_name() -> None:
    assert engine_info("ipmnet/onnxruntime", "int8") == {"engine": "ipmnet", "backend": "onnxruntime",
                                                        "precision": "int8"}
    assert engine_info("classic", "fp16") == {"engine": "classic", "backend": "none", "precision": "fp32"}


@pytest.mark.parametrize(("given", "label"), [
    ("look.jpg", "look.jpg"), ("../../etc/passwd", "passwd"), ("C:\\Users\\me\\her.png", "her.png"),
    ("", "uploaded photo"), (None, "uploaded photo"), ("a<script>.png", "a_script_.png"), ("x" * 99, "x" * 60),
])
def test_upload_label_is_a_base_name(given: str | None, label: str) -> None:
    assert upload_label(given) == label


def png_header(width: int, height: int) -> bytes:
    """A PNG claiming ``width`` x ``height`` pixels, with one tiny compressed row: what a decompression bomb sends."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decode_upload_reads_the_header_first() -> None:
    with pytest.raises(HTTPException) as huge:
        decode_upload(png_header(9_000, 8_000))
    assert huge.value.status_code == 413 and "at most 64 megapixels" in huge.value.detail
    with pytest.raises(HTTPException) as bomb:
        decode_upload(png_header(100_000, 100_000))
    assert bomb.value.status_code == 413
    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), (10, 20, 200)).save(buffer, "WEBP")
    image = decode_upload(buffer.getvalue())
    assert image.shape == (20, 30, 3) and image[0, 0, 0] > 150 > image[0, 0, 2]  # blue, in BGR order


# --------------------------------------------------------------------------- guard


class Guarded:
    """Requests to a one-route app behind the ``Guard`` (in process, over httpx's ASGI transport)."""

    def __init__(self, token: str | None, loopback_only: bool = True) -> None:
        async def hello(request: Request) -> PlainTextResponse:
            return PlainTextResponse("hello")

        self.app = Guard(Starlette(routes=[Route("/", hello, methods=["GET", "POST"])]), token=token,
                         loopback_only=loopback_only, max_body=2 * 1048576)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                         base_url="http://127.0.0.1:8000") as client:
                return await client.request(method, path, **kwargs)

        return anyio.run(send)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


def test_a_token_is_needed_in_one_of_three_places() -> None:
    client = Guarded("s3cret-token", loopback_only=False)
    missing = client.get("/")
    assert missing.status_code == 401 and "missing or wrong token" in missing.json()["error"]
    assert client.get("/", headers={"authorization": "Bearer wrong-token"}).status_code == 401
    assert client.get("/", headers={"authorization": "Bearer s3cret-token"}).text == "hello"
    first = client.get("/?token=s3cret-token")
    assert first.text == "hello"
    assert "HttpOnly" in first.headers["set-cookie"] and "SameSite=Strict" in first.headers["set-cookie"]
    assert client.get("/", headers={"cookie": f"{COOKIE}=s3cret-token"}).text == "hello"


def test_guard_refuses_other_hosts_origins_and_big_bodies() -> None:
    client = Guarded(None)
    assert client.get("/").headers["x-frame-options"] == "DENY"
    assert client.get("/", headers={"host": "localhost:8000"}).status_code == 200
    assert client.get("/", headers={"host": "[::1]:8000"}).status_code == 200
    assert client.get("/", headers={"host": "rebound.example:8000"}).status_code == 403
    assert client.post("/", headers={"origin": "http://127.0.0.1:8000"}).status_code == 200
    assert client.post("/", headers={"origin": "https://evil.example"}).status_code == 403
    big = client.post("/", content=b"x" * 3 * 1048576)
    assert big.status_code == 413 and big.json() == {"error": "the request is over 2 MB"}


def test_exposure_rules() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.3.4.5"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.4", "::", "example.com"))
    check_exposure("127.0.0.1", None)
    check_exposure("0.0.0.0", "long-enough-token")
    with pytest.raises(UserError, match="give a --token too"):
        check_exposure("0.0.0.0", None)
    with pytest.raises(UserError, match="at least 8 characters"):
        check_exposure("0.0.0.0", "short")


# --------------------------------------------------------------------------- the page's files


def test_page_works_offline() -> None:
    """Nothing is fetched from elsewhere: no absolute URLs in the page, its styles or its scripts."""
    files = sorted(STATIC.iterdir())
    assert {f.name for f in files} >= {"index.html", "overlay.html", "studio.js", "studio.css", "overlay.js"}
    for path in files:
        assert not re.search(r"(https?:)?//[a-z0-9]", path.read_text()), path.name


# --------------------------------------------------------------------------- the benchmark's helpers


def test_iter_parts_reassembles_parts_split_anywhere() -> None:
    body = b"".join(b"--b\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\nX-Frame: %d\r\n\r\n%s\r\n"
                    % (len(p), i, p) for i, p in enumerate([b"abc", b"\r\n\r\n--", b"x" * 300], start=1))
    for step in (1, 7, len(body)):
        chunks = [body[i:i + step] for i in range(0, len(body), step)]
        parts = [(int(h["X-Frame"]), p) for h, p in iter_parts(chunks)]
        assert parts == [(1, b"abc"), (2, b"\r\n\r\n--"), (3, b"x" * 300)]


def test_letterbox_keeps_the_aspect() -> None:
    image = np.full((512, 512, 3), 200, np.uint8)
    boxed = letterbox(image, (640, 480))
    assert boxed.shape == (480, 640, 3)
    assert boxed[:, :80].max() == 0 and boxed[:, 80:560].min() == 200 and boxed[:, 560:].max() == 0
