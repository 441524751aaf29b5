"""Turning a reference photo into a canonical crop and masks, with errors a user can act on."""
from __future__ import annotations

import ctypes
from pathlib import Path

import cv2
import numpy as np

from ipmcam.errors import BadReferenceError
from ipmcam.face import align, masks
from ipmcam.face.tracker import FaceTracker


def read_reference(path: str | Path) -> np.ndarray:
    """The reference photo as BGR uint8; a one-line error when it is missing or not an image."""
    path = Path(path)
    if not path.is_file():
        raise BadReferenceError(f"reference {path}: file not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = _decode_for_work(data) if data.size else None
    if image is None:
        raise BadReferenceError(f"reference {path}: not a readable image (use a JPEG or PNG photo of a face)")
    return image


#: OpenCV's reduced decodes (JPEG scales while decoding, other formats are resized after): factor -> flag
_REDUCED = {8: cv2.IMREAD_REDUCED_COLOR_8, 4: cv2.IMREAD_REDUCED_COLOR_4, 2: cv2.IMREAD_REDUCED_COLOR_2}


def _decode_for_work(data: np.ndarray) -> np.ndarray | None:
    """A photo decoded no larger than it needs to be for finding and cropping its face.

    A 6000x6000 JPEG is 108 MB decoded, and only a 256 px crop of its face is
    kept. An eighth-size decode tells the size for 1/64 of that; then the
    photo is decoded at the smallest reduction that brings its longest side
    within ``align.WORK_SIDE`` (1500 px for that one), photos that fit being
    read whole.
    """
    probe = cv2.imdecode(data, cv2.IMREAD_REDUCED_COLOR_8)
    if probe is None:
        return None
    longest = 8 * max(probe.shape[:2])
    factor = next((f for f in sorted(_REDUCED) if longest / f <= align.WORK_SIDE), 8) if longest > align.WORK_SIDE else 1
    return cv2.imdecode(data, _REDUCED[factor] if factor > 1 else cv2.IMREAD_COLOR)


def align_face(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical crop, its region masks and the frame-to-crop matrix for one face's landmarks."""
    mat = align.crop_transform(landmarks)
    crop = align.warp_to_crop(image, mat)
    region = masks.region_masks(align.transform_points(landmarks, mat), align.CROP_SIZE)
    return crop, region, mat


def _return_freed_memory() -> None:
    """Hand the heap the analysis freed (a still-image tracker, a big photo) back to the OS.

    glibc keeps freed pages for reuse; after a reference they would sit
    beside the video tracker's for the whole run (about 30 MB for a
    6000x6000 photo). Other allocators decide for themselves.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reference_crop(image: np.ndarray, name: str = "reference") -> tuple[np.ndarray, np.ndarray]:
    """Crop and masks of the single face in a reference photo.

    Several faces are refused rather than guessed between: the user must see
    whose makeup is being copied.
    """
    image, _ = align.downscaled(image)  # only a 256 px crop is kept: a huge photo is found and cut at work size
    with FaceTracker(max_faces=2, static=True, smooth=False) as tracker:
        faces = tracker(image, 0.0)
    _return_freed_memory()
    if not faces:
        raise BadReferenceError(f"{name}: no face found (use a front-facing photo with the whole face visible)")
    if len(faces) > 1:
        raise BadReferenceError(f"{name}: {len(faces)} faces found; crop the photo to the one face to copy")
    crop, region, _ = align_face(image, faces[0].landmarks)
    return crop, region
