"""Per-region makeup: lips from one reference, eyes from another, skin from a third, each at its own strength.

Regions are the mask channels: ``lips`` (lips), ``eyes`` (eye_shadow) and
``skin`` (skin, which carries blush and foundation). Whatever the engine,
one frame costs one ``engine.run`` call:

- engines whose style is a code array (ipmnet: (1, D) per reference) get
  one batch of faces x distinct styles with per-sample styles; each face's
  delta is then composed region by region from the copy that wore that
  region's style;
- the classic engine's style is per-region measurements already, so the
  regions' ``ClassicStyle`` fields are merged into one style.

Strengths scale each region's delta, weighted by the (feathered) masks, so
they work the same on every engine. A region without a reference is left as
it is. Everything here is numpy on arrays the pipeline already has.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ipmcam.engines.base import Engine
from ipmcam.engines.classic import ClassicStyle
from ipmcam.face.masks import EYE_SHADOW, LIPS, SKIN

REGIONS: tuple[str, ...] = ("lips", "eyes", "skin")
CHANNEL: dict[str, int] = {"lips": LIPS, "eyes": EYE_SHADOW, "skin": SKIN}


def parse_strengths(text: str) -> dict[str, float]:
    """``"lips=1,eyes=0.5,skin=0.3"`` -> {region: strength}; regions not named stay at 1."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        region, sep, value = part.partition("=")
        region = region.strip().lower()
        if region == "eye_shadow":
            region = "eyes"
        if not sep or region not in CHANNEL:
            raise argparse.ArgumentTypeError(f"expected REGION=VALUE with REGION one of {', '.join(REGIONS)}, got {part!r}")
        try:
            amount = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{region}: expected a number, got {value!r}") from None
        if not 0.0 <= amount <= 1.0:
            raise argparse.ArgumentTypeError(f"{region}: strength must be within 0..1, got {amount}")
        out[region] = amount
    return out


def is_neutral(strengths: Mapping[str, float] | None) -> bool:
    """True when strengths change nothing (none given, or all 1)."""
    return not strengths or all(v == 1.0 for v in strengths.values())


def region_weights(masks: np.ndarray, strengths: Mapping[str, float]) -> np.ndarray:
    """Per-pixel strength (N, S, S) float32: each region's strength, mixed by its share of the mask sum.

    Where no mask is non-zero the weight is 1 (the delta is zero there anyway).
    """
    masks = np.asarray(masks, np.float32)
    total = masks.sum(axis=-3)
    weighted = np.zeros_like(total)
    for region, channel in CHANNEL.items():
        amount = float(strengths.get(region, 1.0))
        if amount:
            weighted += amount * masks[..., channel, :, :]
    return np.where(total > 0, weighted / np.maximum(total, 1e-12), np.float32(1.0)).astype(np.float32)


def owner_weights(masks: np.ndarray, owner: Mapping[str, int], k: int, strengths: Mapping[str, float] | None = None
                  ) -> np.ndarray:
    """(k, N, S, S): how much of style k's delta each pixel takes (regions owned by k, times their strength)."""
    masks = np.asarray(masks, np.float32)
    total = np.maximum(masks.sum(axis=-3), 1e-12)
    out = np.zeros((k, *total.shape), np.float32)
    for region, index in owner.items():
        amount = 1.0 if strengths is None else float(strengths.get(region, 1.0))
        if amount:
            out[index] += amount * masks[..., CHANNEL[region], :, :]
    out /= total
    return out


def composite(deltas: np.ndarray, masks: np.ndarray, owner: Mapping[str, int],
              strengths: Mapping[str, float] | None = None) -> np.ndarray:
    """One delta per face (N, S, S, 3) from one per style and face (K, N, S, S, 3): each region from its owner."""
    weights = owner_weights(masks, owner, deltas.shape[0], strengths)
    return np.einsum("knhw,knhwc->nhwc", weights, deltas.astype(np.float32, copy=False), optimize=True)


@dataclass(frozen=True)
class RegionStyles:
    """Styles per region: ``styles`` are the distinct encoded styles, ``owner`` maps a region to one.

    A region missing from ``owner`` keeps the wearer's own look.
    """

    styles: tuple[Any, ...]
    owner: dict[str, int]
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.owner) - set(REGIONS)
        if unknown:
            raise ValueError(f"unknown regions {sorted(unknown)}; expected some of {list(REGIONS)}")
        if any(not 0 <= i < len(self.styles) for i in self.owner.values()):
            raise ValueError("owner points past the styles")


def combine_classic(styles: RegionStyles) -> Any:
    """One ``ClassicStyle`` whose lips, lids and skin/blush come from their regions' styles."""
    def pick(region: str) -> Any:
        return styles.styles[styles.owner.get(region, next(iter(styles.owner.values()), 0))]

    return ClassicStyle(lips=pick("lips").lips, eye_shadow=pick("eyes").eye_shadow,
                        blush=pick("skin").blush, skin=pick("skin").skin)


def _is_code(style: Any) -> bool:
    return isinstance(style, np.ndarray) and style.ndim == 2 and style.shape[0] == 1


def _is_classic(style: Any) -> bool:
    return isinstance(style, ClassicStyle)


def _effective(styles: RegionStyles, strengths: Mapping[str, float] | None) -> dict[str, float]:
    """Strength of every region, 0 for one without a reference."""
    return {r: (float((strengths or {}).get(r, 1.0)) if r in styles.owner else 0.0) for r in REGIONS}


def run(engine: Engine, crops: np.ndarray, masks: np.ndarray, style: Any, intensity: float = 1.0,
        strengths: Mapping[str, float] | None = None) -> np.ndarray:
    """Deltas (N, S, S, 3) for a batch: a plain style, or ``RegionStyles``, with per-region strengths.

    A plain style and neutral strengths is exactly ``engine.run``.
    """
    if not isinstance(style, RegionStyles):
        deltas = engine.run(crops, masks, style, intensity)
        if is_neutral(strengths):
            return deltas
        return np.asarray(deltas, np.float32) * region_weights(masks, strengths)[..., None]
    amounts = _effective(style, strengths)
    used = sorted({style.owner[r] for r in REGIONS if amounts[r] > 0})
    n = crops.shape[0]
    if not used:  # every region off
        return np.zeros(crops.shape, np.float32)
    if len(used) == 1 or all(_is_classic(s) for s in style.styles):
        single = style.styles[used[0]] if len(used) == 1 else combine_classic(style)
        deltas = np.asarray(engine.run(crops, masks, single, intensity), np.float32)
        if is_neutral(amounts):
            return deltas
        return deltas * region_weights(masks, amounts)[..., None]
    owner = {r: used.index(style.owner[r]) for r in REGIONS if amounts[r] > 0}
    k = len(used)
    if all(_is_code(style.styles[i]) for i in used):  # one batch: faces x styles, a style per sample
        codes = np.concatenate([np.repeat(np.asarray(style.styles[i], np.float32), n, axis=0) for i in used])
        out = engine.run(np.concatenate([crops] * k), np.concatenate([masks] * k), codes, intensity)
        deltas = np.asarray(out, np.float32).reshape(k, n, *crops.shape[1:])
    else:  # an engine that takes one style per call: one call per distinct style
        deltas = np.stack([np.asarray(engine.run(crops, masks, style.styles[i], intensity), np.float32)
                           for i in used])
    return composite(deltas, masks, owner, amounts)


class Mixer(Engine):
    """An engine seen through ``run`` above: what the pipeline (and its async worker) calls.

    ``strengths`` is read on every call, so changing it between frames takes
    effect on the next one.
    """

    def __init__(self, engine: Engine, strengths: Callable[[], Mapping[str, float] | None] = lambda: None) -> None:
        self.engine = engine
        self.strengths = strengths

    @property
    def name(self) -> str:  # type: ignore[override]
        """The wrapped engine's name, read each time: a backend fallback renames it mid-stream."""
        return self.engine.name

    def encode_style(self, crop: np.ndarray, masks: np.ndarray) -> Any:
        return self.engine.encode_style(crop, masks)

    def run(self, crops: np.ndarray, masks: np.ndarray, style: Any, intensity: float = 1.0) -> np.ndarray:
        return run(self.engine, crops, masks, style, intensity, self.strengths())
