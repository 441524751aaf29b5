"""Region masks drawn from landmarks: where each region lies and where none may."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ipmcam.face import align, masks
from ipmcam.face.tracker import FaceTracker


@pytest.fixture(scope="module")
def crop_landmarks(shared_data) -> np.ndarray:
    frame = cv2.imread(str(shared_data / "stills" / "d9.jpg"))
    with FaceTracker(static=True, smooth=False) as tracker:
        landmarks = tracker(frame, 0.0)[0].landmarks
    return align.transform_points(landmarks, align.crop_transform(landmarks))


def _at(m: np.ndarray, point: np.ndarray) -> float:
    x, y = np.round(point).astype(int)
    return float(m[y, x])


def test_shape_dtype_range(crop_landmarks: np.ndarray) -> None:
    m = masks.region_masks(crop_landmarks, 256)
    assert m.shape == (len(masks.MASK_CHANNELS), 256, 256) and m.dtype == np.float32
    assert m.min() >= 0.0 and m.max() <= 1.0


def test_regions_lie_where_they_should(crop_landmarks: np.ndarray) -> None:
    m = masks.region_masks(crop_landmarks, 256)
    lm = crop_landmarks
    lower_lip = (lm[17] + lm[14]) / 2
    assert _at(m[masks.LIPS], lower_lip) > 0.6
    cheek = lm[50]  # a cheek point of the mesh
    assert _at(m[masks.SKIN], cheek) > 0.9
    lid = lm[159] + (lm[105] - lm[159]) * 0.15  # just above the upper lash line
    assert _at(m[masks.EYE_SHADOW], lid) > 0.5


def test_eye_shadow_is_the_upper_lid_only(crop_landmarks: np.ndarray) -> None:
    """Below the eye is under-eye skin, never eye shadow: colour there reads as a ring round the eye. On the
    lid the region is densest at the lash line and thins out to nothing at the crease."""
    m = masks.region_masks(crop_landmarks, 256)
    lm = crop_landmarks
    for upper, lower, brow in ((159, 145, 105), (386, 374, 334)):  # each eye's lid centres and its brow
        under_eye = lm[lower] + (lm[lower] - lm[upper]) * 1.2
        assert _at(m[masks.EYE_SHADOW], under_eye) < 0.02
        assert _at(m[masks.SKIN], under_eye) > 0.9
        lid = [_at(m[masks.EYE_SHADOW], lm[upper] + (lm[brow] - lm[upper]) * share) for share in (0.15, 0.35, 0.6)]
        assert lid[0] > 0.7 and lid[1] < 0.5 * lid[0] and lid[2] < 0.02  # dense at the lashes, gone by the crease


def test_eyes_mouth_and_brows_belong_to_no_region(crop_landmarks: np.ndarray) -> None:
    m = masks.union(masks.region_masks(crop_landmarks, 256))
    lm = crop_landmarks
    for idx in (468, 473):  # iris centres
        assert _at(m, lm[idx]) < 0.05
    brow = (lm[52] + lm[105]) / 2  # middle of a brow, between its lower and upper landmarks
    assert _at(m, brow) < 0.05
    # Far from the face (crop corner) there is nothing.
    assert m[:5, :5].max() == 0.0


def test_regions_do_not_stack_beyond_one(crop_landmarks: np.ndarray) -> None:
    m = masks.region_masks(crop_landmarks, 256, feather=0)
    assert m.sum(axis=0).max() <= 1.0 + 1e-6


def test_scale_invariance(crop_landmarks: np.ndarray) -> None:
    small = masks.region_masks(crop_landmarks / 2, 128)
    big = masks.region_masks(crop_landmarks, 256)
    big_down = np.stack([cv2.resize(c, (128, 128), interpolation=cv2.INTER_AREA) for c in big])
    assert np.abs(small - big_down).mean() < 0.02


def test_lipstick_stops_at_the_lip_line_and_eye_shadow_keeps_its_ramp(crop_landmarks: np.ndarray) -> None:
    """Lips: covered fully up to their edge (mask 0.5) and not past it, a short ramp across it. Eye shadow:
    fully where its mask is 0.5 or more, the outer half of the ramp (the lid's fade) blends."""
    stack = masks.region_masks(crop_landmarks, 256)
    m = stack[masks.LIPS]
    weight = masks.sharp_weight(m, masks.LIPS)
    assert weight.dtype == np.float32
    assert np.array_equal(weight[m >= 2 / 3], np.ones_like(weight[m >= 2 / 3]))
    assert not weight[m <= 1 / 3].any()
    ramp = (m > 1 / 3) & (m < 2 / 3)
    assert ramp.any() and np.allclose(weight[ramp], 3 * m[ramp] - 1, atol=1e-6)
    assert np.allclose(weight[np.isclose(m, 0.5, atol=0.01)], 0.5, atol=0.04)  # half-covered on the lip line
    e = stack[masks.EYE_SHADOW]
    shadow = masks.sharp_weight(e, masks.EYE_SHADOW)
    assert np.array_equal(shadow[e >= 0.5], np.ones_like(shadow[e >= 0.5]))
    fade = (e > 0) & (e < 0.5)
    assert fade.any() and np.allclose(shadow[fade], 2 * e[fade])
    assert not shadow[e == 0].any()


def _polygon(points: np.ndarray, size: int = 256) -> np.ndarray:
    canvas = np.zeros((size, size), np.uint8)
    cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
    return canvas > 0


def test_the_line_where_the_lips_meet_stays_bare(crop_landmarks: np.ndarray) -> None:
    """No lipstick on the mouth's opening nor on the pixel round it (the shadow where the lips meet)."""
    lips = masks.sharp_weight(masks.region_masks(crop_landmarks, 256)[masks.LIPS], masks.LIPS)
    opening = _polygon(crop_landmarks[masks.LIPS_INNER])
    rim = cv2.dilate(opening.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    rim &= ~opening
    assert rim.sum() > 100 and lips[rim].mean() < 0.05 and lips[rim].max() < 0.5  # pixel stairs: not 0 everywhere
    # ... and the lips themselves are painted a little further in.
    near = cv2.dilate(opening.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert lips[near & ~rim & ~opening].max() > 0.9


def test_a_thin_lip_is_covered_in_full(crop_landmarks: np.ndarray) -> None:
    """The still's lower lip is 5 px tall at 256 px: most of it is fully covered, not a half-tinted strip."""
    lm = crop_landmarks
    assert 3 < lm[17][1] - lm[14][1] < 7  # the lower lip's height in this still
    lips = masks.sharp_weight(masks.region_masks(lm, 256)[masks.LIPS], masks.LIPS)
    x = int(round((lm[17][0] + lm[14][0]) / 2))
    column = lips[int(lm[14][1]):int(lm[17][1]) + 1, x]
    assert (column >= 0.99).sum() >= 2
    vermilion = _polygon(lm[masks.LIPS_OUTER]) & ~_polygon(lm[masks.LIPS_INNER])
    assert lips[vermilion].mean() > 0.3
