"""One-Euro filter: steady points steady, moving points followed."""
from __future__ import annotations

import numpy as np

from ipmcam.face.smoothing import OneEuroFilter


def test_constant_signal_is_unchanged() -> None:
    f = OneEuroFilter()
    for i in range(30):
        out = f(np.array([5.0, -3.0]), i / 30)
    np.testing.assert_allclose(out, [5.0, -3.0])


def test_jitter_is_reduced() -> None:
    rng = np.random.default_rng(1)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    noisy = rng.normal(0, 1.0, (300, 2))
    out = np.array([f(x, i / 30) for i, x in enumerate(noisy)])
    assert out[30:].std() < 0.5 * noisy[30:].std()


def test_fast_motion_lags_less_with_beta() -> None:
    t = np.arange(60) / 30
    path = np.stack([300 * t, np.zeros_like(t)], axis=1)  # 300 px/s
    lag = {}
    for beta in (0.0, 0.05):
        f = OneEuroFilter(min_cutoff=1.0, beta=beta)
        out = np.array([f(x, ti) for x, ti in zip(path, t)])
        lag[beta] = abs(path[-1, 0] - out[-1, 0])
    assert lag[0.05] < 0.5 * lag[0.0]
    assert lag[0.05] < 5.0


def test_reset_on_shape_change_or_time_going_back() -> None:
    f = OneEuroFilter()
    f(np.zeros(2), 1.0)
    np.testing.assert_array_equal(f(np.ones(3), 2.0), np.ones(3))
    np.testing.assert_array_equal(f(np.full(3, 7.0), 0.5), np.full(3, 7.0))
