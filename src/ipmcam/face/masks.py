"""Makeup region masks drawn from face-mesh landmarks.

No face-parsing network can ship with the product, so regions are polygons
over mediapipe's 478 landmarks, feathered with a Gaussian. The same function
draws the masks for training crops and for live crops.

Channel order of the mask stack (``MASK_CHANNELS``): lips, eye shadow, skin.
Eyeballs, the inside of the mouth and the brows belong to no channel, so the
generator never recolours them.
"""
from __future__ import annotations

import cv2
import numpy as np

from ipmcam.face.regions import (  # noqa: F401 - the region names are part of this module's interface
    BROW_A,
    BROW_B,
    EYE_A,
    EYE_B,
    EYE_SHADOW,
    FACE_OVAL,
    LIPS,
    LIPS_INNER,
    LIPS_OUTER,
    MASK_CHANNELS,
    SKIN,
)


def _fill(canvas: np.ndarray, pts: np.ndarray, value: float = 1.0) -> None:
    cv2.fillPoly(canvas, [np.round(pts * 16).astype(np.int32)], value, lineType=cv2.LINE_AA, shift=4)


def _eye_shadow_polygon(lm: np.ndarray, eye: list[int], brow: list[int]) -> np.ndarray:
    """Eye contour scaled up about its centre, raised towards the brow: the lid and crease area."""
    eye_pts = lm[eye]
    centre = eye_pts.mean(axis=0)
    brow_centre = lm[brow].mean(axis=0)
    up = brow_centre - centre
    grown = centre + (eye_pts - centre) * np.array([1.6, 2.5])
    lift = np.clip((centre[1] - eye_pts[:, 1]) / (np.ptp(eye_pts[:, 1]) + 1e-6), 0, 1)
    return grown + 0.45 * up * lift[:, None]


def region_masks(landmarks: np.ndarray, size: int, feather: float | None = None) -> np.ndarray:
    """Feathered region masks (len(MASK_CHANNELS), size, size) float32 in [0, 1].

    ``landmarks`` are face-mesh points already in the square image's pixel
    coordinates (e.g. the crop). ``feather`` is the Gaussian sigma in pixels;
    by default 1% of the side, so masks look the same at any crop size.
    """
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    sigma = feather if feather is not None else max(size / 100.0, 0.5)
    brows = np.zeros((size, size), np.float32)
    for poly in (BROW_A, BROW_B):
        _fill(brows, lm[poly])
    # Brow landmarks trace the middle of the hairs: grow them to cover the whole brow.
    grow = max(int(round(size / 64)), 1)
    keep_out = cv2.dilate(brows, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    for poly in (LIPS_INNER, EYE_A, EYE_B):
        _fill(keep_out, lm[poly])

    lips = np.zeros_like(keep_out)
    _fill(lips, lm[LIPS_OUTER])
    shadow = np.zeros_like(keep_out)
    _fill(shadow, _eye_shadow_polygon(lm, EYE_A, BROW_A))
    _fill(shadow, _eye_shadow_polygon(lm, EYE_B, BROW_B))
    skin = np.zeros_like(keep_out)
    _fill(skin, lm[FACE_OVAL])

    lips = np.clip(lips - keep_out, 0, 1)
    shadow = np.clip(shadow - keep_out - lips, 0, 1)
    skin = np.clip(skin - keep_out - lips - shadow, 0, 1)
    stack = np.stack([lips, shadow, skin])
    if sigma > 0:
        k = int(2 * np.ceil(3 * sigma) + 1)
        stack = np.stack([cv2.GaussianBlur(m, (k, k), sigma) for m in stack])
        # Feathering must not bleed into the eyes, mouth or brows.
        stack *= 1.0 - cv2.GaussianBlur(keep_out, (k, k), sigma / 2)
    return np.clip(stack, 0.0, 1.0).astype(np.float32)


def union(masks: np.ndarray) -> np.ndarray:
    """Where any makeup may land: the per-pixel maximum over channels (last two axes kept)."""
    return masks.max(axis=-3)
