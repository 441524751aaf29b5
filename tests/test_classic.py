"""Classic engine on real aligned faces: transfers lip colour, stays inside the masks, obeys intensity."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ipmcam.engines.classic import ClassicEngine, ClassicStyle
from ipmcam.face.masks import LIPS, union
from ipmcam.ipmnet.color import delta_e2000, robust_colour, to_lab


def _lip_colour(crop: np.ndarray, masks: np.ndarray) -> np.ndarray:
    return robust_colour(to_lab(crop), masks[LIPS])


@pytest.fixture(scope="module")
def sources(aligned_faces):
    """The bare faces (the fixture lists its non-makeup faces first) as a batch."""
    crops, masks = zip(*aligned_faces[:3])
    return np.stack(crops), np.stack(masks)


@pytest.fixture(scope="module")
def reference(aligned_faces):
    """The made-up face with the most saturated lips: a strong lipstick to transfer."""
    made_up = aligned_faces[3:]
    return max(made_up, key=lambda face: float(np.hypot(*_lip_colour(*face)[1:])))


def _lips_de(crops: np.ndarray, masks: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean CIEDE2000 of each crop's lip pixels (mask > 0.5) to a target colour."""
    return np.array([delta_e2000(to_lab(c)[m[LIPS] > 0.5], target).mean() for c, m in zip(crops, masks)])


def _apply(crops: np.ndarray, delta: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(crops + delta), 0, 255).astype(np.uint8)


def test_lips_move_towards_reference(sources, reference):
    crops, masks = sources
    engine = ClassicEngine()
    ref_lips = _lip_colour(*reference)
    assert np.hypot(*ref_lips[1:]) > 30, "the reference should wear a strong lipstick"
    out = _apply(crops, engine.run(crops, masks, engine.encode_style(*reference)))
    before, after = _lips_de(crops, masks, ref_lips), _lips_de(out, masks, ref_lips)
    assert np.all(after < 0.6 * before), (before, after)


def test_delta_is_exactly_zero_outside_masks(sources, reference):
    crops, masks = sources
    engine = ClassicEngine()
    delta = engine.run(crops, masks, engine.encode_style(*reference))
    outside = union(masks) == 0
    assert outside.any()
    assert np.all(delta[outside] == 0.0)
    assert np.abs(delta[~outside]).max() > 10


def test_output_shape_and_dtype(sources, reference):
    crops, masks = sources
    engine = ClassicEngine()
    delta = engine.run(crops, masks, engine.encode_style(*reference))
    assert delta.shape == crops.shape and delta.dtype == np.float32
    assert np.isfinite(delta).all()


def test_intensity_zero_is_all_zero(sources, reference):
    crops, masks = sources
    engine = ClassicEngine()
    delta = engine.run(crops, masks, engine.encode_style(*reference), intensity=0.0)
    assert delta.shape == crops.shape and not delta.any()


def test_intensity_is_monotonic_in_lip_distance(sources, reference):
    crops, masks = sources
    engine = ClassicEngine()
    style = engine.encode_style(*reference)
    ref_lips = _lip_colour(*reference)
    de = [_lips_de(_apply(crops, engine.run(crops, masks, style, intensity=k)), masks, ref_lips)
          for k in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert np.all(np.diff(np.stack(de), axis=0) < 0), de


def test_style_is_encoded_once_and_reused(sources, reference, monkeypatch):
    crops, masks = sources
    engine = ClassicEngine()
    style = engine.encode_style(*reference)
    assert isinstance(style, ClassicStyle)
    frozen = {f.name: getattr(style, f.name).copy() for f in dataclasses.fields(style)}
    monkeypatch.setattr(engine, "encode_style", lambda *a: pytest.fail("run must not re-analyse the reference"))
    first = engine.run(crops, masks, style)
    engine.run(crops[::-1], masks[::-1], style)  # other frames in between share the same scratch space
    again = engine.run(crops, masks, style)
    assert np.array_equal(first, again)
    for name, value in frozen.items():
        assert np.array_equal(getattr(style, name), value)


def test_region_strengths(sources, reference):
    crops, masks = sources
    style = ClassicEngine().encode_style(*reference)
    switched_off = ClassicEngine(strengths={"lips": 0.0, "eye_shadow": 0.0, "blush": 0.0, "skin": 0.0})
    assert not switched_off.run(crops, masks, style).any()
    with pytest.raises(ValueError):
        ClassicEngine(strengths={"mascara": 1.0})
