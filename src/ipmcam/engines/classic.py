"""Classic engine: region colour statistics of the reference, repainted on each face.

No network: the reference is reduced to a handful of Lab colours (lip
pigment, how much darker or more colourful the lids and cheeks are than the
skin around them, and the skin tone), and each crop is moved towards them with
the same ``tint`` the procedural renderer uses. It is the fallback when no
model can run and the baseline every neural model has to beat.

Lids and cheeks are transferred as offsets from the wearer's own skin rather
than as absolute colours, so a pale reference does not bleach a darker face,
and a reference without eye shadow leaves lids as they are.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ipmcam.engines.base import Engine
from ipmcam.face.masks import EYE_SHADOW, LIPS, SKIN
from ipmcam.ipmnet.color import robust_colour, to_bgr, to_lab
from ipmcam.ipmnet.render import LIPSTICK_KEEP, cheek_blobs, support_box, tint

DEFAULT_STRENGTHS: dict[str, float] = {"lips": 1.0, "eye_shadow": 1.0, "blush": 1.0, "skin": 0.3}

# Cheekbone apexes and points up the cheekbone (face-mesh points 50/280 and
# 117/346) on canonical crops, as fractions of the side: crops are aligned,
# so the cheeks sit here give or take a few pixels and need no landmarks.
_CHEEK_APEXES = np.array([[0.299, 0.537], [0.707, 0.537]])
_CHEEK_UPPERS = np.array([[0.280, 0.467], [0.729, 0.466]])
_CHEEK_RADIUS = 0.085  # of the side: a third of the canonical eye distance
# Skin tone differences between photos are mostly lighting, so lightness moves less than chroma.
_SKIN_AXES = np.array([0.5, 1.0, 1.0], np.float32)
_LID_BANDS = 4  # lids are measured in horizontal bands, from the brow bone to the lower lash line
_STATS_STRIDE = 2  # region means are taken on every other pixel: a quarter of the work, same colours
_LID_EDGE = 0.02  # lid weight below which a skin pixel of the lid rows counts as "beside the eyes"


@dataclass(frozen=True)
class ClassicStyle:
    """What the classic engine keeps of a reference: Lab colours and offsets, float32."""

    lips: np.ndarray  #: (3,) lip pigment, specular highlights left out
    eye_shadow: np.ndarray  #: (_LID_BANDS, 3) lid colour per band minus the skin beside the eyes
    blush: np.ndarray  #: (3,) cheek colour minus the skin well away from the cheeks
    skin: np.ndarray  #: (3,) mean skin colour


@lru_cache(maxsize=4)
def _cheeks(size: int) -> np.ndarray:
    blob = cheek_blobs(size, _CHEEK_APEXES * size, _CHEEK_UPPERS * size, _CHEEK_RADIUS * size)
    blob.setflags(write=False)
    return blob


class _Buffers:
    """Scratch arrays reused across frames: fresh large arrays cost more than the arithmetic on them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.union = np.empty((size, size), np.float32)
        self._flat = {name: np.empty(size * size * 3, np.float32) for name in ("lab", "painted", "bgr", "scratch")}
        self._weights = np.empty((2, size * size), np.float32)  # cheeks, skin

    def image(self, name: str, shape: tuple[int, int]) -> np.ndarray:
        """A contiguous (h, w, 3) float32 view of scratch buffer ``name``."""
        return self._flat[name][: shape[0] * shape[1] * 3].reshape(*shape, 3)

    def weight(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        """Weight map ``index`` (0: cheeks, 1: skin) as an (h, w) view."""
        return self._weights[index, : shape[0] * shape[1]].reshape(shape)

    def weights(self, shape: tuple[int, int]) -> np.ndarray:
        """Both weight maps, flattened: (2, h * w)."""
        return self._weights[:, : shape[0] * shape[1]]


def _band_hats(lids: np.ndarray, rows: slice) -> np.ndarray:
    """(_LID_BANDS, rows) hat functions over the rows where the lids are solid (> 0.5), summing to one."""
    core = np.flatnonzero((lids > 0.5).any(axis=1))
    top, bottom = (core[0], core[-1]) if core.size else (0, 0)
    pos = (np.arange(len(lids), dtype=np.float32)[rows] - top) / max(bottom - top, 1) * (_LID_BANDS - 1)
    pos = np.clip(pos, 0, _LID_BANDS - 1)
    return np.maximum(1.0 - np.abs(pos[None, :] - np.arange(_LID_BANDS, dtype=np.float32)[:, None]), 0.0)


@dataclass(frozen=True)
class _Regions:
    """A face's regions cut to the bounding box of its masks, the only pixels worth converting to Lab.

    Lids are split into ``_LID_BANDS`` overlapping horizontal bands (hat
    functions over the rows the lids span, summing to one), so a shadow dense
    at the lash line and fading towards the brow keeps its gradient.
    """

    box: tuple[slice, slice]
    inside: np.ndarray  #: (h, w) bool: where any mask is non-zero
    lips: np.ndarray
    lip_box: tuple[slice, slice]  #: where in the box the lips are
    skin: np.ndarray
    cheeks: np.ndarray  #: cheek footprint on the skin
    lid_rows: slice  #: rows of the box the lids span
    lids: np.ndarray  #: lid weights in those rows
    hats: np.ndarray  #: (_LID_BANDS, lid rows) band membership of each lid row

    @classmethod
    def of(cls, masks: np.ndarray, buffers: _Buffers) -> _Regions:
        inside = masks.max(axis=0, out=buffers.union) > 0
        box = support_box(inside)
        lids, skin, lips = masks[EYE_SHADOW][box], masks[SKIN][box], masks[LIPS][box]
        lid_rows = support_box(lids)[0]
        cheeks = np.multiply(_cheeks(masks.shape[-1])[box], skin, out=buffers.weight(0, skin.shape))
        return cls(box, inside[box], lips, support_box(lips), skin, cheeks, lid_rows, lids[lid_rows],
                   _band_hats(lids, lid_rows))

    @property
    def shape(self) -> tuple[int, int]:
        return self.inside.shape


def _measure(lab: np.ndarray, r: _Regions) -> ClassicStyle:
    """Colour statistics of one face, ``lab`` being its Lab pixels in ``r.box``."""
    k = _STATS_STRIDE
    # Lids: weighted colour sums per row, then per band.
    lid_lab, lids, hats = lab[r.lid_rows][::k, ::k], r.lids[::k, ::k], r.hats[:, ::k]
    band_totals = hats @ lids.sum(axis=1)
    band_means = (hats @ np.matmul(lids[:, None, :], lid_lab)[:, 0]) / np.maximum(band_totals, 1e-6)[:, None]
    # Skin beside the eyes (skin in the lid rows), on the cheeks, well away from them, and overall.
    skin, cheeks = r.skin[::k, ::k], r.cheeks[::k, ::k]
    areas = np.stack([skin, cheeks, skin * (cheeks < 0.05 * skin), skin])
    first, last = -(-r.lid_rows.start // k), -(-r.lid_rows.stop // k)
    areas[0, :first] = 0  # only skin in the lid rows is "beside the eyes"
    areas[0, last:] = 0
    # and not the skin the lid region fades into towards the crease, where eye shadow thins out
    areas[0, first:last] *= r.lids[np.arange(first, last) * k - r.lid_rows.start][:, ::k] < _LID_EDGE
    areas = areas.reshape(4, -1)
    beside, cheek, away, skin_mean = (areas @ lab[::k, ::k].reshape(-1, 3)) / np.maximum(areas.sum(1), 1e-6)[:, None]
    # A band with (almost) no lid pixels has no colour to speak of: no offset.
    lid_offsets = np.where(band_totals[:, None] > 0.5, band_means - beside, 0.0)
    return ClassicStyle(
        lips=robust_colour(lab[r.lip_box], r.lips[r.lip_box]),
        eye_shadow=lid_offsets.astype(np.float32),
        blush=(cheek - away).astype(np.float32),
        skin=skin_mean.astype(np.float32),
    )


class ClassicEngine(Engine):
    """Region-statistics makeup transfer on the CPU.

    ``strengths`` scales each region (lips, eye_shadow, blush, skin); the
    skin tone only follows the reference partly by default, since much of a
    photo's skin colour is its lighting. One instance runs one batch at a time.
    """

    name = "classic"

    def __init__(self, strengths: dict[str, float] | None = None) -> None:
        unknown = set(strengths or {}) - set(DEFAULT_STRENGTHS)
        if unknown:
            raise ValueError(f"unknown regions {sorted(unknown)}; expected some of {sorted(DEFAULT_STRENGTHS)}")
        self.strengths = {**DEFAULT_STRENGTHS, **(strengths or {})}
        self._buffers: _Buffers | None = None

    def _buffers_for(self, size: int) -> _Buffers:
        if self._buffers is None or self._buffers.size != size:
            self._buffers = _Buffers(size)
        return self._buffers

    def encode_style(self, crop: np.ndarray, masks: np.ndarray) -> ClassicStyle:
        regions = _Regions.of(masks, _Buffers(crop.shape[0]))
        return _measure(to_lab(crop[regions.box]), regions)

    def run(self, crops: np.ndarray, masks: np.ndarray, style: ClassicStyle, intensity: float = 1.0) -> np.ndarray:
        deltas = np.zeros(crops.shape, np.float32)
        if intensity == 0:
            return deltas
        buffers = self._buffers_for(crops.shape[1])
        for crop, crop_masks, delta in zip(crops, masks, deltas):
            self._paint(crop, _Regions.of(crop_masks, buffers), style, intensity, delta, buffers)
        return deltas

    def _paint(self, crop: np.ndarray, r: _Regions, style: ClassicStyle, intensity: float, delta: np.ndarray,
               buffers: _Buffers) -> None:
        """Write one crop's delta into ``delta`` (S, S, 3), which starts at zero."""
        if r.inside.size == 0:  # no face regions: nothing to paint
            return
        lab = to_lab(crop[r.box], out=buffers.image("lab", r.shape))
        own = _measure(lab, r)
        s = {region: amount * intensity for region, amount in self.strengths.items()}

        # Skin, cheeks and lids move by offsets from the face's own colours: one small matrix product.
        skin_area = buffers.weight(1, r.shape)  # lids take the skin shift too, so their offset survives
        np.copyto(skin_area, r.skin)
        np.maximum(skin_area[r.lid_rows], r.lids, out=skin_area[r.lid_rows])
        shifts = np.stack([s["blush"] * (style.blush - own.blush), s["skin"] * _SKIN_AXES * (style.skin - own.skin)])
        painted = buffers.image("painted", r.shape)
        np.matmul(buffers.weights(r.shape).T, shifts.astype(np.float32), out=painted.reshape(-1, 3))
        painted += lab
        row_shifts = r.hats.T @ (s["eye_shadow"] * (style.eye_shadow - own.eye_shadow))
        painted[r.lid_rows] += r.lids[..., None] * row_shifts[:, None, :]
        # Lips take the reference pigment and keep their own lines.
        tint(painted, np.minimum(s["lips"] * r.lips, 1.0), style.lips, own.lips, keep=LIPSTICK_KEEP)

        change = to_bgr(painted, out=buffers.image("bgr", r.shape))
        change -= to_bgr(lab, out=buffers.image("scratch", r.shape))
        change[~r.inside] = 0
        delta[r.box] = change
