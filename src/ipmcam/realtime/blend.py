"""Putting a crop-space makeup delta back into the full frame.

Only the face's bounding box is touched: the delta is warped into that box
and added there, so the cost follows the face size, not the frame size, and
every pixel the delta does not reach keeps its exact input value.
"""
from __future__ import annotations

import cv2
import numpy as np

from ipmcam.face import align


def support_box(mask: np.ndarray, mat_frame_to_crop: np.ndarray, frame_shape: tuple[int, ...],
                margin: int = 2) -> tuple[int, int, int, int] | None:
    """Frame-space box (x0, y0, x1, y1) covering a crop-space mask's nonzero pixels, clipped to the frame.

    None when the mask is empty or the box falls outside the frame.
    """
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    corners = np.array(
        [[xs.min(), ys.min()], [xs.max() + 1, ys.min()], [xs.min(), ys.max() + 1], [xs.max() + 1, ys.max() + 1]],
        dtype=np.float64,
    )
    pts = align.transform_points(corners, align.invert(mat_frame_to_crop))
    h, w = frame_shape[:2]
    x0 = max(int(np.floor(pts[:, 0].min())) - margin, 0)
    y0 = max(int(np.floor(pts[:, 1].min())) - margin, 0)
    x1 = min(int(np.ceil(pts[:, 0].max())) + margin, w)
    y1 = min(int(np.ceil(pts[:, 1].max())) + margin, h)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def add_delta(frame: np.ndarray, delta: np.ndarray, mask: np.ndarray, mat_frame_to_crop: np.ndarray) -> None:
    """Add a crop-space delta (S, S, 3) float32 to ``frame`` (uint8, in place) inside the face box.

    ``mask`` is the crop-space union of the region masks; it only bounds the
    box, because the delta is already zero wherever the masks are.
    """
    box = support_box(mask, mat_frame_to_crop, frame.shape)
    if box is None:
        return
    x0, y0, x1, y1 = box
    to_roi = align.invert(mat_frame_to_crop)
    to_roi[:, 2] -= (x0, y0)
    warped = cv2.warpAffine(delta, to_roi, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    roi = frame[y0:y1, x0:x1]
    roi[...] = np.clip(np.rint(roi.astype(np.float32) + warped), 0, 255).astype(np.uint8)
