"""CIE Lab conversions, colour statistics and the CIEDE2000 colour difference.

Makeup is judged by eye, so colours are handled in CIE Lab (D65, sRGB
gamma undone by OpenCV): L in [0, 100], a and b roughly in [-128, 127].
Distances are CIEDE2000 because plain Lab distance over-weights saturated
reds, which is exactly where lipstick lives.
"""
from __future__ import annotations

import cv2
import numpy as np


def to_lab(bgr: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Lab float32 (..., 3) from BGR pixels (..., 3): uint8, or float in pixel units [0, 255].

    ``out`` (float32, C-contiguous, same shape) lets a hot loop reuse one buffer.
    """
    out = np.empty(np.shape(bgr), np.float32) if out is None else out
    np.multiply(bgr, np.float32(1 / 255), out=out)
    if out.size:
        row = out.reshape(1, -1, 3)  # OpenCV converts one long row far faster than many short ones
        cv2.cvtColor(row, cv2.COLOR_BGR2Lab, dst=row)
    return out


def to_bgr(lab: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """BGR float32 in pixel units, clipped to [0, 255], from Lab (..., 3); ``out`` as for ``to_lab``."""
    out = np.empty(np.shape(lab), np.float32) if out is None else out
    if out.size == 0:
        return out
    cv2.cvtColor(np.ascontiguousarray(lab, np.float32).reshape(1, -1, 3), cv2.COLOR_Lab2BGR, dst=out.reshape(1, -1, 3))
    out *= np.float32(255)
    return np.clip(out, 0, 255, out=out)


def weighted_mean(lab: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Mean colour (3,) of Lab pixels (..., 3) under a soft weight map (...); zeros if the weight is empty."""
    w = weight.reshape(-1).astype(np.float32)
    total = float(w.sum())
    if total <= 1e-6:
        return np.zeros(3, np.float32)
    return (w @ lab.reshape(-1, 3)) / np.float32(total)


def robust_colour(lab: np.ndarray, weight: np.ndarray, core: float = 0.5, highlight_pct: float = 90.0) -> np.ndarray:
    """Median colour (3,) of the pixels where ``weight`` > ``core``, specular highlights left out.

    Gloss and flash highlights are bright and nearly colourless; they say
    nothing about the pigment, so pixels above the ``highlight_pct``
    percentile of L are dropped before taking the per-channel median.
    Falls back to the weighted mean when too few pixels are confidently inside.
    """
    px = lab[weight > core]
    if len(px) < 8:
        return weighted_mean(lab, weight)
    px = px[px[:, 0] <= np.percentile(px[:, 0], highlight_pct)]
    return np.median(px, axis=0).astype(np.float32)


def delta_e2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 difference between Lab colours (..., 3), broadcast; float64 (...)."""
    l1, a1, b1 = np.moveaxis(np.asarray(lab1, np.float64), -1, 0)
    l2, a2, b2 = np.moveaxis(np.asarray(lab2, np.float64), -1, 0)
    c_bar7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(c_bar7 / (c_bar7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    achromatic = c1p * c2p == 0

    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(achromatic, 0.0, dh)
    d_l, d_c = l2 - l1, c2p - c1p
    d_h = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))

    l_bar, c_bar = (l1 + l2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_bar = np.where(np.abs(h1p - h2p) > 180, np.where(h_sum < 360, h_sum + 360, h_sum - 360), h_sum) / 2
    h_bar = np.where(achromatic, h_sum, h_bar)
    t = (
        1
        - 0.17 * np.cos(np.radians(h_bar - 30))
        + 0.24 * np.cos(np.radians(2 * h_bar))
        + 0.32 * np.cos(np.radians(3 * h_bar + 6))
        - 0.20 * np.cos(np.radians(4 * h_bar - 63))
    )
    c_bar7p = c_bar**7
    r_c = 2 * np.sqrt(c_bar7p / (c_bar7p + 25.0**7))
    r_t = -np.sin(np.radians(60 * np.exp(-(((h_bar - 275) / 25) ** 2)))) * r_c
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / np.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * c_bar
    s_h = 1 + 0.015 * c_bar * t
    tl, tc, th = d_l / s_l, d_c / s_c, d_h / s_h
    return np.sqrt(tl**2 + tc**2 + th**2 + r_t * tc * th)
