"""Frame sources: cameras and streams (newest frame wins), video files (every frame, in order, or
played in real time like a camera), images.

Reading happens in a capture thread so decoding overlaps processing. A live
source keeps a one-slot mailbox: when processing is slower than the camera,
stale frames are dropped (and counted) rather than queued, so latency stays
bounded. A file being processed keeps a small bounded queue: no frame is
ever skipped.
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

from ipmcam.errors import SourceError
from ipmcam.media import IMAGE_SUFFIXES, open_video, read_image

log = logging.getLogger("ipmcam")

@dataclass
class Frame:
    """One captured frame: BGR uint8 pixels, its order, media time and capture clock."""

    image: np.ndarray
    index: int
    timestamp: float  # seconds of media time (frame index / fps for files)
    captured_at: float  # time.perf_counter() when it was read, for end-to-end latency
    handed_over: bool = False  # the source keeps no reference to ``image``: the pipeline may draw on it in place


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


class ImageSource(Source):
    """A single still image as a one-frame source.

    It is read at once (a bad file is refused before any work; OpenCV's JPEG
    decoder briefly needs twice the image's size, better spent before the
    models load) and handed over to the pipeline, which makes it up in place:
    a 6000x6000 photo (108 MB) is held once, not twice.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._image: np.ndarray | None = read_image(self.path)

    def __iter__(self) -> Iterator[Frame]:
        image, self._image = self._image, None
        yield Frame(image if image is not None else read_image(self.path), 0, 0.0, time.perf_counter(),
                    handed_over=True)


CaptureFactory = Callable[[], Any]  # returns an object with cv2.VideoCapture's read/get/release/isOpened


class _CaptureThread(threading.Thread):
    """Reads frames from a capture object and hands them to ``deliver`` until stopped.

    When a read fails, ``recover`` decides: it returns a new capture object to
    go on with (a reconnected camera), or None to end (the end of a file).
    """

    def __init__(self, capture: Any, deliver: Callable[[Frame | None], None], fps: float,
                 recover: Callable[[threading.Event], Any] | None = None,
                 pace: Callable[[int, threading.Event], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(daemon=True, name="ipmcam-capture")
        self.capture = capture
        self.deliver = deliver
        self.fps = fps
        self.recover = recover
        self.pace = pace  # waits until frame ``index`` is due (a file played at its own rate)
        self.clock = clock
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
                if self.pace is not None:
                    self.pace(index, self.stop_event)
                    if self.stop_event.is_set():
                        break
                self.deliver(Frame(image, index, index / self.fps, self.clock()))
                index += 1
        finally:
            self.deliver(None)


class VideoFileSource(Source):
    """Every frame of a video file, in order, decoded ahead in a capture thread."""

    def __init__(self, path: str | Path, queue_size: int = 8, start: int = 0, limit: int | None = None) -> None:
        self.path = Path(path)
        self._capture = open_video(self.path)
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS)) or 30.0
        total = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if start:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        self.frame_count = max(min(total - start, limit if limit is not None else total), 0)
        self._limit = limit
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
        taken = 0
        while self._limit is None or taken < self._limit:
            frame = self._queue.get()
            if frame is None:
                return
            taken += 1
            yield frame

    def close(self) -> None:
        if self._thread is not None:
            self._thread.stop_event.set()
            self._thread.join(timeout=1.0)
        self._capture.release()


class _NewestFrame(Source):
    """A live source's one-slot mailbox, filled by a capture thread: the newest frame wins.

    When processing is slower than the source, stale frames are dropped (and
    counted); while nothing comes, iteration yields None every
    ``stall_timeout`` seconds so the pipeline can keep its outputs fed.
    """

    live = True

    def __init__(self, stall_timeout: float) -> None:
        self.stall_timeout = stall_timeout
        self._latest: Frame | None = None
        self._ended = False
        self._cond = threading.Condition()
        self._thread: _CaptureThread | None = None
        self.dropped = 0

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
        """The newest frame not yet taken, waiting up to ``timeout``; None when the source ended or timed out."""
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
            self._thread.join(timeout=5.0)  # returns as soon as the thread's current read ends
        if self._thread.capture is not None:
            self._thread.capture.release()


def plausible_fps(reported: float, fallback: float) -> float:
    """A live source's frame rate, or ``fallback`` where it reports none or nonsense (streams say 0 or 90000).

    Live output is published at this rate by the clock, so a wrong one would
    repeat each frame hundreds of times.
    """
    return float(reported) if 1.0 <= reported <= 240.0 else float(fallback)


#: above this many pixels a camera is asked for MJPG: many USB webcams send raw YUYV at 720p at only ~10 fps
MJPG_ABOVE = 640 * 480


def configure_camera(capture: Any, width: int | None, height: int | None, fps: float | None) -> None:
    """Ask a local camera for what keeps it fast and fresh (set before the size, as V4L2 wants).

    One frame of driver buffer: the frame read is the one just taken, not one
    from several frames ago. MJPG above 640x480: OpenCV otherwise prefers raw
    YUYV, which USB 2 cannot carry at 720p and 30 fps.
    """
    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    if width and height and width * height > MJPG_ABOVE:
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
    if width and height:
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    if fps:
        capture.set(cv2.CAP_PROP_FPS, fps)


def delivered_mode(capture: Any) -> tuple[int, int, float, str]:
    """What a camera says it delivers: width, height, fps and pixel format (a FOURCC such as MJPG or YUYV)."""
    code = int(capture.get(cv2.CAP_PROP_FOURCC))
    fourcc = "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)).strip("\0 ")
    return (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            float(capture.get(cv2.CAP_PROP_FPS)), fourcc if fourcc.isprintable() and fourcc else "unknown format")


class CameraSource(_NewestFrame):
    """A live camera (index, device path or stream URL): the newest frame wins, stale ones are dropped.

    A local camera is asked for a one-frame buffer and, above 640x480, MJPG
    (``configure_camera``); what it actually delivers is logged. A camera or
    stream that stops delivering (unplugged, network drop) is reopened with
    exponential backoff. ``capture_factory`` opens the device; tests pass a
    fake one.
    """

    def __init__(self, device: int | str, width: int | None = None, height: int | None = None,
                 fps: float | None = None, capture_factory: CaptureFactory | None = None,
                 stall_timeout: float = 0.5, max_backoff: float = 4.0) -> None:
        super().__init__(stall_timeout)
        self.device = device
        self._factory = capture_factory or (lambda: cv2.VideoCapture(device))
        self._settings = (width, height, fps)
        self.max_backoff = max_backoff
        capture = self._open()
        if capture is None:
            raise SourceError(f"cannot open camera {device!r}: no such device, or it is in use by another program "
                              "(`ipmcam cameras` lists the cameras)")
        self._report(capture)
        self.fps = plausible_fps(capture.get(cv2.CAP_PROP_FPS), fps or 30.0)
        self._thread = _CaptureThread(capture, self._deliver, self.fps, recover=self._reconnect)
        self.reconnects = 0

    @property
    def is_local(self) -> bool:
        """A camera on this machine (an index or a device path), not a network stream."""
        return isinstance(self.device, int) or "://" not in str(self.device)

    def _open(self) -> Any:
        capture = self._factory()
        if not capture.isOpened():
            capture.release()
            return None
        if self.is_local:
            configure_camera(capture, *self._settings)
        return capture

    def _report(self, capture: Any) -> None:
        """Log what the camera delivers; warn when it is not the size or rate asked for."""
        width, height, fps, fourcc = delivered_mode(capture)
        mode = f"{width}x{height} at {fps:g} fps, {fourcc}"
        asked_w, asked_h, asked_fps = self._settings
        if (asked_w and (asked_w, asked_h) != (width, height)) or (asked_fps and abs(asked_fps - fps) > 0.5):
            asked = [f"{asked_w}x{asked_h}" if asked_w else "", f"{asked_fps:g} fps" if asked_fps else ""]
            log.warning("camera %s delivers %s, not the %s asked for", self.device, mode, " at ".join(filter(None, asked)))
        else:
            log.info("camera %s: %s", self.device, mode)

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


class PlaybackSource(_NewestFrame):
    """A video file played like a camera: at its own frame rate, looping quietly (or once), newest frame wins.

    Read as fast as it decodes, a file given to ``live`` would be mostly
    dropped as stale and a recording of it would come out in fast motion.
    ``clock`` and ``wait`` keep time (tests pass a simulated clock).
    """

    def __init__(self, path: str | Path, loop: bool = True, stall_timeout: float = 0.5,
                 clock: Callable[[], float] = time.perf_counter,
                 wait: Callable[[float, threading.Event], object] | None = None) -> None:
        super().__init__(stall_timeout)
        self.path = Path(path)
        self.loop = loop
        capture = open_video(self.path)
        self.fps = plausible_fps(capture.get(cv2.CAP_PROP_FPS), 30.0)
        self.loops = 0
        self._clock = clock
        self._wait = wait or (lambda seconds, stop: stop.wait(seconds))
        self._start: float | None = None
        self._last_index = self._index_at_rewind = -1
        self._thread = _CaptureThread(capture, self._deliver, self.fps, recover=self._rewind, pace=self._pace,
                                      clock=clock)

    def _pace(self, index: int, stop: threading.Event) -> None:
        """Wait until frame ``index`` is due: the first frame plays at once, frame n at n / fps seconds."""
        now = self._clock()
        if self._start is None:
            self._start = now
        delay = self._start + index / self.fps - now
        if delay > 0:
            self._wait(delay, stop)
        self._last_index = index

    def _rewind(self, stop: threading.Event) -> Any:
        """At the end of the file: play it again from the start (timestamps go on), or end."""
        self._thread.capture.release()
        if not self.loop or self._last_index == self._index_at_rewind:  # once, or a file with no frame to loop
            return None
        self._index_at_rewind = self._last_index
        self.loops += 1
        log.debug("%s: playing again from the start (loop %d)", self.path, self.loops)
        return open_video(self.path)


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


def open_live_source(spec: str, width: int | None = None, height: int | None = None, fps: float | None = None,
                     loop: bool = True) -> Source:
    """What ``live --camera`` names: a camera index or device, a stream URL, or a video file (played in real time)."""
    if spec.isdigit():
        return CameraSource(int(spec), width=width, height=height, fps=fps)
    if "://" in spec or spec.startswith("/dev/"):
        return CameraSource(spec, width=width, height=height, fps=fps)
    path = Path(spec).expanduser()
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise SourceError(f"--camera {spec}: a still image is not a video; use `ipmcam apply` for photos")
    if not path.is_file():
        raise SourceError(f"--camera {spec}: no such camera or file (give a camera index from `ipmcam cameras`, "
                          "a stream URL or a video file)")
    return PlaybackSource(path, loop=loop)
