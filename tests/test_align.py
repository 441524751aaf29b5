"""Alignment: the similarity fit, the round trip frame → crop → frame, and real re-detection."""
from __future__ import annotations

import cv2
import numpy as np

from ipmcam.face import align
from ipmcam.face.tracker import FaceTracker


def _random_similarity(rng: np.random.Generator) -> np.ndarray:
    angle, scale = rng.uniform(-0.6, 0.6), rng.uniform(0.3, 3.0)
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.hstack([rot, rng.uniform(-200, 200, (2, 1))])


def test_similarity_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        mat = _random_similarity(rng)
        src = rng.uniform(0, 500, (5, 2))
        fitted = align.similarity_from_points(src, align.transform_points(src, mat))
        np.testing.assert_allclose(fitted, mat, atol=1e-8)


def test_similarity_never_reflects() -> None:
    src = np.random.default_rng(2).uniform(0, 100, (6, 2))
    mirrored = src * [-1, 1]
    fitted = align.similarity_from_points(src, mirrored)
    assert np.linalg.det(fitted[:, :2]) > 0


def test_round_trip_landmarks_within_one_pixel(aligned_faces: list, shared_data) -> None:
    frame = cv2.imread(str(shared_data / "stills" / "d9.jpg"))
    with FaceTracker(static=True, smooth=False) as tracker:
        landmarks = tracker(frame, 0.0)[0].landmarks
        mat = align.crop_transform(landmarks)
        in_crop = align.transform_points(landmarks, mat)
        back = align.transform_points(in_crop, align.invert(mat))
        assert np.abs(back - landmarks).max() < 1e-6
        # The anchors land on the canonical template.
        anchors = align.anchor_points(in_crop)
        assert np.abs(anchors - align.CANONICAL_ANCHORS * align.CROP_SIZE).mean() < 6.0
        # Landmarks found again in the warped crop map back onto the frame's: the median error stays
        # within mediapipe's own frame-to-frame jitter (about 2 px at crop scale).
        crop = align.warp_to_crop(frame, mat)
        redetected = tracker(crop, 0.0)[0].landmarks
    scale = np.sqrt(abs(np.linalg.det(mat[:, :2])))
    err_frame_px = np.linalg.norm(align.transform_points(redetected, align.invert(mat)) - landmarks, axis=1)
    err_crop_px = err_frame_px * scale
    assert np.median(err_crop_px) < 3.0, np.median(err_crop_px)


def test_warp_keeps_size_and_dtype() -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    crop = align.warp_to_crop(frame, np.array([[0.5, 0, 10], [0, 0.5, 20]]))
    assert crop.shape == (align.CROP_SIZE, align.CROP_SIZE, 3) and crop.dtype == np.uint8
