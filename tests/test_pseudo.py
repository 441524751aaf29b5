"""Pseudo-targets for real references: colours move, shading stays, nothing outside changes."""
from __future__ import annotations

import numpy as np

from ipmcam.face.masks import SKIN
from ipmcam.ipmnet.color import to_lab
from ipmcam.ipmnet.pseudo import REGION_STRENGTH, match_moments, region_colour_target


def test_match_moments_takes_the_reference_mean_and_keeps_order() -> None:
    rng = np.random.default_rng(0)
    src = rng.normal([50, 10, 10], 2.0, (500, 3))
    ref = rng.normal([40, 50, 30], 3.0, (800, 3))
    out = match_moments(src, ref)
    np.testing.assert_allclose(out.mean(axis=0), [40, 50, 30], atol=0.5)
    assert np.array_equal(np.argsort(out[:, 0]), np.argsort(src[:, 0]))


def test_outliers_in_the_reference_do_not_scatter_colours() -> None:
    rng = np.random.default_rng(1)
    src = rng.normal([60, 15, 15], 1.0, (400, 3))
    ref = np.vstack([rng.normal([45, 55, 30], 1.0, (360, 3)), rng.normal([5, 0, 0], 1.0, (40, 3))])  # lashes
    out = match_moments(src, ref)
    assert out.std(axis=0).max() < 3.0


def test_regions_take_reference_colours_and_the_rest_is_untouched() -> None:
    src = np.full((32, 32, 3), 100, np.uint8)
    src[8:16, 8:24] = (60, 60, 160)  # "lips"
    ref = np.full((32, 32, 3), 100, np.uint8)
    ref[4:12, 4:20] = (40, 20, 220)
    src_m = np.zeros((3, 32, 32), np.float32)
    src_m[0, 8:16, 8:24] = 1
    ref_m = np.zeros_like(src_m)
    ref_m[0, 4:12, 4:20] = 1
    out = region_colour_target(src, src_m, ref, ref_m)
    lab_out = to_lab(np.clip(np.rint(out[8:16, 8:24]), 0, 255).astype(np.uint8)).reshape(-1, 3).mean(axis=0)
    lab_ref = to_lab(ref[4:12, 4:20]).reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(lab_out, lab_ref, atol=1.5)
    outside = src_m[0] == 0
    assert np.array_equal(out[outside], src[outside].astype(np.float32))


def test_skin_keeps_the_persons_own_tone() -> None:
    """A reference's skin is its owner's tone and light, not makeup: the skin of the target is the source's."""
    src, ref = np.full((32, 32, 3), (90, 120, 170), np.uint8), np.full((32, 32, 3), (150, 170, 200), np.uint8)
    masks = np.zeros((3, 32, 32), np.float32)
    masks[SKIN] = 1
    assert REGION_STRENGTH[SKIN] == 0
    out = region_colour_target(src, masks, ref, masks)
    assert np.array_equal(out, src.astype(np.float32))
