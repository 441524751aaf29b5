"""Frame sinks: virtual camera, video/image file, preview window, null.

A sink opens itself on the first frame it receives, so it always matches the
pipeline's output size. Several sinks can be fed the same frames.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ipmcam.errors import SinkError
from ipmcam.media import IMAGE_SUFFIXES
from ipmcam.realtime.video_file import VIDEO_FORMATS, VideoWriter, WriteFailure, count_frames

log = logging.getLogger("ipmcam")

NO_DISPLAY = "cannot open a preview window: no display (set DISPLAY, or drop --preview)"
VIRTUAL_CAMERA_HELP = (
    "no virtual camera device found: on Linux load v4l2loopback "
    "(sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=ipmcam); "
    "on Windows or macOS install OBS Studio and start its virtual camera once"
)


class Sink(ABC):
    """Receives output frames (BGR uint8, all the same size).

    ``open`` and ``write`` raise SinkError when the output fails (disk full,
    device gone); ``realtime.outputs`` decides what that costs the run.
    """

    #: how messages name this output
    name: str = "output"
    #: whether an output that failed may come back when opened again (a virtual camera's device)
    reopenable: bool = False

    def open(self, width: int, height: int, fps: float) -> None:
        """Prepare for frames of this size; called once before the first ``write`` (and again on a reopen)."""

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
    if path.is_dir():
        raise SinkError(f"cannot write {path}: it is a folder; give a file name, e.g. {path / 'out.mp4'}")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise SinkError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SinkError(f"cannot write {path}: permission denied")


class FileSink(Sink):
    """A video file (see ``video_file``), or for an image suffix a single frame as an image.

    Every write is checked: the first that fails finishes the file with what
    it holds and raises a SinkError saying how many frames it kept.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        check_writable(self.path)
        suffix = self.path.suffix.lower()
        self.is_image = suffix in IMAGE_SUFFIXES
        if not self.is_image and suffix not in VIDEO_FORMATS:
            raise SinkError(f"cannot write {self.path}: unknown file type {suffix or '(no suffix)'}; use a video "
                            f"({', '.join(VIDEO_FORMATS)}) or an image ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.name = str(self.path)
        self.frames = 0
        self._writer: VideoWriter | None = None
        self._last: np.ndarray | None = None

    def open(self, width: int, height: int, fps: float) -> None:
        if self.is_image:
            return
        try:
            self._writer = VideoWriter(self.path, width, height, fps)
        except WriteFailure as exc:
            raise SinkError(f"cannot write video {self.path}: {_reason(exc)}") from None

    def write(self, frame: np.ndarray) -> None:
        if self.is_image:
            self._last = frame
        elif self._writer is not None:
            try:
                self._writer.write(frame)
            except WriteFailure as exc:
                raise self._stopped(exc) from None
        self.frames += 1

    def _stopped(self, exc: BaseException) -> SinkError:
        """Finish the file after a failed write; the error says what it kept."""
        writer, self._writer = self._writer, None
        try:
            writer.close()
        except WriteFailure:
            pass  # the disk that refused a frame may refuse the last fragment too: what is on it still plays
        if self.frames == 0:
            return SinkError(f"cannot write {self.path}: {_reason(exc)}")
        kept = count_frames(self.path) if self.path.is_file() else 0
        return SinkError(f"cannot write {self.path}: {_reason(exc)}; stopped after {self.frames} frames, "
                         f"of which the file keeps {kept}")

    def close(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except WriteFailure as exc:
                raise self._stopped(exc) from None
            finally:
                self._writer = None
        if self.is_image and self._last is not None:
            last, self._last = self._last, None
            if not cv2.imwrite(str(self.path), last):
                raise SinkError(f"cannot write image {self.path}: the disk refused it or the format is unknown")


def _reason(exc: BaseException) -> str:
    """An OS or FFmpeg error without the file name it repeats."""
    return getattr(exc, "strerror", None) or str(exc).split(":")[0] or type(exc).__name__


class VirtualCameraSink(Sink):
    """Publishes frames to a virtual camera through pyvirtualcam (v4l2loopback, OBS, Unity Capture).

    ``device`` and ``backend`` pick one when several exist; pacing is left to
    the pipeline so a slow frame is never followed by a sleep.
    """

    reopenable = True

    def __init__(self, device: str | None = None, backend: str | None = None) -> None:
        self.device = device
        self.backend = backend
        self.name = f"virtual camera {device}" if device else "virtual camera"
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
        try:
            self._camera.send(frame)
        except (RuntimeError, OSError) as exc:  # the device was removed or stopped taking frames
            raise SinkError(f"{self.name} stopped taking frames ({_reason(exc)})") from None

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                camera.close()
            except (RuntimeError, OSError):
                pass  # a removed device has nothing left to release


class PreviewSink(Sink):
    """An OpenCV window with an FPS overlay; Esc or q ends the run.

    ``overlay``, when set, draws on a copy of each frame before it is shown
    (help, stats): what other sinks get is never touched. Keys pressed in the
    window collect in ``pressed`` for a controller to take (``take_keys``);
    ``last_frame`` is the newest frame as published, without overlays.
    """

    def __init__(self, title: str = "ipmcam", show_fps: bool = True,
                 overlay: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            # Checked up front: OpenCV's Qt aborts the whole process when it finds no display.
            raise SinkError(NO_DISPLAY)
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
            raise SinkError(NO_DISPLAY) from None
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
