"""Procedural makeup: a parametric look θ rendered onto a canonical face crop.

The same renderer makes exact training pairs for the neural model (one look
rendered on two different faces) and does the painting for the classic engine,
so both agree on what "lipstick" or "blush" means.

All colour work happens in CIE Lab: pigments replace chroma (a, b) and shift
lightness while the face's own lightness texture (lip lines, pores, lid
shading) is kept, which is what separates makeup from paint.

Where ``render`` can change a pixel (``paint_region``): wherever the union of
the region masks is non-zero, dilated by ``REACH`` of the crop side. In
practice each component stays inside its own mask (lipstick: lips; eye
shadow: eye_shadow; blush: skin; foundation: skin and eye_shadow); only the
eyeliner, drawn along the upper lash line, may reach past them, which is what
the dilation is for. Every other pixel is returned bit-identical.

Placement follows how makeup is worn, because the renderer is the model's
teacher: eye shadow is a gradient on the upper lid, densest at the lash line
and gone by the crease (nothing under the eye); blush is a soft, light layer;
foundation is a bounded finish over the person's own tone (its mean moves
``FOUNDATION_MAX_SHIFT`` Lab units at most, its fine texture is kept) that
thins out before the hairline and jaw, so there is never a seam.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import cv2
import numpy as np
from numpy.typing import ArrayLike

from ipmcam.face.masks import (
    BROW_A,
    BROW_B,
    EYE_A,
    EYE_B,
    EYE_SHADOW,
    LIPS,
    SKIN,
    lid_profile,
    region_masks,
    sharp_weight,
    smoothstep,
    union,
)
from ipmcam.ipmnet.color import to_bgr, to_lab, weighted_mean

Lab = tuple[float, float, float]

#: how far past the mask union the renderer may paint, as a fraction of the crop side
REACH = 0.012
#: share of the lips' own texture (L, a, b) that survives lipstick: all lip lines, a little chroma
LIPSTICK_KEEP = (1.0, 0.3, 0.3)
#: most a foundation moves the skin's mean colour (Lab units, at strength 1): a finish, never a new skin tone
FOUNDATION_MAX_SHIFT = 3.0
#: foundation fades out over this fraction of the crop side inside the face's outline (hairline, jaw)
FOUNDATION_FADE = 0.07
#: foundation evens out blotches between these scales (Gaussian sigmas, fractions of the crop side): finer
#: detail (pores, lines) is the skin's texture and stays; broader shading is the face's relief and stays too
EVEN_SCALES = (0.012, 0.05)

# Upper lash line, outer corner first, for each eye (mediapipe face-mesh indices).
_UPPER_LID_A = [33, 246, 161, 160, 159, 158, 157, 173, 133]
_UPPER_LID_B = [263, 466, 388, 387, 386, 385, 384, 398, 362]
# Cheekbone apex and a point up and out along the cheekbone, for each cheek.
_CHEEK_A, _CHEEK_A_UP = 50, 117
_CHEEK_B, _CHEEK_B_UP = 280, 346
# Lower lip: centre of its inner and outer edge; where a gloss highlight sits.
_LOWER_LIP = [14, 17]
_MOUTH_CORNERS = [61, 291]


# --------------------------------------------------------------------------- parameters


@dataclass
class Lipstick:
    """Lip pigment of Lab ``colour``; ``gloss`` adds wet highlights, ``matte`` flattens them."""

    colour: Lab = (42.0, 60.0, 35.0)
    opacity: float = 0.0
    gloss: float = 0.0
    matte: float = 0.0


@dataclass
class EyeShadow:
    """Upper-lid colour, densest at the lash line.

    ``extent`` is how far towards the crease it reaches (1: up to the
    crease, ``face.masks.CREASE``); ``fade`` is how gradually it thins out on the way
    (0: even colour up to its top, 1: a fade over the whole lid).
    """

    colour: Lab = (40.0, 12.0, 20.0)
    opacity: float = 0.0
    fade: float = 0.5
    extent: float = 1.0


@dataclass
class Eyeliner:
    """Line along the upper lash line; ``thickness`` is a fraction of the eye width (0: none).

    ``wing`` in [0, 1] extends it past the outer corner, up towards the brow's tail.
    """

    colour: Lab = (12.0, 0.0, 0.0)
    thickness: float = 0.0
    wing: float = 0.0


@dataclass
class Blush:
    """Soft elliptical colour on the cheekbones.

    ``radius`` is a fraction of the distance between the eyes; ``lift`` in
    [-1, 1] slides it along the cheekbone (positive: up and out, towards the temple).
    """

    colour: Lab = (62.0, 35.0, 12.0)
    opacity: float = 0.0
    radius: float = 0.3
    lift: float = 0.0


@dataclass
class Foundation:
    """A finish over the skin: a tint towards ``colour`` at ``strength`` (the mean moves at most
    ``FOUNDATION_MAX_SHIFT``), and ``smoothing``: blotches and redness evened out, fine texture kept."""

    colour: Lab = (68.0, 12.0, 18.0)
    strength: float = 0.0
    smoothing: float = 0.0


_COMPONENTS = {"lipstick": Lipstick, "eye_shadow": EyeShadow, "eyeliner": Eyeliner, "blush": Blush, "foundation": Foundation}

# Base pigments (Lab) that random looks jitter around: the common shades of each product.
LIP_SHADES: dict[str, Lab] = {
    "red": (42, 62, 38), "deep red": (32, 50, 25), "orange red": (50, 60, 50), "coral": (60, 48, 36),
    "pink": (60, 45, 5), "hot pink": (52, 65, -5), "nude": (62, 20, 18), "rose": (52, 35, 12),
    "berry": (35, 45, 5), "plum": (30, 35, -15), "purple": (35, 45, -30), "brown": (38, 22, 20),
}
SHADOW_SHADES: dict[str, Lab] = {
    "brown": (40, 12, 20), "taupe": (50, 6, 10), "gold": (65, 5, 40), "bronze": (45, 18, 30),
    "pink": (62, 28, 8), "peach": (68, 20, 25), "plum": (35, 28, -12), "purple": (40, 35, -35),
    "smoky": (28, 2, 2), "navy": (28, 8, -30), "green": (45, -25, 20), "champagne": (78, 3, 15),
}
LINER_SHADES: dict[str, Lab] = {"black": (10, 0, 0), "brown": (22, 10, 14), "navy": (18, 5, -20)}
BLUSH_SHADES: dict[str, Lab] = {
    "pink": (65, 35, 8), "peach": (70, 25, 25), "coral": (62, 40, 28), "rose": (55, 35, 10), "berry": (48, 40, 5),
}
FOUNDATION_SHADES: dict[str, Lab] = {
    "porcelain": (80, 8, 14), "light": (73, 11, 18), "medium": (63, 14, 22), "tan": (55, 15, 24), "deep": (42, 14, 20),
}


def _shade(rng: np.random.Generator, shades: dict[str, Lab], jitter: float) -> Lab:
    base = np.array(list(shades.values())[rng.integers(len(shades))], np.float64)
    lab = base + rng.normal(0.0, jitter, 3) * np.array([0.8, 1.0, 1.0])
    return (float(np.clip(lab[0], 5, 95)), float(lab[1]), float(lab[2]))


def _present(rng: np.random.Generator, probability: float, lo: float, hi: float) -> float:
    """An amount in [lo, hi], or 0 (component absent) with probability 1 - ``probability``."""
    return float(rng.uniform(lo, hi)) if rng.random() < probability else 0.0


@dataclass
class MakeupParams:
    """A complete look θ. The default is no makeup at all; presets are ``to_dict`` dictionaries."""

    lipstick: Lipstick = field(default_factory=Lipstick)
    eye_shadow: EyeShadow = field(default_factory=EyeShadow)
    eyeliner: Eyeliner = field(default_factory=Eyeliner)
    blush: Blush = field(default_factory=Blush)
    foundation: Foundation = field(default_factory=Foundation)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain JSON-able dict: components by name, colours as [L, a, b] lists."""
        return {name: {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(getattr(self, name)).items()}
                for name in _COMPONENTS}

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, Any]]) -> MakeupParams:
        """Inverse of ``to_dict``; missing components or fields keep their (absent) defaults."""
        unknown = set(data) - set(_COMPONENTS)
        if unknown:
            raise ValueError(f"unknown makeup components: {sorted(unknown)}")
        parts = {}
        for name, kind in _COMPONENTS.items():
            values = dict(data.get(name, {}))
            if "colour" in values:
                values["colour"] = tuple(float(c) for c in values["colour"])
            parts[name] = kind(**{k: v if k == "colour" else float(v) for k, v in values.items()})
        return cls(**parts)

    @classmethod
    def random(cls, rng: np.random.Generator) -> MakeupParams:
        """A plausible random look; each component is sometimes absent or barely there."""
        return cls(
            lipstick=Lipstick(
                colour=_shade(rng, LIP_SHADES, 5.0), opacity=_present(rng, 0.9, 0.6, 1.0),
                gloss=_present(rng, 0.35, 0.1, 0.8), matte=_present(rng, 0.3, 0.2, 0.9),
            ),
            eye_shadow=EyeShadow(
                # Mostly present and dense at the lash line, as in the photos people pick as a look: a faint
                # shadow teaches the model that a reference's lid colour is mostly its owner's skin.
                colour=_shade(rng, SHADOW_SHADES, 5.0), opacity=_present(rng, 0.85, 0.5, 0.95),
                fade=float(rng.uniform(0.2, 1.0)), extent=float(rng.uniform(0.45, 1.0)),
            ),
            eyeliner=Eyeliner(
                colour=_shade(rng, LINER_SHADES, 3.0), thickness=_present(rng, 0.45, 0.03, 0.11),
                wing=_present(rng, 0.5, 0.2, 1.0),
            ),
            blush=Blush(
                colour=_shade(rng, BLUSH_SHADES, 4.0), opacity=_present(rng, 0.6, 0.08, 0.35),
                radius=float(rng.uniform(0.25, 0.42)), lift=float(rng.uniform(-0.5, 1.0)),
            ),
            foundation=Foundation(
                colour=_shade(rng, FOUNDATION_SHADES, 3.0), strength=_present(rng, 0.6, 0.05, 0.4),
                smoothing=_present(rng, 0.6, 0.2, 0.8),
            ),
        )


# --------------------------------------------------------------------------- primitives


def support_box(weight: np.ndarray) -> tuple[slice, slice]:
    """Bounding box (rows, cols) of the non-zero pixels of a 2-D map; empty slices if there are none."""
    rows, cols = np.flatnonzero(weight.any(axis=1)), np.flatnonzero(weight.any(axis=0))
    if rows.size == 0:
        return slice(0, 0), slice(0, 0)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def tint(lab: np.ndarray, weight: np.ndarray, target: ArrayLike, mean: ArrayLike,
         keep: tuple[float, float, float] = (1.0, 0.35, 0.35)) -> np.ndarray:
    """Move a region of Lab pixels towards a pigment colour, keeping part of its own texture; in place.

    Fully applied, a pixel becomes ``target + keep * (pixel - mean)`` per
    channel: ``mean`` is the region's current colour, so keep = 1 is a pure
    shift (all texture kept) and keep = 0 a flat fill. Keeping L texture while
    replacing chroma is what makes lipstick look like lipstick, not paint.
    ``weight`` (H, W) in [0, 1] blends between the two (mask times opacity).
    Only the bounding box of non-zero weight is touched, which keeps small
    regions (lips, liner) cheap. Returns ``lab``.
    """
    box = support_box(weight)
    keep_arr = np.asarray(keep, np.float32)
    region = lab[box]
    step = region * (keep_arr - 1)  # goal - pixel = (target - keep * mean) + (keep - 1) * pixel
    step += np.asarray(target, np.float32) - keep_arr * np.asarray(mean, np.float32)
    step *= weight[box][..., None]
    region += step
    return lab


def paint_region(masks: np.ndarray) -> np.ndarray:
    """Boolean (S, S): every pixel ``render`` may change (non-zero mask union, dilated by ``REACH``)."""
    size = masks.shape[-1]
    r = max(1, round(REACH * size))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate((union(masks) > 0).astype(np.uint8), disc) > 0


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return xx, yy


def cheek_blobs(size: int, apexes: np.ndarray, uppers: np.ndarray, radius: float) -> np.ndarray:
    """Blush footprint (S, S) in [0, 1]: one Gaussian ellipse per cheek.

    Each ellipse is centred on an ``apexes`` point (k, 2), elongated 1.4x along
    the cheekbone, i.e. towards the matching ``uppers`` point; ``radius`` in pixels.
    """
    xx, yy = _grid(size)
    out = np.zeros((size, size), np.float32)
    for apex, upper in zip(np.asarray(apexes, np.float32), np.asarray(uppers, np.float32)):
        axis = (upper - apex) / (np.linalg.norm(upper - apex) + 1e-6)
        dx, dy = xx - apex[0], yy - apex[1]
        along = dx * axis[0] + dy * axis[1]
        across = dy * axis[0] - dx * axis[1]
        out = np.maximum(out, np.exp(-0.5 * ((along / (1.4 * radius)) ** 2 + (across / radius) ** 2)))
    return out


# --------------------------------------------------------------------------- geometry from landmarks


@dataclass(frozen=True)
class _Eye:
    centre: np.ndarray
    brow: np.ndarray
    upper_lid: np.ndarray  # outer corner first

    @property
    def width(self) -> float:
        return float(np.linalg.norm(self.upper_lid[0] - self.upper_lid[-1]))

    @property
    def up(self) -> np.ndarray:
        """Unit vector perpendicular to the eye's corner line, pointing to the brow."""
        axis = self.upper_lid[0] - self.upper_lid[-1]
        normal = np.array([axis[1], -axis[0]]) / (np.linalg.norm(axis) + 1e-9)
        return normal if normal @ (self.brow - self.centre) > 0 else -normal


def _eyes(lm: np.ndarray) -> tuple[_Eye, _Eye]:
    return tuple(
        _Eye(lm[contour].mean(axis=0), lm[brow].mean(axis=0), lm[lid])
        for contour, brow, lid in ((EYE_A, BROW_A, _UPPER_LID_A), (EYE_B, BROW_B, _UPPER_LID_B))
    )


def _liner_alpha(size: int, eye: _Eye, thickness: float, wing: float) -> np.ndarray:
    """Anti-aliased liner coverage (S, S) for one eye: thin at the inner corner, full at the outer, tapered wing."""
    width = eye.width
    half = 0.5 * thickness * width
    pts = eye.upper_lid[::-1].copy()  # inner corner to outer corner
    widths = np.linspace(0.3, 1.0, len(pts)) * half
    if wing > 0:
        outward = (eye.upper_lid[0] - eye.upper_lid[-1]) / (width + 1e-9)
        tip = eye.upper_lid[0] + wing * width * (0.35 * outward + 0.22 * eye.up)
        pts = np.vstack([pts, tip])
        widths = np.append(widths, 0.15 * half)
    pts = pts + eye.up * widths[:, None] * 0.6  # sits on the lashes, grows upwards

    lo = np.floor(pts.min(axis=0) - half - 2).astype(int).clip(0, size)
    hi = np.ceil(pts.max(axis=0) + half + 2).astype(int).clip(0, size)
    yy, xx = np.mgrid[lo[1]:hi[1], lo[0]:hi[0]].astype(np.float64)
    p = np.stack([xx, yy], axis=-1)[..., None, :]  # (h, w, 1, 2)
    a, b = pts[:-1], pts[1:]
    ab = b - a
    s = np.clip(((p - a) * ab).sum(-1) / ((ab * ab).sum(-1) + 1e-9), 0.0, 1.0)  # (h, w, k)
    dist = np.linalg.norm(p - (a + s[..., None] * ab), axis=-1)
    radius = widths[:-1] + s * (widths[1:] - widths[:-1])
    alpha = np.clip(radius - dist + 0.5, 0.0, 1.0).max(axis=-1)
    out = np.zeros((size, size), np.float32)
    out[lo[1]:hi[1], lo[0]:hi[0]] = alpha
    return out


def _ellipse_spot(size: int, centre: np.ndarray, rx: float, ry: float) -> np.ndarray:
    xx, yy = _grid(size)
    return np.exp(-0.5 * (((xx - centre[0]) / rx) ** 2 + ((yy - centre[1]) / ry) ** 2)).astype(np.float32)


# --------------------------------------------------------------------------- components


def face_fade(masks: np.ndarray) -> np.ndarray:
    """(S, S) in [0, 1]: 0 on the face's outline, rising smoothly to 1 ``FOUNDATION_FADE`` of the side inside.

    The outline is the outer edge of the mask union with its holes (eyes,
    brows, mouth) filled, so the fade follows the hairline and the jaw only.
    """
    size = masks.shape[-1]
    inside = (union(masks) > 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(inside, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(inside)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    dist = cv2.distanceTransform(filled, cv2.DIST_L2, 5)
    return smoothstep(dist / (FOUNDATION_FADE * size)).astype(np.float32)


def _band(lab: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Lab blurred with a Gaussian of ``sigma`` px over the ``weight`` pixels only (normalised)."""
    num = cv2.GaussianBlur(lab * weight[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(weight, (0, 0), sigma)[..., None]
    return num / np.maximum(den, 1e-3)


def _foundation(lab: np.ndarray, masks: np.ndarray, p: Foundation) -> np.ndarray:
    size = lab.shape[0]
    area = np.maximum(masks[SKIN], masks[EYE_SHADOW]) * face_fade(masks)
    if p.smoothing > 0:
        skin = (masks[SKIN] > 0.5).astype(np.float32)
        fine, broad = (_band(lab, skin, scale * size) for scale in EVEN_SCALES)
        blotches = (fine - broad) * np.array([0.4, 0.8, 0.8], np.float32)  # redness more than shading
        lab = lab - (p.smoothing * area)[..., None] * blotches
    if p.strength > 0:
        mean = weighted_mean(lab, masks[SKIN])
        offset = np.asarray(p.colour, np.float32) - mean
        offset *= min(1.0, FOUNDATION_MAX_SHIFT / (float(np.linalg.norm(offset)) + 1e-6))
        lab = lab + (p.strength * area)[..., None] * offset
    return lab


def _blush(lab: np.ndarray, lm: np.ndarray, masks: np.ndarray, p: Blush) -> np.ndarray:
    eyes = _eyes(lm)
    iod = float(np.linalg.norm(eyes[0].centre - eyes[1].centre))
    apexes = lm[[_CHEEK_A, _CHEEK_B]]
    uppers = lm[[_CHEEK_A_UP, _CHEEK_B_UP]]
    centres = apexes + p.lift * (uppers - apexes)
    blob = cheek_blobs(lab.shape[0], centres, centres + (uppers - apexes), p.radius * iod) * masks[SKIN]
    return tint(lab, p.opacity * blob, p.colour, weighted_mean(lab, blob), keep=(1.0, 0.6, 0.6))


def _eye_shadow(lab: np.ndarray, lm: np.ndarray, masks: np.ndarray, p: EyeShadow) -> np.ndarray:
    area = sharp_weight(masks[EYE_SHADOW], EYE_SHADOW) * lid_profile(lab.shape[0], lm, p.fade, p.extent)
    return tint(lab, p.opacity * area, p.colour, weighted_mean(lab, area), keep=(0.85, 0.35, 0.35))


def _eyeliner(lab: np.ndarray, lm: np.ndarray, p: Eyeliner) -> np.ndarray:
    alpha = np.maximum.reduce([_liner_alpha(lab.shape[0], eye, p.thickness, p.wing) for eye in _eyes(lm)])
    return tint(lab, 0.92 * alpha, p.colour, weighted_mean(lab, alpha), keep=(0.25, 0.0, 0.0))


def _lipstick(lab: np.ndarray, lm: np.ndarray, masks: np.ndarray, p: Lipstick) -> np.ndarray:
    lips = sharp_weight(masks[LIPS], LIPS)
    size = lab.shape[0]
    light = lab[..., 0]
    sheen = np.maximum(light - cv2.GaussianBlur(light, (0, 0), 0.012 * size), 0.0)  # the lips' own highlights
    tint(lab, p.opacity * lips, p.colour, weighted_mean(lab, masks[LIPS]), keep=LIPSTICK_KEEP)
    if p.gloss > 0 or p.matte > 0:
        mouth_width = float(np.linalg.norm(lm[_MOUTH_CORNERS[0]] - lm[_MOUTH_CORNERS[1]]))
        lower = lm[_LOWER_LIP]
        spot = _ellipse_spot(size, lower.mean(axis=0), 0.16 * mouth_width, 0.22 * np.linalg.norm(lower[0] - lower[1]))
        lab[..., 0] += lips * (p.gloss * (0.8 * sheen + 22.0 * spot) - p.matte * 0.8 * sheen)
        lab[..., 1:] *= (1.0 - 0.5 * p.gloss * lips * spot)[..., None]  # specular light is colourless
    return lab


def render(crop: np.ndarray, landmarks: np.ndarray, params: MakeupParams, masks: np.ndarray | None = None) -> np.ndarray:
    """The crop (S, S, 3) uint8 BGR wearing look ``params``; landmarks (478, 2) in crop pixels.

    Components are layered as they are applied on a face: foundation, blush,
    eye shadow, eyeliner, lipstick. Pixels outside ``paint_region(masks)``,
    and pixels no component touched, are returned unchanged (bit-exact).
    """
    lm = np.asarray(landmarks, np.float64)[:, :2]
    size = crop.shape[0]
    masks = region_masks(lm, size) if masks is None else masks
    original = to_lab(crop)
    lab = original.copy()
    if params.foundation.strength > 0 or params.foundation.smoothing > 0:
        lab = _foundation(lab, masks, params.foundation)
    if params.blush.opacity > 0:
        lab = _blush(lab, lm, masks, params.blush)
    if params.eye_shadow.opacity > 0:
        lab = _eye_shadow(lab, lm, masks, params.eye_shadow)
    if params.eyeliner.thickness > 0:
        lab = _eyeliner(lab, lm, params.eyeliner)
    if params.lipstick.opacity > 0 or params.lipstick.gloss > 0 or params.lipstick.matte > 0:
        lab = _lipstick(lab, lm, masks, params.lipstick)
    changed = paint_region(masks) & np.any(lab != original, axis=-1)
    out = crop.copy()
    out[changed] = np.rint(to_bgr(lab[changed])).astype(np.uint8)
    return out


class Pair(NamedTuple):
    """One exact training example: the same look on the reference face and on the source face."""

    source: np.ndarray
    reference: np.ndarray
    target: np.ndarray


def make_pair(source: np.ndarray, source_landmarks: np.ndarray, other: np.ndarray, other_landmarks: np.ndarray,
              params: MakeupParams) -> Pair:
    """(X, R(Y, θ), R(X, θ)) from a bare source face X and a second face Y, crops with crop-space landmarks.

    The target is exactly what the source looks like wearing the reference's
    makeup, which no photographed pair can give.
    """
    return Pair(source, render(other, other_landmarks, params), render(source, source_landmarks, params))
