"""Frame sinks: virtual camera, video/image file, preview window, null.

A sink opens itself on the first frame it receives, so it always matches the
pipeline's output size. Several sinks can be fed the same frames.
"""
from __future__ import annotations

import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from realtime.errors import SinkError
from realtime.sources import IMAGE_SUFFIXES

log = logging.getLogger("ipmcam")

VIRTUAL_CAMERA_HELP = (
    "no virtual camera device found: on Linux load v4l2loopback "
    "(sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=ipmcam); "
    "on Windows or macOS install OBS Studio and start its virtual camera once"
)


class Sink(ABC):
    """Receives output frames (BGR uint8, all the same size)."""

    def open(self, width: int, height: int, fps: float) -> None:
        """Prepare for frames of this size; called once before the first ``write``."""

    @abstractmethod
    def write(self, frame: np.ndarray) -> None: ...

    def close(self) -> None:
        """Flush and release; safe to call twice."""

    @property
    def wants_stop(self) -> bool:
        """True once the user asked this sink (e.g. a window) to end the run."""
        return False


class NullSink(Sink):
    """Discards frames; counts them (benchmarks, dry runs)."""

    def __init__(self) -> None:
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        self.frames += 1


def check_writable(path: Path) -> None:
    """Fail before any processing when an output file cannot be created."""
    parent = path.resolve().parent
    if not parent.is_dir():
        raise SinkError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SinkError(f"cannot write {path}: permission denied")


class FileSink(Sink):
    """An mp4 video (or, for an image suffix, the last frame as an image)."""

    def __init__(self, path: str | Path, fourcc: str = "mp4v") -> None:
        self.path = Path(path)
        check_writable(self.path)
        self.is_image = self.path.suffix.lower() in IMAGE_SUFFIXES
        self.fourcc = fourcc
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._last: np.ndarray | None = None

    def open(self, width: int, height: int, fps: float) -> None:
        if self.is_image:
            return
        self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc), fps, (width, height))
        if not self._writer.isOpened():
            raise SinkError(f"cannot write video {self.path}: no encoder for {self.path.suffix or 'this format'}")

    def write(self, frame: np.ndarray) -> None:
        if self.is_image:
            self._last = frame
        elif self._writer is not None:
            self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.is_image and self._last is not None:
            if not cv2.imwrite(str(self.path), self._last):
                raise SinkError(f"cannot write image {self.path}")
            self._last = None


class VirtualCameraSink(Sink):
    """Publishes frames to a virtual camera through pyvirtualcam (v4l2loopback, OBS, Unity Capture).

    ``device`` and ``backend`` pick one when several exist; pacing is left to
    the pipeline so a slow frame is never followed by a sleep.
    """

    def __init__(self, device: str | None = None, backend: str | None = None) -> None:
        self.device = device
        self.backend = backend
        self._camera: Any = None

    def open(self, width: int, height: int, fps: float) -> None:
        import pyvirtualcam

        try:
            self._camera = pyvirtualcam.Camera(width=width, height=height, fps=fps, fmt=pyvirtualcam.PixelFormat.BGR,
                                               device=self.device, backend=self.backend, print_fps=False)
        except (RuntimeError, ValueError, OSError, KeyError) as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SinkError(f"{VIRTUAL_CAMERA_HELP} ({detail})") from None
        log.info("virtual camera: %s (%dx%d @ %.0f fps)", self._camera.device, width, height, fps)

    def write(self, frame: np.ndarray) -> None:
        self._camera.send(frame)

    def close(self) -> None:
        if self._camera is not None:
            self._camera.close()
            self._camera = None


class PreviewSink(Sink):
    """An OpenCV window with an FPS overlay; Esc or q ends the run.

    ``overlay``, when set, draws on a copy of each frame before it is shown
    (help, stats): what other sinks get is never touched. Keys pressed in the
    window collect in ``pressed`` for a controller to take (``take_keys``);
    ``last_frame`` is the newest frame as published, without overlays.
    """

    def __init__(self, title: str = "ipmcam", show_fps: bool = True,
                 overlay: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.title = title
        self.show_fps = show_fps
        self.overlay = overlay
        self._stop = False
        self._last = time.perf_counter()
        self._fps = 0.0
        self.last_key = -1
        self.pressed: list[int] = []
        self.last_frame: np.ndarray | None = None

    @property
    def fps(self) -> float:
        """Frames shown per second (smoothed)."""
        return self._fps

    def take_keys(self) -> list[int]:
        """Keys pressed since the last call, oldest first."""
        keys, self.pressed = self.pressed, []
        return keys

    def open(self, width: int, height: int, fps: float) -> None:
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_GUI_NORMAL)  # no toolbar: keys do it all
        except cv2.error:
            raise SinkError("cannot open a preview window: no display (set DISPLAY, or drop --preview)") from None
        try:
            cv2.resizeWindow(self.title, width, height)  # start at the video's own size, not the toolkit's default
        except cv2.error:
            pass

    def write(self, frame: np.ndarray) -> None:
        now = time.perf_counter()
        self._fps = 0.9 * self._fps + 0.1 / max(now - self._last, 1e-6) if self._fps else 1.0 / max(now - self._last, 1e-6)
        self._last = now
        self.last_frame = frame
        shown = frame
        if self.show_fps or self.overlay is not None:
            shown = frame.copy()
        if self.overlay is not None:
            shown = self.overlay(shown)
        if self.show_fps:
            cv2.putText(shown, f"{self._fps:5.1f} fps", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4, cv2.LINE_AA)
            cv2.putText(shown, f"{self._fps:5.1f} fps", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.imshow(self.title, shown)
        self.last_key = cv2.waitKey(1) & 0xFF
        if self.last_key != 0xFF:
            self.pressed.append(self.last_key)
        if self.last_key in (27, ord("q")):
            self._stop = True

    @property
    def wants_stop(self) -> bool:
        return self._stop

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass
