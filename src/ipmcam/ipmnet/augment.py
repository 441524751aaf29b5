"""Training crops that look like webcam frames, and things in front of the face.

The model runs on webcam frames: small sensors, noise, compression, lamps of
every colour, dim rooms, glasses, hands. A model that only saw well-lit
portraits learned that a face is a bright, pink, clean image and pushed
webcam faces towards it. Two kinds of augmentation close that gap:

* ``webcam_look`` changes how a face was *captured* (exposure, gamma, white
  balance with warm lamps and cool daylight, low light with its noise, sensor
  noise fine or blotchy, a small face upscaled, JPEG). It is applied to a
  face before makeup is rendered on it, so the exact target carries the same
  capture: the model learns to put makeup on such frames, not to clean them.
* ``Overlay`` is something *in front of* the face: a glasses frame with a
  faint lens glare, or an occluder (fingers, a microphone, a patch of scene).
  It is laid identically over the source and the finished target, so what
  covers the face is never made up; the region masks still call those pixels
  skin or lid, exactly as the landmarks do at run time.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ipmcam.face.masks import EYE_A, EYE_B

#: chance of each capture effect per face
P_WHITE_BALANCE = 0.35
P_LOW_LIGHT = 0.25
P_SMALL_FACE = 0.25
P_BLUR = 0.2
P_NOISE = 0.5
P_JPEG = 0.45
#: chance of each overlay per training source
P_GLASSES = 0.2
P_OCCLUDER = 0.15


def webcam_look(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The crop (S, S, 3) uint8 BGR as a random webcam might have captured it."""
    size = crop.shape[0]
    img = crop.astype(np.float32) / 255.0
    img = img ** rng.uniform(0.8, 1.25)
    gains = rng.uniform(0.94, 1.06, 3)
    if rng.random() < P_WHITE_BALANCE:  # tungsten lamp (warm > 0) or cool daylight (warm < 0), BGR
        warm = rng.uniform(-0.6, 1.0)
        gains *= np.array([1.0 - 0.25 * warm, 1.0, 1.0 + 0.15 * warm])
    exposure = rng.uniform(0.8, 1.15)
    dim = rng.random() < P_LOW_LIGHT
    if dim:
        exposure *= rng.uniform(0.4, 0.75)
    img = img * exposure * gains.astype(np.float32) + rng.uniform(-0.04, 0.04)
    if rng.random() < P_SMALL_FACE:  # a face a few dozen pixels wide in the frame, upscaled to the crop
        small = int(rng.uniform(0.25, 0.6) * size)
        img = cv2.resize(cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA), (size, size),
                         interpolation=cv2.INTER_LINEAR)
    elif rng.random() < P_BLUR:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.2))
    if dim or rng.random() < P_NOISE:
        img = img + _sensor_noise(size, rng, rng.uniform(0.005, 0.02) * (2.0 if dim else 1.0))
    out = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    if rng.random() < P_JPEG:
        ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
        out = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else out
    return out


def _sensor_noise(size: int, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Luminance and (weaker) chroma noise, (S, S, 3) float32; sometimes blotchy as after denoising."""
    luma = rng.standard_normal((size, size, 1), dtype=np.float32) * np.float32(sigma)
    chroma = rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(0.5 * sigma)
    noise = luma + chroma
    if rng.random() < 0.3:
        noise = cv2.GaussianBlur(noise, (0, 0), rng.uniform(0.6, 1.5)) * 2.0
    return noise


@dataclass
class Overlay:
    """Something in front of the face: coverage ``alpha`` (S, S) in [0, 1] and its colour (S, S, 3) BGR."""

    alpha: np.ndarray
    colour: np.ndarray

    def over(self, image: np.ndarray) -> np.ndarray:
        """``image`` (uint8, or float in pixel units) seen behind the overlay, rounded, in its own dtype.

        Rounded whatever the dtype, so a source (uint8) and its target (float) stay equal wherever
        they were equal.
        """
        a = self.alpha[..., None]
        out = image.astype(np.float32) * (1.0 - a) + self.colour * a
        return np.clip(np.rint(out), 0, 255).astype(image.dtype)


def random_overlay(size: int, landmarks: np.ndarray, rng: np.random.Generator, scene: np.ndarray) -> Overlay | None:
    """Glasses, an occluder, or nothing, for a crop with these landmarks; ``scene`` is another crop (patches)."""
    r = rng.random()
    if r < P_GLASSES:
        return glasses(size, landmarks, rng)
    if r < P_GLASSES + P_OCCLUDER:
        return occluder(size, landmarks, rng, scene)
    return None


def glasses(size: int, landmarks: np.ndarray, rng: np.random.Generator) -> Overlay:
    """A glasses frame round both eyes (dark, or thin metal), with a faint glare on the lenses half the time."""
    lm = np.asarray(landmarks, np.float32)[:, :2]
    scale = 16  # sub-pixel drawing
    frame = np.zeros((size, size), np.uint8)
    lenses = np.zeros((size, size), np.uint8)
    dark = rng.random() < 0.65
    thickness = max(1, round(rng.uniform(0.008, 0.022 if dark else 0.01) * size))
    width_scale, height_scale = rng.uniform(1.5, 1.9), rng.uniform(2.2, 3.2)
    drop = rng.uniform(-0.1, 0.25)
    inner: list[np.ndarray] = []
    outer: list[np.ndarray] = []
    for eye in (EYE_A, EYE_B):
        pts = lm[eye]
        centre = pts.mean(axis=0)
        half_w = 0.5 * float(np.ptp(pts[:, 0])) * width_scale
        half_h = max(0.5 * float(np.ptp(pts[:, 1])) * height_scale, 0.45 * half_w)
        centre = centre + np.array([0.0, drop * half_h], np.float32)
        box = (tuple(int(v * scale) for v in centre), (int(half_w * scale), int(half_h * scale)))
        cv2.ellipse(frame, box[0], box[1], 0, 0, 360, 255, thickness, cv2.LINE_AA, shift=4)
        cv2.ellipse(lenses, box[0], box[1], 0, 0, 360, 255, -1, cv2.LINE_AA, shift=4)
        side = 1.0 if centre[0] > lm[:, 0].mean() else -1.0
        inner.append(centre - np.array([side * half_w, 0.3 * half_h], np.float32))
        outer.append(centre + np.array([side * half_w, -0.2 * half_h], np.float32))
    bridge = [np.round(p * scale).astype(np.int32) for p in inner]
    cv2.line(frame, tuple(bridge[0]), tuple(bridge[1]), 255, thickness, cv2.LINE_AA, shift=4)
    for end in outer:  # temples, towards the ears
        tip = end + np.array([np.sign(end[0] - size / 2) * 0.12 * size, -0.01 * size], np.float32)
        cv2.line(frame, tuple(np.round(end * scale).astype(np.int32)), tuple(np.round(tip * scale).astype(np.int32)),
                 255, thickness, cv2.LINE_AA, shift=4)
    alpha = frame.astype(np.float32) / 255.0
    tone = rng.uniform(10, 60) if dark else rng.uniform(140, 220)
    colour = np.empty((size, size, 3), np.float32)
    colour[:] = tone * rng.uniform(0.85, 1.15, 3)
    if rng.random() < 0.5:  # glare: a soft bright band on the lenses
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        angle = rng.uniform(0, np.pi)
        band = np.cos((xx * np.cos(angle) + yy * np.sin(angle)) / (rng.uniform(0.04, 0.12) * size))
        glare = np.clip(band, 0, 1) * rng.uniform(0.08, 0.3) * (lenses.astype(np.float32) / 255.0)
        glare_colour = np.float32(rng.uniform(200, 255)) * np.array([1.0, 1.0, rng.uniform(0.85, 1.0)], np.float32)
        colour = (colour * alpha[..., None] + glare_colour * glare[..., None] * (1 - alpha[..., None])) / \
            np.maximum(alpha + glare * (1 - alpha), 1e-6)[..., None]
        alpha = alpha + glare * (1 - alpha)
    return Overlay(alpha.astype(np.float32), colour.astype(np.float32))


def occluder(size: int, landmarks: np.ndarray, rng: np.random.Generator, scene: np.ndarray) -> Overlay:
    """Fingers (skin of a random tone, shaded), a microphone, or a patch of scene over part of the face."""
    lm = np.asarray(landmarks, np.float32)[:, :2]
    shape = np.zeros((size, size), np.uint8)
    kind = rng.integers(3)
    low, high = lm.min(axis=0), lm.max(axis=0)
    target = low + rng.uniform(0.15, 0.85, 2) * (high - low)  # a point on the face the occluder reaches
    if kind == 0:  # fingers from below or the side
        width = rng.uniform(0.06, 0.1) * size
        base = np.array([rng.uniform(0.1, 0.9) * size, size * 1.1], np.float32)
        if rng.random() < 0.4:
            base = np.array([size * (-0.1 if rng.random() < 0.5 else 1.1), rng.uniform(0.4, 1.0) * size], np.float32)
        for k in range(int(rng.integers(1, 4))):
            offset = np.array([k * width * 1.05, 0.0], np.float32)
            a, b = base + offset, target + offset + rng.normal(0, 0.02 * size, 2)
            cv2.line(shape, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)), 255, int(width), cv2.LINE_AA)
            cv2.circle(shape, tuple(np.round(b).astype(int)), int(width / 2), 255, -1, cv2.LINE_AA)
        lab = np.array([[[rng.uniform(30, 85) * 2.55, 128 + rng.uniform(5, 25), 128 + rng.uniform(8, 30)]]], np.uint8)
        tone = cv2.cvtColor(lab, cv2.COLOR_Lab2BGR)[0, 0].astype(np.float32)
        xx = np.arange(size, dtype=np.float32)[None, :]
        shade = 1.0 + 0.25 * np.sin(xx / (0.5 * width) + rng.uniform(0, 6.3))[..., None]
        colour = tone * shade
    elif kind == 1:  # microphone: a dark rounded head on a stick, in front of the mouth
        head = lm[[13, 14]].mean(axis=0) + rng.normal(0, 0.04 * size, 2)
        radius = rng.uniform(0.06, 0.11) * size
        cv2.line(shape, tuple(np.round(head).astype(int)), (int(head[0] + rng.uniform(-0.2, 0.2) * size), size + 10),
                 255, int(radius * 0.6), cv2.LINE_AA)
        cv2.circle(shape, tuple(np.round(head).astype(int)), int(radius), 255, -1, cv2.LINE_AA)
        colour = np.full((size, size, 3), rng.uniform(15, 90), np.float32)
        colour += rng.normal(0, 6, (size, size, 1)).astype(np.float32)  # a mesh's grain
    else:  # a patch of another frame: a sleeve, a cup, the room
        centre = tuple(np.round(target).astype(int))
        axes = (int(rng.uniform(0.08, 0.2) * size), int(rng.uniform(0.08, 0.2) * size))
        cv2.ellipse(shape, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA)
        colour = np.roll(scene.astype(np.float32), (int(rng.integers(size)), int(rng.integers(size))), axis=(0, 1))
    alpha = cv2.GaussianBlur(shape.astype(np.float32) / 255.0, (0, 0), 0.7)
    return Overlay(alpha, np.clip(colour, 0, 255).astype(np.float32))
