"""Image metrics of the evaluation: region colour distance, PSNR, what lies outside the face, flicker."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ipmcam.face.masks import grow
from ipmcam.ipmnet.color import delta_e2000, robust_colour, to_lab

REGIONS = ("lips", "eye_shadow", "skin")  # face.masks.MASK_CHANNELS order
#: how far past the face-mesh hull "outside the face" starts, as a fraction of the face size
OUTSIDE_MARGIN = 0.06
#: mask weight above which a crop pixel counts as inside a region
CORE = 0.5


def region_colours(crop: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Robust Lab colour (len(REGIONS), 3) of each region of a BGR uint8 crop; masks (C, S, S) in [0, 1]."""
    lab = to_lab(crop)
    return np.stack([robust_colour(lab, np.asarray(m, np.float32), core=CORE) for m in masks[: len(REGIONS)]])


def region_delta_e(output: np.ndarray, output_masks: np.ndarray,
                   reference: np.ndarray, reference_masks: np.ndarray) -> dict[str, float]:
    """CIEDE2000 per region between the output's and the reference's robust region colours, and their mean."""
    de = delta_e2000(region_colours(output, output_masks), region_colours(reference, reference_masks))
    out = {name: float(v) for name, v in zip(REGIONS, de)}
    out["mean"] = float(np.mean(de))
    return out


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """PSNR (dB, peak 255) between two images over the pixels where ``where`` (H, W) is true; inf if equal."""
    sse, count = squared_error(a, b, where)
    return psnr_from(sse, count)


def squared_error(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> tuple[float, int]:
    """(sum of squared differences, number of values) over the selected pixels, for pooling PSNR."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    if where is not None:
        diff = diff[where]
    return float(np.square(diff).sum()), int(diff.size)


def psnr_from(sse: float, count: int) -> float:
    if count == 0:
        return math.nan
    if sse == 0:
        return math.inf
    return float(10 * math.log10(255.0**2 / (sse / count)))


def outside_face(shape: tuple[int, ...], landmarks: np.ndarray, margin: float = OUTSIDE_MARGIN) -> np.ndarray:
    """Boolean (H, W): frame pixels outside the face-mesh hull grown by ``margin`` of the face size (+2 px)."""
    h, w = shape[:2]
    pts = np.asarray(landmarks, np.float64)[:, :2]
    face = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(face, np.round(cv2.convexHull(pts.astype(np.float32))[:, 0] * 16).astype(np.int32), 1,
                       lineType=cv2.LINE_8, shift=4)
    r = int(math.ceil(margin * float(np.ptp(pts, axis=0).max()))) + 2
    return grow(face, r) == 0


class FlickerMeter:
    """Mean absolute frame-to-frame change of a crop-space delta, weighted by the face mask.

    ``add`` one frame's delta (S, S, 3) and mask weight (S, S) in [0, 1]; a
    pair of frames is compared where both weights are (the minimum), so
    ``value`` is in pixel units per channel. ``gap`` (a frame without a face)
    breaks the chain.
    """

    def __init__(self) -> None:
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._sum = 0.0
        self._weight = 0.0
        self._delta_sum = 0.0
        self._delta_weight = 0.0
        self.pairs = 0

    def add(self, delta: np.ndarray, weight: np.ndarray) -> None:
        delta = np.asarray(delta, np.float32)
        weight = np.asarray(weight, np.float32)
        self._delta_sum += float((np.abs(delta).mean(axis=-1) * weight).sum())
        self._delta_weight += float(weight.sum())
        if self._prev is not None:
            prev_delta, prev_weight = self._prev
            both = np.minimum(weight, prev_weight)
            self._sum += float((np.abs(delta - prev_delta).mean(axis=-1) * both).sum())
            self._weight += float(both.sum())
            self.pairs += 1
        self._prev = (delta, weight)

    def gap(self) -> None:
        self._prev = None

    @property
    def value(self) -> float:
        return self._sum / self._weight if self._weight > 0 else math.nan

    @property
    def delta(self) -> float:
        """Mean absolute delta inside the face over all frames (the scale flicker is judged against)."""
        return self._delta_sum / self._delta_weight if self._delta_weight > 0 else math.nan


def temporal_flicker(deltas: Iterable[np.ndarray], weights: Iterable[np.ndarray]) -> float:
    """``FlickerMeter.value`` for a sequence of deltas (S, S, 3) and mask weights (S, S)."""
    meter = FlickerMeter()
    for delta, weight in zip(deltas, weights):
        meter.add(delta, weight)
    return meter.value


def apply_delta(crop: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """The made-up crop, rounded as ``realtime.blend.add_delta`` rounds frames."""
    return np.clip(np.rint(crop.astype(np.float32) + delta), 0, 255).astype(np.uint8)


@dataclass
class OutsideFace:
    """Pooled squared error outside the face over many frames."""

    sse: float = 0.0
    count: int = 0
    changed: int = 0
    frames: int = 0

    def add(self, out: np.ndarray, image: np.ndarray, faces: Sequence[np.ndarray]) -> float:
        """Count one frame; ``faces`` are the landmarks of every face that may have been made up."""
        where = np.ones(image.shape[:2], bool)
        for landmarks in faces:
            where &= outside_face(image.shape, landmarks)
        sse, count = squared_error(out, image, where)
        self.sse += sse
        self.count += count
        self.changed += int(np.any(out != image, axis=-1)[where].sum())
        self.frames += 1
        return psnr_from(sse, count)

    def summary(self) -> dict[str, Any]:
        return {"psnr": psnr_from(self.sse, self.count), "changed_pixels": self.changed, "frames": self.frames}
