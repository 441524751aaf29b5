"""Similarity alignment between a frame and the canonical square face crop.

Training crops and live crops go through these same functions, so the model
sees faces framed identically in both. A similarity (rotation, uniform scale,
translation) keeps face proportions intact, which matters for makeup shapes.
"""
from __future__ import annotations

import cv2
import numpy as np

CROP_SIZE = 256

# mediapipe face-mesh indices of the five anchor points: the two eye centres
# (mean of each eye's corners), the nose tip and the two mouth corners.
_EYE_A = (33, 133)
_EYE_B = (362, 263)
_NOSE_TIP = 1
_MOUTH_A = 61
_MOUTH_B = 291

# Where those anchors sit in the canonical crop, as fractions of its side.
# Inter-eye distance is 0.26 of the side, which leaves the brows, forehead,
# cheeks and chin inside the crop (the makeup regions need all of them).
CANONICAL_ANCHORS = np.array(
    [
        [0.370, 0.400],
        [0.630, 0.400],
        [0.500, 0.545],
        [0.392, 0.700],
        [0.608, 0.700],
    ],
    dtype=np.float64,
)


def anchor_points(landmarks: np.ndarray) -> np.ndarray:
    """The five alignment anchors (5, 2) from 468/478 face-mesh landmarks (N, 2+)."""
    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
    return np.stack(
        [
            pts[list(_EYE_A)].mean(axis=0),
            pts[list(_EYE_B)].mean(axis=0),
            pts[_NOSE_TIP],
            pts[_MOUTH_A],
            pts[_MOUTH_B],
        ]
    )


def similarity_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama, no reflection) mapping src onto dst, as a 2x3 matrix."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    var_s = (s**2).sum() / len(src)
    scale = (sig * sign).sum() / var_s
    mat = np.zeros((2, 3), dtype=np.float64)
    mat[:, :2] = scale * rot
    mat[:, 2] = mu_d - mat[:, :2] @ mu_s
    return mat


def crop_transform(landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """2x3 matrix taking frame pixel coordinates to canonical crop coordinates."""
    return similarity_from_points(anchor_points(landmarks), CANONICAL_ANCHORS * size)


def invert(mat: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    return cv2.invertAffineTransform(np.asarray(mat, dtype=np.float64))


def transform_points(points: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (N, 2) points."""
    pts = np.asarray(points, dtype=np.float64)[:, :2]
    return pts @ mat[:, :2].T + mat[:, 2]


def warp_to_crop(frame: np.ndarray, mat: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Cut the canonical crop out of a frame (replicated border for faces at the edge)."""
    return cv2.warpAffine(
        frame, mat, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


#: Longest side that tracking and alignment work at: larger images (a 6000x6000 photo) are found and
#: aligned on a copy this size, and only the makeup is drawn back at full size. Full HD frames pass as they
#: are; the face mesh itself runs on 192-256 px crops, so nothing is lost for faces of ordinary size.
WORK_SIDE = 1920


def downscaled(image: np.ndarray, max_side: int = WORK_SIDE) -> tuple[np.ndarray, float]:
    """The image with its longest side at most ``max_side`` (itself when it fits) and the scale applied (<= 1)."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return image, 1.0
    size = (max(round(w * scale), 1), max(round(h * scale), 1))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def from_scaled_frame(mat: np.ndarray, scale: float) -> np.ndarray:
    """A frame-to-crop matrix found on a copy scaled by ``scale``, as one for the full-size frame."""
    full = np.array(mat, dtype=np.float64)
    full[:, :2] *= scale
    return full
