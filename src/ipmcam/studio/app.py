"""The studio's web app: the control page, the MJPEG stream, the OBS overlay and the JSON API.

Routes (all JSON errors are ``{"error": "..."}`` with a 4xx status; a bad
request never touches the running pipeline):

- ``GET /`` the control page; ``GET /overlay`` output only, full bleed, for an OBS Browser Source
- ``GET /stream.mjpg`` the published frames as MJPEG; ``GET /snapshot.png`` the newest one as a PNG download
- ``GET /api/state``; ``POST /api/settings`` (JSON); ``POST /api/reference`` (multipart field ``file``);
  ``POST /api/preset/{name}``; ``GET /api/presets``; ``GET /api/presets/{name}.jpg`` (a thumbnail)
"""
from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

import anyio
import cv2
import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from ipmcam.errors import BadReferenceError, UserError
from ipmcam.realtime import presets
from ipmcam.studio.guard import Guard
from ipmcam.studio.hub import FrameHub, Jpeg, encode_jpeg
from ipmcam.studio.remote import RemoteControls, parse_settings

STATIC = Path(__file__).resolve().parent / "static"
MAX_UPLOAD = 20 * 1024 * 1024  #: bytes of one reference photo
MAX_PIXELS = 64_000_000  #: a larger photo is refused before it is decoded
UPLOAD_FORMATS = {"JPEG", "PNG", "WEBP", "BMP"}
MAX_BODY = 64 * 1024  #: any other request body (settings JSON)
BOUNDARY = "ipmcamframe"
THUMBNAIL = 160  #: px, the gallery's preset pictures
_WAIT = 0.5  # seconds a stream waits for a frame before checking whether its viewer left


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


def decode_upload(data: bytes) -> np.ndarray:
    """An uploaded photo as BGR pixels: only the image formats above, only up to MAX_PIXELS.

    The header is read first (Pillow reads no pixels to tell the format and
    size), so a file that is no photo, or a small file that would inflate to
    gigabytes, is turned away before anything is decoded.
    """
    try:
        with Image.open(io.BytesIO(data)) as header:
            kind, (width, height) = header.format, header.size
    except Image.DecompressionBombError:
        raise HTTPException(413, f"the image is too large: at most {MAX_PIXELS // 1_000_000} megapixels") from None
    except (OSError, ValueError):
        raise HTTPException(415, "not an image: send a JPEG, PNG, WebP or BMP photo") from None
    if kind not in UPLOAD_FORMATS:
        raise HTTPException(415, f"{kind} images are not taken: send a JPEG, PNG, WebP or BMP photo")
    if width * height > MAX_PIXELS:
        raise HTTPException(413, f"{width}x{height} is too large: at most {MAX_PIXELS // 1_000_000} megapixels")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # applies EXIF orientation
    if image is None:
        raise HTTPException(415, "the image cannot be decoded")
    return image


def upload_label(filename: str | None) -> str:
    """What the page calls an uploaded photo: its base name, printable, at most 60 characters.

    Only a label: no path is ever made from what the client sends.
    """
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    name = re.sub(r"[^\w .()+-]", "_", name)[:60].strip()
    return name or "uploaded photo"


class Thumbnails:
    """JPEG pictures of the presets on the bundled face, made once per preset file version."""

    def __init__(self, size: int = THUMBNAIL) -> None:
        self.size = size
        self._cache: dict[str, tuple[float, bytes]] = {}
        self._lock = threading.Lock()  # one at a time: each uses the CPU the video needs

    def get(self, name: str) -> bytes:
        mtime = (presets.PRESET_DIR / f"{name}.toml").stat().st_mtime
        with self._lock:
            cached = self._cache.get(name)
            if cached is None or cached[0] != mtime:
                picture = cv2.resize(presets.portrait(presets.load(name)), (self.size, self.size),
                                     interpolation=cv2.INTER_AREA)
                cached = self._cache[name] = (mtime, encode_jpeg(picture, 88))
        return cached[1]


def part(jpeg: Jpeg) -> bytes:
    """One multipart/x-mixed-replace part; ``X-Frame`` numbers it (the benchmark matches it to its publish time)."""
    head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg.data)}\r\n"
            f"X-Frame: {jpeg.seq}\r\n\r\n")
    return head.encode("ascii") + jpeg.data + b"\r\n"


def create_app(remote: RemoteControls, hub: FrameHub, token: str | None = None,
               loopback_only: bool = True) -> ASGIApp:
    """The web app over a running pipeline's controls and frames; see the module docstring for the routes."""
    thumbnails = Thumbnails()

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / ("overlay.html" if request.url.path == "/overlay" else "index.html"))

    async def stream(request: Request) -> Response:
        async def parts() -> AsyncIterator[bytes]:
            seq = 0
            with hub.watch():
                while True:
                    jpeg = await anyio.to_thread.run_sync(hub.next_jpeg, seq, _WAIT, abandon_on_cancel=True)
                    if jpeg is None:
                        if hub.closed or await request.is_disconnected():
                            return
                        continue
                    seq = jpeg.seq
                    yield part(jpeg)

        return StreamingResponse(parts(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}")

    async def snapshot(_: Request) -> Response:
        frame = hub.latest()
        if frame is None:
            return error(503, "no frame yet")
        ok, png = await run_in_threadpool(cv2.imencode, ".png", frame)
        if not ok:
            return error(500, "cannot encode the frame as PNG")
        name = time.strftime("ipmcam-%Y%m%d-%H%M%S.png")
        return Response(png.tobytes(), media_type="image/png",
                        headers={"content-disposition": f'attachment; filename="{name}"'})

    async def state(_: Request) -> Response:
        return JSONResponse(remote.state())

    async def settings(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return error(415, "send the settings as application/json")
        try:
            body = await request.json()
        except ValueError:
            return error(400, "the body is not valid JSON")
        try:
            remote.update(parse_settings(body))
        except UserError as exc:
            return error(400, str(exc))
        return JSONResponse(remote.state())

    async def reference(request: Request) -> Response:
        try:
            async with request.form(max_files=1, max_fields=4) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    return error(400, "expected a multipart form with the photo in field 'file'")
                data = await upload.read(MAX_UPLOAD + 1)
                label = upload_label(upload.filename)
        except MultiPartException as exc:
            return error(400, f"expected a multipart form with the photo in field 'file' ({exc.message})")
        if len(data) > MAX_UPLOAD:
            return error(413, f"the photo is over {MAX_UPLOAD // (1024 * 1024)} MB")
        image = await run_in_threadpool(decode_upload, data)
        try:
            await run_in_threadpool(remote.use_image, image, label)
        except BadReferenceError as exc:
            return error(422, str(exc).replace("reference: ", f"{label}: ", 1))
        return JSONResponse(remote.state())

    async def preset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in presets.names():
            return error(404, f"unknown preset {name!r}: choose one of {', '.join(presets.names())}")
        try:
            await run_in_threadpool(remote.use_preset, name)
        except UserError as exc:
            return error(422, str(exc))
        return JSONResponse(remote.state())

    async def preset_list(_: Request) -> Response:
        return JSONResponse([{"name": p.name, "description": p.description} for p in presets.available().values()])

    async def thumbnail(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in presets.names():
            return error(404, f"unknown preset {name!r}: choose one of {', '.join(presets.names())}")
        return Response(await run_in_threadpool(thumbnails.get, name), media_type="image/jpeg")

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    routes = [
        Route("/", page), Route("/overlay", page),
        Route("/stream.mjpg", stream), Route("/snapshot.png", snapshot),
        Route("/api/state", state),
        Route("/api/settings", settings, methods=["POST"]),
        Route("/api/reference", reference, methods=["POST"], max_body_size=MAX_UPLOAD + MAX_BODY),
        Route("/api/preset/{name}", preset, methods=["POST"]),
        Route("/api/presets", preset_list),
        Route("/api/presets/{name}.jpg", thumbnail),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error}, max_body_size=MAX_BODY)
    # Outermost, so its refusals (and the headers it adds) are what a client gets, whatever is inside.
    return Guard(app, token=token, loopback_only=loopback_only, max_body=MAX_UPLOAD + MAX_BODY)
