"""Frame sources: cameras (newest frame wins), video files (every frame, in order), images.

Reading happens in a capture thread so decoding overlaps processing. A live
camera keeps a one-slot mailbox: when processing is slower than the camera,
stale frames are dropped (and counted) rather than queued, so latency stays
bounded. A file keeps a small bounded queue: no frame is ever skipped.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from realtime.errors import SourceError

log = logging.getLogger("ipmcam")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class Frame:
    """One captured frame: BGR uint8 pixels, its order, media time and capture clock."""

    image: np.ndarray
    index: int
    timestamp: float  # seconds of media time (frame index / fps for files)
    captured_at: float  # time.perf_counter() when it was read, for end-to-end latency


class Source(ABC):
    """An iterable of frames with a nominal fps; ``live`` sources drop stale frames."""

    live: bool = False
    fps: float = 30.0
    dropped: int = 0

    @abstractmethod
    def __iter__(self) -> Iterator[Frame | None]:
        """Frames in order; a live source yields None when no frame came in time (a stall)."""

    def close(self) -> None:
        """Stop reading and release the device or file."""


def as_bgr(image: Any) -> np.ndarray | None:
    """A frame as contiguous HxWx3 uint8 BGR, or None when it cannot be one.

    Cameras and decoders do hand out odd frames: grey, with alpha, 16-bit,
    empty. The pipeline converts what it can and skips the rest.
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        return None
    if image.shape[0] < 2 or image.shape[1] < 2:
        return None
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.number):
            return None
        scale = 255.0 if np.nanmax(image) <= 1.0 else 1.0
        image = np.clip(np.nan_to_num(image.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] != 3:
        return None
    return np.ascontiguousarray(image)


def open_video(path: str | Path) -> Any:
    """An opened cv2.VideoCapture for a video file; a one-line SourceError when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"cannot open video {path}: file not found")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SourceError(f"cannot open video {path}: not a readable video")
    return capture


def video_frames(path: str | Path, every: int = 1, limit: int | None = None, start: int = 0) -> Iterator[np.ndarray]:
    """Every ``every``-th frame of a video from frame ``start``, at most ``limit``, decoded in this thread."""
    capture = open_video(path)
    if start:
        capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    taken = index = 0
    try:
        while limit is None or taken < limit:
            ok, image = capture.read()
            if not ok:
                return
            if index % every == 0:
                taken += 1
                yield image
            index += 1
    finally:
        capture.release()


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"cannot read image {path}: not found or not an image")
    return image


class ImageSource(Source):
    """A single still image as a one-frame source."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.image = _read_image(self.path)

    def __iter__(self) -> Iterator[Frame]:
        yield Frame(self.image.copy(), 0, 0.0, time.perf_counter())


CaptureFactory = Callable[[], Any]  # returns an object with cv2.VideoCapture's read/get/release/isOpened


class _CaptureThread(threading.Thread):
    """Reads frames from a capture object and hands them to ``deliver`` until stopped.

    When a read fails, ``recover`` decides: it returns a new capture object to
    go on with (a reconnected camera), or None to end (the end of a file).
    """

    def __init__(self, capture: Any, deliver: Callable[[Frame | None], None], fps: float,
                 recover: Callable[[threading.Event], Any] | None = None) -> None:
        super().__init__(daemon=True, name="ipmcam-capture")
        self.capture = capture
        self.deliver = deliver
        self.fps = fps
        self.recover = recover
        self.stop_event = threading.Event()

    def run(self) -> None:
        index = 0
        try:
            while not self.stop_event.is_set():
                ok, image = self.capture.read()
                if not ok or image is None or image.size == 0:
                    self.capture = self.recover(self.stop_event) if self.recover else None
                    if self.capture is None:
                        break
                    continue
                self.deliver(Frame(image, index, index / self.fps, time.perf_counter()))
                index += 1
        finally:
            self.deliver(None)


class VideoFileSource(Source):
    """Every frame of a video file, in order, decoded ahead in a capture thread."""

    def __init__(self, path: str | Path, queue_size: int = 8) -> None:
        self.path = Path(path)
        self._capture = open_video(self.path)
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS)) or 30.0
        self.frame_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.size = (int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self._queue: queue.Queue[Frame | None] = queue.Queue(maxsize=queue_size)
        self._thread: _CaptureThread | None = None

    def _put(self, frame: Frame | None) -> None:
        # Blocking put keeps every frame; the timeout lets close() end a reader nobody drains.
        while True:
            try:
                self._queue.put(frame, timeout=0.1)
                return
            except queue.Full:
                if self._thread is None or self._thread.stop_event.is_set():
                    return

    def __iter__(self) -> Iterator[Frame]:
        self._thread = _CaptureThread(self._capture, self._put, self.fps)
        self._thread.start()
        while True:
            frame = self._queue.get()
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        if self._thread is not None:
            self._thread.stop_event.set()
            self._thread.join(timeout=1.0)
        self._capture.release()


class CameraSource(Source):
    """A live camera (index or stream URL): the newest frame wins, stale ones are dropped.

    A camera that stops delivering (unplugged, driver hiccup) is reopened with
    exponential backoff; meanwhile iteration yields None every ``stall_timeout``
    seconds so the pipeline can keep its sinks fed. ``capture_factory`` opens
    the device; tests pass a fake one.
    """

    live = True

    def __init__(self, device: int | str, width: int | None = None, height: int | None = None,
                 fps: float | None = None, capture_factory: CaptureFactory | None = None,
                 stall_timeout: float = 0.5, max_backoff: float = 4.0) -> None:
        self.device = device
        self._factory = capture_factory or (lambda: cv2.VideoCapture(device))
        self._settings = (width, height, fps)
        self.stall_timeout = stall_timeout
        self.max_backoff = max_backoff
        self._capture = self._open()
        if self._capture is None:
            raise SourceError(f"cannot open camera {device!r}: no such device, or it is in use by another program")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or fps or 30.0)
        self._latest: Frame | None = None
        self._ended = False
        self._cond = threading.Condition()
        self._thread = _CaptureThread(self._capture, self._deliver, self.fps, recover=self._reconnect)
        self.dropped = 0
        self.reconnects = 0

    def _open(self) -> Any:
        capture = self._factory()
        if not capture.isOpened():
            capture.release()
            return None
        width, height, fps = self._settings
        if width and height:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            capture.set(cv2.CAP_PROP_FPS, fps)
        return capture

    def _reconnect(self, stop: threading.Event) -> Any:
        """Reopen the camera, waiting 0.25 s, 0.5 s, 1 s ... (at most ``max_backoff``) between tries."""
        self._thread.capture.release()
        delay = 0.25
        log.warning("camera %r stopped delivering frames; reconnecting", self.device)
        while not stop.wait(delay):
            capture = self._open()
            if capture is not None:
                self.reconnects += 1
                log.warning("camera %r is back", self.device)
                return capture
            delay = min(delay * 2, self.max_backoff)
        return None

    def _deliver(self, frame: Frame | None) -> None:
        with self._cond:
            if frame is None:
                self._ended = True
            else:
                if self._latest is not None:
                    self.dropped += 1
                self._latest = frame
            self._cond.notify_all()

    def read_latest(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet taken, waiting up to ``timeout``; None when the camera ended or timed out."""
        with self._cond:
            self._cond.wait_for(lambda: self._latest is not None or self._ended, timeout=timeout)
            frame, self._latest = self._latest, None
            return frame

    def __iter__(self) -> Iterator[Frame | None]:
        if not self._thread.is_alive():
            self._thread.start()
        while True:
            frame = self.read_latest(self.stall_timeout)
            if frame is None and self._ended:
                return
            yield frame

    def close(self) -> None:
        self._thread.stop_event.set()
        if self._thread.is_alive():
            self._thread.join(timeout=0.5)
        if self._thread.capture is not None:
            self._thread.capture.release()


def open_source(spec: str | int, **camera_options: Any) -> Source:
    """A source from a CLI argument: a camera index or stream URL, an image file, or a video file."""
    if isinstance(spec, int) or str(spec).isdigit():
        return CameraSource(int(spec), **camera_options)
    if "://" in str(spec):
        return CameraSource(str(spec), **camera_options)
    path = Path(spec)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path)
    return VideoFileSource(path)
