"""Makeup region masks drawn from face-mesh landmarks.

No face-parsing network can ship with the product, so regions are polygons
over mediapipe's 478 landmarks, feathered with a Gaussian. The same function
draws the masks for training crops and for live crops.

Channel order of the mask stack (``MASK_CHANNELS``): lips, eye shadow, skin.
Eyeballs, the inside of the mouth and the brows belong to no channel, so the
generator never recolours them.
"""
from __future__ import annotations

import cv2
import numpy as np

from ipmcam.face.regions import (  # noqa: F401 - the region names are part of this module's interface
    BROW_A,
    BROW_B,
    EYE_A,
    EYE_B,
    EYE_SHADOW,
    FACE_OVAL,
    LIPS,
    LIPS_INNER,
    LIPS_OUTER,
    MASK_CHANNELS,
    SKIN,
)

#: the top of each upper lash line (face-mesh indices), where the lid starts
UPPER_LID_TOP_A, UPPER_LID_TOP_B = 159, 386

#: eye-shadow geometry: the crease, where a full-extent shadow has faded out, as a fraction of the way from
#: the top of the upper lash line to the brow; and how far below the eye centre the colour may wrap round
#: the corners, in units of the eye-centre-to-brow distance
CREASE = 0.5
CORNER_WRAP = 0.12
#: how gradually the eye-shadow region itself thins out from the lash line to the crease (``lid_profile``)
LID_FADE = 0.4
#: how far past the line between the lips no colour lands, as a fraction of the crop side (1 px at 256)
MOUTH_LINE_MARGIN = 1.0 / 256
#: the lips' feather as a share of the other regions': a lower lip 5 px tall at 256 px is covered in full
LIPS_FEATHER = 0.5
#: slope of ``edge_weight``'s ramp across a region's edge (mask 0.5): covered from a mask of 2/3, bare up to 1/3
SHARP_GAIN = 3.0


def _fill(canvas: np.ndarray, pts: np.ndarray, value: float = 1.0) -> None:
    cv2.fillPoly(canvas, [np.round(pts * 16).astype(np.int32)], value, lineType=cv2.LINE_AA, shift=4)


def _eye_shadow_polygon(lm: np.ndarray, eye: list[int], brow: list[int]) -> np.ndarray:
    """The upper lid up to the crease: the eye contour's upper half raised towards the brow (the outline that
    ``lid_profile`` shades).

    Eye shadow is worn on the lid. The lower contour stays on the lash line
    (only the corners reach out a little), so the under-eye is outside the
    region: colour round the whole eye reads as a bruise or a glow, and a
    region that averages lid and under-eye hands the network a diluted lid
    colour.
    """
    eye_pts = lm[eye]
    centre = eye_pts.mean(axis=0)
    brow_centre = lm[brow].mean(axis=0)
    up = brow_centre - centre
    lift = np.clip((centre[1] - eye_pts[:, 1]) / (np.ptp(eye_pts[:, 1]) + 1e-6), 0, 1)
    vertical = np.where(eye_pts[:, 1] < centre[1], 2.5, 1.0)
    grown = centre + (eye_pts - centre) * np.stack([np.full(len(eye_pts), 1.6), vertical], axis=1)
    return grown + 0.45 * up * lift[:, None]


def smoothstep(x: np.ndarray) -> np.ndarray:
    """3x^2 - 2x^3 on x clipped to [0, 1]: a ramp with flat ends, so fades have no visible edge."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def lid_profile(size: int, landmarks: np.ndarray, fade: float = 0.8, extent: float = 1.0) -> np.ndarray:
    """Eye-shadow density (S, S) for crop landmarks (478, 2): 1 on the upper lid at the lash line, thinning
    to nothing at the crease.

    ``t`` is the height above the eye centre in units of the eye-to-brow
    distance. Above the top of the upper lash line, the lid is measured as
    the share ``s`` of the way from there to the brow, so an eye opened wide
    or a low brow keep a lid as dense as any other; the crease sits at
    ``CREASE`` (``extent`` 1; less reaches less far) and ``fade`` is how
    gradually the colour thins out on the way (0: even up to its top). Below
    the eye centre the colour only wraps a little round the corners
    (``CORNER_WRAP``): the under-eye is not the lid, and a ring of colour
    round the whole eye reads as a bruise or a glow.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return _lid_density(xx, yy, np.asarray(landmarks, np.float64)[:, :2], fade, extent)


def _lid_density(xx: np.ndarray, yy: np.ndarray, lm: np.ndarray, fade: float, extent: float) -> np.ndarray:
    """``lid_profile`` at the pixel coordinates ``xx``, ``yy`` (float32 arrays of one shape)."""
    heights, lash_tops, dists = [], [], []
    for eye, brow, lash_top in ((EYE_A, BROW_A, UPPER_LID_TOP_A), (EYE_B, BROW_B, UPPER_LID_TOP_B)):
        centre = lm[eye].mean(axis=0)
        up = (lm[brow].mean(axis=0) - centre).astype(np.float32)
        dx, dy = xx - np.float32(centre[0]), yy - np.float32(centre[1])
        heights.append((dx * up[0] + dy * up[1]) / float(up @ up))
        lash_tops.append(float(np.clip((lm[lash_top] - centre) @ up / float(up @ up), 0.0, 0.8)))
        dists.append(dx * dx + dy * dy)
    nearer_a = dists[0] < dists[1]
    t = np.where(nearer_a, heights[0], heights[1])
    lash = np.where(nearer_a, lash_tops[0], lash_tops[1])
    s = np.maximum(t - lash, 0.0) / (1.0 - lash)
    top = CREASE * (0.6 + 0.4 * extent)
    rising = smoothstep((top - s) / (max(fade, 0.1) * top))
    below = smoothstep(1.0 + t / CORNER_WRAP)
    return np.where(t >= 0, rising, below).astype(np.float32)


def sharp_weight(mask: np.ndarray, channel: int) -> np.ndarray:
    """How much of a pixel a makeup region's colour covers, from its feathered mask (``channel`` says which).

    Used as the weight itself, a feathered mask leaves thin lips and lids
    half their own colour. Lips (``edge_weight``): covered in full up to the
    lip line and not past it, as lipstick is. The other regions: twice the
    mask, clipped to 1, whose outer half blends; the eye-shadow mask carries
    the lid's gradient toward the crease, which a steeper ramp would cut
    short. The generator's gate is the same (``ipmnet.preprocess``'s
    ``channel_gate``), and so are the teachers it learns from (renderer,
    pseudo-targets).
    """
    if channel == LIPS:
        return edge_weight(mask)
    return np.minimum(2.0 * np.asarray(mask, np.float32), 1.0)


def edge_weight(mask: np.ndarray) -> np.ndarray:
    """A short ramp centred on a feathered mask's edge (0.5): 0 up to a third, 1 from two thirds.

    About 2 px of anti-aliasing at 256 px. Twice the mask, clipped, painted a
    lipstick a feather's width past the lip line: a pale ring round the lips
    that moved the skin's measured tone and most of the face's identity
    distance (``docs/eval.md``).
    """
    return np.clip(SHARP_GAIN * (np.asarray(mask, np.float32) - 0.5) + 0.5, 0.0, 1.0)


def region_masks(landmarks: np.ndarray, size: int, feather: float | None = None) -> np.ndarray:
    """Feathered region masks (len(MASK_CHANNELS), size, size) float32 in [0, 1].

    ``landmarks`` are face-mesh points already in the square image's pixel
    coordinates (e.g. the crop). ``feather`` is the Gaussian sigma in pixels;
    by default 1% of the side, so masks look the same at any crop size.
    """
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    sigma = feather if feather is not None else max(size / 100.0, 0.5)
    brows = np.zeros((size, size), np.float32)
    for poly in (BROW_A, BROW_B):
        _fill(brows, lm[poly])
    # Brow landmarks trace the middle of the hairs: grow them to cover the whole brow.
    keep_out = grow(brows, max(int(round(size / 64)), 1))
    for poly in (EYE_A, EYE_B):
        _fill(keep_out, lm[poly])
    np.maximum(keep_out, _mouth_line(lm, size), out=keep_out)

    lips = np.zeros_like(keep_out)
    _fill(lips, lm[LIPS_OUTER])
    shadow = np.zeros_like(keep_out)
    _fill(shadow, _eye_shadow_polygon(lm, EYE_A, BROW_A))
    _fill(shadow, _eye_shadow_polygon(lm, EYE_B, BROW_B))
    # Eye shadow is densest at the lash line and gone by the crease, and so is its region: the region's
    # mean colour is then the lid's, not the brow bone's, and what is painted there fades out by itself.
    # Shaded inside the polygons' box only: this runs for every face of every frame.
    x0, y0, w, h = cv2.boundingRect((shadow > 0).astype(np.uint8))
    if w and h:
        yy, xx = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float32)
        shadow[y0:y0 + h, x0:x0 + w] *= _lid_density(xx, yy, lm, LID_FADE, 1.0)
    skin = np.zeros_like(keep_out)
    _fill(skin, lm[FACE_OVAL])

    lips = np.clip(lips - keep_out, 0, 1)
    shadow = np.clip(shadow - keep_out - lips, 0, 1)
    skin = np.clip(skin - keep_out - lips - shadow, 0, 1)
    stack = np.stack([lips, shadow, skin])
    if sigma > 0:
        # The lips are feathered less: a Gaussian as wide as the other regions' never lets a thin lip reach
        # the cover of ``edge_weight`` (2/3), and lipstick covers a thin lip as fully as a full one.
        feathers = [sigma * LIPS_FEATHER if channel == LIPS else sigma for channel in range(len(stack))]
        stack = np.stack([_feather(m, s) for m, s in zip(stack, feathers)])
        # Feathering must not bleed into the eyes, mouth or brows.
        stack *= 1.0 - _feather(keep_out, sigma / 2)
    return np.clip(stack, 0.0, 1.0).astype(np.float32)


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of ``sigma`` px over three sigmas each side."""
    k = int(2 * np.ceil(3 * sigma) + 1)
    return cv2.GaussianBlur(mask, (k, k), sigma)


def _mouth_line(lm: np.ndarray, size: int) -> np.ndarray:
    """The mouth's opening grown by ``MOUTH_LINE_MARGIN``: the dark line where the lips meet stays the person's own.

    Lipstick covers the lips, not the shadow between them. Colour reaching
    over that line lightens it, and with a pale lipstick the mouth loses its
    shape: identity distance on held-out webcam frames (``docs/eval.md``).
    """
    mouth = np.zeros((size, size), np.float32)
    _fill(mouth, lm[LIPS_INNER])
    return grow(mouth, round(size * MOUTH_LINE_MARGIN))  # 0 below 128 px: the opening as it is


def grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` dilated by a disc of ``radius`` px (0: unchanged, a 1x1 element)."""
    return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))


def union(masks: np.ndarray) -> np.ndarray:
    """Where any makeup may land: the per-pixel maximum over channels (last two axes kept)."""
    return masks.max(axis=-3)
