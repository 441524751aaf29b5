"""Pseudo-targets for real makeup references: per-region histogram matching.

With no photographed before/after pairs, a real reference's makeup is
supervised as BeautyGAN and SSAT do: inside each region (lips, eye shadow,
skin), the source's colour histogram is matched to the reference's. The
result has the reference's colours in the source's layout; it is a loose
target (it also copies shading), so training weighs it below exact pairs.
"""
from __future__ import annotations

import numpy as np


def match_values(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Map 1-D ``source`` values so their distribution matches ``reference``'s (rank to quantile)."""
    if source.size == 0 or reference.size == 0:
        return source.astype(np.float32)
    order = np.argsort(source, kind="stable")
    quantiles = (np.arange(source.size) + 0.5) / source.size
    ref_sorted = np.sort(reference)
    ref_q = (np.arange(reference.size) + 0.5) / reference.size
    out = np.empty(source.size, np.float32)
    out[order] = np.interp(quantiles, ref_q, ref_sorted)
    return out


def histogram_target(source: np.ndarray, source_masks: np.ndarray, reference: np.ndarray,
                     reference_masks: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The source crop (S,S,3) uint8 with each region's colours matched to the reference's, float32.

    Masks are (C,S,S) float in [0,1]; pixels count for a region where its mask
    exceeds ``threshold``. Outside every region the source is returned as is.
    """
    out = source.astype(np.float32)
    for channel in range(source_masks.shape[0]):
        src_px = source_masks[channel] > threshold
        ref_px = reference_masks[channel] > threshold
        if src_px.sum() < 16 or ref_px.sum() < 16:
            continue
        for c in range(3):
            out[..., c][src_px] = match_values(source[..., c][src_px].astype(np.float32),
                                               reference[..., c][ref_px].astype(np.float32))
    return out
