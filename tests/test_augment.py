"""Webcam-like augmentation and what is laid in front of training faces."""
from __future__ import annotations

import numpy as np
import pytest

from ipmcam.face.masks import EYE_SHADOW, region_masks
from ipmcam.ipmnet.augment import glasses, occluder, random_overlay, webcam_look


@pytest.fixture(scope="module")
def face(aligned_faces) -> tuple[np.ndarray, np.ndarray]:
    """One canonical crop and its landmarks in crop pixels."""
    from ipmcam.face.tracker import FaceTracker

    crop = aligned_faces[0][0]
    with FaceTracker(static=True, smooth=False) as tracker:
        return crop, tracker(crop, 0.0)[0].landmarks


def test_webcam_look_keeps_the_crop_format_and_varies_it(face) -> None:
    crop, _ = face
    looks = [webcam_look(crop, np.random.default_rng(seed)) for seed in range(12)]
    for look in looks:
        assert look.shape == crop.shape and look.dtype == np.uint8
    means = np.array([look.reshape(-1, 3).mean(axis=0) for look in looks])
    assert np.ptp(means[:, 0] - means[:, 2]) > 5  # white balance varies (blue against red)
    assert np.ptp(means.mean(axis=1)) > 20  # exposure varies, down to dim rooms
    assert np.array_equal(webcam_look(crop, np.random.default_rng(3)), looks[3])  # seeded


def test_glasses_sit_round_the_eyes(face) -> None:
    crop, lm = face
    masks = region_masks(lm, crop.shape[0])
    for seed in range(4):
        frame = glasses(crop.shape[0], lm, np.random.default_rng(seed))
        assert frame.alpha.min() >= 0 and frame.alpha.max() <= 1 and frame.colour.shape == crop.shape
        near_eyes = frame.alpha[masks[EYE_SHADOW] > 0].sum()
        assert near_eyes > 0.3 * frame.alpha[: crop.shape[0] // 2].sum()  # on the eyes' row, not elsewhere
        assert frame.alpha[-crop.shape[0] // 4:].max() < 0.05  # nothing on the chin


def test_an_overlay_covers_source_and_target_alike(face) -> None:
    """Whatever covers the face is laid on both, so the target never paints it."""
    crop, lm = face
    target = np.minimum(crop.astype(np.float32) + 20.0, 255.0)  # a made-up target: whole pixel values
    for seed in range(6):
        over = occluder(crop.shape[0], lm, np.random.default_rng(seed), crop[::-1])
        src, tgt = over.over(crop), over.over(target)
        assert src.dtype == np.uint8 and tgt.dtype == np.float32
        covered = over.alpha > 0.999
        assert covered.sum() > 100
        assert np.abs(src[covered].astype(np.float32) - tgt[covered]).max() <= 1.0  # the occluder, not the face
        bare = over.alpha == 0
        assert np.array_equal(src[bare], crop[bare]) and np.array_equal(tgt[bare], target[bare])


def test_random_overlay_is_sometimes_nothing(face) -> None:
    crop, lm = face
    drawn = [random_overlay(crop.shape[0], lm, np.random.default_rng(s), crop) for s in range(40)]
    assert any(d is None for d in drawn) and any(d is not None for d in drawn)
