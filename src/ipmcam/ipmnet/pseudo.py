"""Pseudo-targets for real makeup references: per-region colour-distribution matching.

With no photographed before/after pairs, a real reference's makeup is
supervised as BeautyGAN and SSAT do: inside each region (lips, eye shadow,
skin) the source's colour distribution is matched to the reference's. The
match is done in Lab on robust first and second moments rather than by full
rank-based histogram matching: a flat source region has ranks decided by
sensor noise, and mapping them onto a reference region that also holds
lashes, teeth or hair scatters those colours as speckles. Moments keep the
source's own shading and move its colour, which is what makeup does.

The result is a loose target (it also shifts shading), so training weighs it
below exact pairs.
"""
from __future__ import annotations

import numpy as np

from ipmcam.face.masks import sharp_weight
from ipmcam.ipmnet.color import to_bgr, to_lab

#: Reference pixels between these percentiles (per Lab channel) define its colour.
ROBUST_PERCENTILES = (10.0, 90.0)
#: Bounds on how much a region's contrast may be scaled.
CONTRAST_RANGE = (0.5, 2.0)
#: How far each region (lips, eye shadow, skin) moves to the reference's colours. Lipstick and eye shadow
#: replace a colour; the skin keeps the person's own tone. A reference's skin colour is mostly its owner's
#: skin and its light, not makeup: moving a webcam face 30% of the way to a studio portrait's skin turned
#: faces lighter and pinker whatever the look (5 to 7 ΔE2000 on the darker-skinned man's clips).
REGION_STRENGTH = (1.0, 1.0, 0.0)


def _robust_moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per column of (N, 3) values, ignoring the tails."""
    lo, hi = np.percentile(values, ROBUST_PERCENTILES, axis=0)
    keep = np.all((values >= lo) & (values <= hi), axis=1)
    core = values[keep] if keep.sum() >= 8 else values
    return core.mean(axis=0), core.std(axis=0) + 1e-3


def match_moments(source: np.ndarray, reference: np.ndarray, source_core: np.ndarray | None = None) -> np.ndarray:
    """Lab pixels (N, 3) of ``source`` moved to the reference pixels' robust mean and spread.

    ``source_core`` (default: ``source``) are the pixels whose statistics
    describe the source region, e.g. its inside without the feathered rim.
    """
    mu_s, sd_s = _robust_moments(source if source_core is None else source_core)
    mu_r, sd_r = _robust_moments(reference)
    scale = np.clip(sd_r / sd_s, *CONTRAST_RANGE)
    return (source - mu_s) * scale + mu_r


def region_colour_target(source: np.ndarray, source_masks: np.ndarray, reference: np.ndarray,
                         reference_masks: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The source crop (S,S,3) uint8 with each region's colours matched to the reference's, float32 BGR.

    Masks are (C,S,S) float in [0,1]; pixels count for a region where its mask
    exceeds ``threshold``, and the matched colour is blended in by the mask's
    ``sharp_weight`` and the region's ``REGION_STRENGTH``, so region borders stay soft
    and a skin keeps its own tone. Outside every region the source is
    returned as is. Callers shape the masks to where makeup goes (e.g. the
    eye-shadow channel times the lid profile, so only the upper lid moves).
    """
    src_lab, ref_lab = to_lab(source), to_lab(reference)
    out_lab = src_lab.copy()
    for channel in range(source_masks.shape[0]):
        if REGION_STRENGTH[channel] == 0:
            continue
        src_px = source_masks[channel] > threshold
        ref_px = reference_masks[channel] > threshold
        if src_px.sum() < 16 or ref_px.sum() < 16:
            continue
        support = source_masks[channel] > 0
        moved = match_moments(src_lab[support], ref_lab[ref_px], src_lab[src_px])
        weight = sharp_weight(source_masks[channel][support], channel)[:, None] * REGION_STRENGTH[channel]
        out_lab[support] = out_lab[support] * (1 - weight) + moved * weight
    out = source.astype(np.float32)
    changed = np.any(out_lab != src_lab, axis=-1)
    out[changed] = to_bgr(out_lab[changed])
    return out
