"""Frames for the benchmark and the soak test: the bundled clip looped, a synthetic moving face, a paced camera."""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from ipmcam.errors import SourceError
from ipmcam.media import open_video
from ipmcam.realtime.sources import Frame, Source

#: plain background of the synthetic source (BGR)
SYNTHETIC_BACKGROUND = (118, 112, 104)


def fit_frame(image: np.ndarray, size: tuple[int, int], fit: str = "scale") -> np.ndarray:
    """``image`` placed on a black (width, height) canvas, centred.

    ``scale`` resizes it to fit (letterbox); ``pad`` keeps its pixels and only
    shrinks it when it does not fit.
    """
    width, height = size
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    if fit == "pad":
        scale = min(scale, 1.0)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) == (width, height):
        return cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if (nw, nh) != (w, h):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((height, width, 3), np.uint8)
    x0, y0 = (width - nw) // 2, (height - nh) // 2
    canvas[y0:y0 + nh, x0:x0 + nw] = image
    return canvas


class LoopedVideo:
    """Frames of a video file at a given size, from the start again when it ends."""

    def __init__(self, path: Path, size: tuple[int, int], fit: str = "scale") -> None:
        self.path, self.size, self.fit = Path(path), size, fit
        self.capture = open_video(self.path)
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS)) or 30.0
        self.loops = 0

    def __call__(self, index: int) -> np.ndarray:
        ok, image = self.capture.read()
        if not ok:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self.loops += 1
            ok, image = self.capture.read()
            if not ok:
                raise SourceError(f"cannot read video {self.path}: no frames")
        return fit_frame(image, self.size, self.fit)

    def release(self) -> None:
        self.capture.release()


class SyntheticFace:
    """A face photo moving, turning and scaling along a smooth path over a plain background.

    Frame ``i`` depends on ``i`` alone (deterministic). The photo is cut out
    with a soft ellipse, so no rectangle edge moves with it; its height is
    about 70% of the frame's.
    """

    def __init__(self, photo: np.ndarray, size: tuple[int, int], fps: float = 30.0) -> None:
        self.size, self.fps = size, fps
        h, w = photo.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r = np.sqrt(((xx - w / 2) / (0.46 * w)) ** 2 + ((yy - h / 2) / (0.49 * h)) ** 2)
        alpha = np.clip((1.0 - r) / 0.08, 0.0, 1.0)[..., None]
        bg = np.array(SYNTHETIC_BACKGROUND, np.float32)
        self.photo = np.clip(photo.astype(np.float32) * alpha + bg * (1 - alpha), 0, 255).astype(np.uint8)
        self.background = np.empty((size[1], size[0], 3), np.uint8)
        self.background[...] = SYNTHETIC_BACKGROUND

    def pose(self, index: int) -> tuple[float, float, float, float]:
        """(centre x, centre y, angle in degrees, scale) of the photo in frame ``index``."""
        t = index / self.fps
        width, height = self.size
        cx = width / 2 + 0.16 * width * math.sin(2 * math.pi * t / 5.0)
        cy = height / 2 + 0.08 * height * math.sin(2 * math.pi * t / 3.7 + 0.6)
        angle = 12.0 * math.sin(2 * math.pi * t / 4.3)
        scale = 0.7 * height / self.photo.shape[0] * (1.0 + 0.12 * math.sin(2 * math.pi * t / 6.1))
        return cx, cy, angle, scale

    def __call__(self, index: int) -> np.ndarray:
        cx, cy, angle, scale = self.pose(index)
        h, w = self.photo.shape[:2]
        mat = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        mat[:, 2] += (cx - w / 2, cy - h / 2)
        corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ mat.T
        width, height = self.size
        x0, y0 = (max(int(math.floor(v)), 0) for v in corners.min(axis=0))
        x1, y1 = min(int(math.ceil(corners[:, 0].max())), width), min(int(math.ceil(corners[:, 1].max())), height)
        frame = self.background.copy()
        if x1 > x0 and y1 > y0:
            mat[:, 2] -= (x0, y0)
            cv2.warpAffine(self.photo, mat, (x1 - x0, y1 - y0), dst=frame[y0:y1, x0:x1],
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
        return frame

    def release(self) -> None:
        pass


class OnDemandSource(Source):
    """Makes each frame when the pipeline asks for it: nothing is queued, nothing dropped."""

    def __init__(self, make: Callable[[int], np.ndarray], fps: float) -> None:
        self.make, self.fps = make, fps
        self.dropped = 0

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while True:
            image = self.make(index)
            yield Frame(image, index, index / self.fps, time.perf_counter())
            index += 1

    def close(self) -> None:
        self.make.release()  # type: ignore[attr-defined]


class PacedCapture:
    """A cv2.VideoCapture look-alike delivering frames at ``fps``, for ``CameraSource`` (a simulated camera)."""

    def __init__(self, make: Callable[[int], np.ndarray], fps: float) -> None:
        self.make, self.fps = make, fps
        self.index = 0
        self.next_at: float | None = None
        self.opened = True

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoCapture's spelling
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        now = time.perf_counter()
        self.next_at = now if self.next_at is None else self.next_at + 1.0 / self.fps
        if self.next_at > now:
            time.sleep(self.next_at - now)
        else:
            self.next_at = max(self.next_at, now - 1.0 / self.fps)  # a late camera does not burst to catch up
        image = self.make(self.index)
        self.index += 1
        return True, image

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FPS:
            return self.fps
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        return False

    def release(self) -> None:
        if self.opened:
            self.opened = False
            self.make.release()  # type: ignore[attr-defined]
