"""Histogram-matching pseudo-targets."""
from __future__ import annotations

import numpy as np

from ipmnet.pseudo import histogram_target, match_values


def test_match_values_takes_the_reference_distribution_and_keeps_order() -> None:
    rng = np.random.default_rng(0)
    src = rng.normal(0, 1, 500)
    ref = rng.normal(100, 5, 800)
    out = match_values(src, ref)
    assert abs(out.mean() - 100) < 1 and abs(out.std() - 5) < 0.5
    assert np.array_equal(np.argsort(out), np.argsort(src))


def test_regions_take_reference_colours_and_the_rest_is_untouched() -> None:
    src = np.full((32, 32, 3), 100, np.uint8)
    src[8:16, 8:24] = (60, 60, 160)  # "lips"
    ref = np.full((32, 32, 3), 100, np.uint8)
    ref[4:12, 4:20] = (40, 20, 220)
    src_m = np.zeros((3, 32, 32), np.float32)
    src_m[0, 8:16, 8:24] = 1
    ref_m = np.zeros_like(src_m)
    ref_m[0, 4:12, 4:20] = 1
    out = histogram_target(src, src_m, ref, ref_m)
    np.testing.assert_allclose(out[8:16, 8:24], np.broadcast_to([40, 20, 220], (8, 16, 3)))
    outside = src_m[0] == 0
    assert np.array_equal(out[outside], src[outside].astype(np.float32))
