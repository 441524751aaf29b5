"""Blending a crop-space delta into a frame: local, exact outside, clipped inside."""
from __future__ import annotations

import cv2
import numpy as np

from ipmcam.face import align
from ipmcam.realtime.blend import add_delta, support_box


def _setup(frame_shape=(480, 640, 3)):
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, frame_shape, dtype=np.uint8)
    mat = align.similarity_from_points(np.array([[300, 200], [360, 200], [330, 280.0]]),
                                       np.array([[95, 102], [161, 102], [128, 190.0]]))
    mask = np.zeros((256, 256), np.float32)
    mask[100:200, 80:180] = 1.0
    delta = np.zeros((256, 256, 3), np.float32)
    delta[100:200, 80:180] = 40.0
    return frame, mat, mask, delta


def test_pixels_the_delta_does_not_reach_are_bit_identical() -> None:
    frame, mat, mask, delta = _setup()
    out = frame.copy()
    add_delta(out, delta, mask, mat)
    # Where the delta warped into the frame is exactly zero, nothing changed.
    reach = cv2.warpAffine(delta[..., 0], align.invert(mat), (640, 480), flags=cv2.INTER_LINEAR) != 0
    assert np.array_equal(out[~reach], frame[~reach])
    assert (out[reach].astype(int) - frame[reach]).max() > 0


def test_zero_delta_changes_nothing() -> None:
    frame, mat, mask, _ = _setup()
    out = frame.copy()
    add_delta(out, np.zeros((256, 256, 3), np.float32), mask, mat)
    assert np.array_equal(out, frame)


def test_values_are_clipped_not_wrapped() -> None:
    frame, mat, mask, delta = _setup()
    frame[:] = 250
    add_delta(frame, delta, mask, mat)
    assert frame.max() == 255 and frame.min() == 250


def test_box_covers_only_the_mask_and_stays_in_frame() -> None:
    frame, mat, mask, _ = _setup()
    x0, y0, x1, y1 = support_box(mask, mat, frame.shape)
    # The mask is 100x100 crop px; the crop is about 2.2x the frame's face scale.
    assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
    assert (x1 - x0) * (y1 - y0) < 0.1 * 640 * 480
    # A face half outside the frame is clipped, never an error.
    shifted = mat.copy()
    shifted[:, 2] += mat[:, :2] @ np.array([330.0, 0])
    box = support_box(mask, shifted, frame.shape)
    assert box is None or box[0] >= 0
    assert support_box(np.zeros_like(mask), mat, frame.shape) is None
