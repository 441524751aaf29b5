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


#: rows of the face box blended at a time (a face box shorter than this is one band)
BAND_ROWS = 512


def add_delta(frame: np.ndarray, delta: np.ndarray, mask: np.ndarray, mat_frame_to_crop: np.ndarray) -> None:
    """Add a crop-space delta (S, S, 3) float32 to ``frame`` (uint8, in place) inside the face box.

    ``mask`` is the crop-space union of the region masks; it only bounds the
    box, because the delta is already zero wherever the masks are.
    """
    box = support_box(mask, mat_frame_to_crop, frame.shape)
    if box is None:
        return
    x0, y0, x1, y1 = box
    to_frame = align.invert(mat_frame_to_crop)
    # In bands of rows: the float temporaries stay a few MB even for a face 4000 px tall in a huge photo.
    for top in range(y0, y1, BAND_ROWS):
        bottom = min(top + BAND_ROWS, y1)
        to_band = to_frame.copy()
        to_band[:, 2] -= (x0, top)
        warped = cv2.warpAffine(delta, to_band, (x1 - x0, bottom - top), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        band = frame[top:bottom, x0:x1]
        band[...] = np.clip(np.rint(band.astype(np.float32) + warped), 0, 255).astype(np.uint8)
