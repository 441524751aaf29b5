"""Reading video and image files: one way to open them, with errors a user can act on.

A leaf module (only ``ipmcam.errors`` below it): the live sources, the
training data, the presets and the measurements all read files through it.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ipmcam.errors import SourceError

#: file suffixes read as still images (everything else is tried as a video)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


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


def read_image(path: Path) -> np.ndarray:
    """An image file as BGR uint8; a one-line SourceError when it is missing or not an image."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"cannot read image {path}: not found or not an image")
    return image
