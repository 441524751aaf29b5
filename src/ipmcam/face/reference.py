"""Turning a reference photo into a canonical crop and masks, with errors a user can act on."""
from __future__ import annotations

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
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise BadReferenceError(f"reference {path}: not a readable image (use a JPEG or PNG photo of a face)")
    return image


def align_face(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical crop, its region masks and the frame-to-crop matrix for one face's landmarks."""
    mat = align.crop_transform(landmarks)
    crop = align.warp_to_crop(image, mat)
    region = masks.region_masks(align.transform_points(landmarks, mat), align.CROP_SIZE)
    return crop, region, mat


def reference_crop(image: np.ndarray, name: str = "reference") -> tuple[np.ndarray, np.ndarray]:
    """Crop and masks of the single face in a reference photo.

    Several faces are refused rather than guessed between: the user must see
    whose makeup is being copied.
    """
    with FaceTracker(max_faces=2, static=True, smooth=False) as tracker:
        faces = tracker(image, 0.0)
    if not faces:
        raise BadReferenceError(f"{name}: no face found (use a front-facing photo with the whole face visible)")
    if len(faces) > 1:
        raise BadReferenceError(f"{name}: {len(faces)} faces found; crop the photo to the one face to copy")
    crop, region, _ = align_face(image, faces[0].landmarks)
    return crop, region
