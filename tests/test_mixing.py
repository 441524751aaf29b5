"""Intensity and per-region mixing: pure composition, one engine call per frame, colours where they belong."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from ipmcam.engines.classic import ClassicEngine, ClassicStyle
from ipmcam.engines.ipmnet_engine import IPMNetEngine
from ipmcam.face.masks import EYE_SHADOW, LIPS, SKIN
from ipmcam.face.reference import reference_crop
from ipmcam.ipmnet.color import delta_e2000, robust_colour, to_lab, weighted_mean
from ipmcam.ipmnet.render import EyeShadow, Lipstick, MakeupParams
from ipmcam.realtime import mixing
from ipmcam.realtime.pipeline import Pipeline, PipelineOptions
from ipmcam.realtime.presets import look_image, preset_image
from tests.conftest import clip_frames
from tests.test_faults import FlakySource, Recorder

# --------------------------------------------------------------------------- pure functions


def _toy_masks(n: int = 2, size: int = 8) -> np.ndarray:
    masks = np.zeros((n, 3, size, size), np.float32)
    masks[:, LIPS, 6:, :] = 1.0
    masks[:, EYE_SHADOW, :2, :] = 1.0
    masks[:, SKIN, 2:6, :] = 1.0
    masks[:, SKIN, 4, :] = 0.5  # a feathered row shared with the lips
    masks[:, LIPS, 4, :] = 0.5
    masks[:, :, :, 0] = 0.0  # a column outside every region
    return masks


def test_parse_strengths() -> None:
    assert mixing.parse_strengths("lips=1,eyes=0.5,skin=0.3") == {"lips": 1.0, "eyes": 0.5, "skin": 0.3}
    assert mixing.parse_strengths(" Eyes = 0 ") == {"eyes": 0.0}
    for bad in ("cheeks=1", "lips", "lips=red", "lips=1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            mixing.parse_strengths(bad)


def test_region_weights_follow_the_masks() -> None:
    masks = _toy_masks()
    w = mixing.region_weights(masks, {"lips": 1.0, "eyes": 0.5, "skin": 0.0})
    assert w.shape == (2, 8, 8)
    assert np.all(w[:, 6:, 1:] == 1.0) and np.all(w[:, :2, 1:] == 0.5) and np.all(w[:, 2:4, 1:] == 0.0)
    assert np.allclose(w[:, 4, 1:], 0.5)  # half lips (1), half skin (0)
    assert np.all(w[:, :, 0] == 1.0)  # no region: the delta there is zero anyway


def test_composite_takes_each_region_from_its_owner() -> None:
    masks = _toy_masks(n=1)
    deltas = np.stack([np.full((1, 8, 8, 3), 10.0, np.float32), np.full((1, 8, 8, 3), -20.0, np.float32)])
    out = mixing.composite(deltas, masks, {"lips": 0, "eyes": 1, "skin": 1})
    assert np.all(out[0, 6:, 1:] == 10.0) and np.all(out[0, :2, 1:] == -20.0) and np.all(out[0, 2:4, 1:] == -20.0)
    assert np.allclose(out[0, 4, 1:], -5.0)  # feathered border: half of each
    assert np.all(out[0, :, 0] == 0.0)
    # A region without an owner keeps the face as it is.
    out = mixing.composite(deltas, masks, {"lips": 0})
    assert np.all(out[0, :2] == 0.0) and np.all(out[0, 6:, 1:] == 10.0)


def test_combine_classic_takes_each_field_from_its_region() -> None:
    def style(v: float) -> ClassicStyle:
        return ClassicStyle(lips=np.full(3, v, np.float32), eye_shadow=np.full((4, 3), v, np.float32),
                            blush=np.full(3, v, np.float32), skin=np.full(3, v, np.float32))

    mixed = mixing.combine_classic(mixing.RegionStyles((style(1), style(2), style(3)), {"lips": 0, "eyes": 1, "skin": 2}))
    assert mixed.lips[0] == 1 and mixed.eye_shadow[0, 0] == 2 and mixed.blush[0] == 3 and mixed.skin[0] == 3


# --------------------------------------------------------------------------- engines: one call per frame


class FakeBackend:
    """An ipmnet backend without a network: a style is the mean colour per region; generate paints it on."""

    name = "fake"

    def __init__(self) -> None:
        self.generate_calls = 0
        self.batch_sizes: list[int] = []

    def style(self, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
        codes = [(image[0] * m).sum(axis=(1, 2)) / max(m.sum(), 1e-6) for m in masks[0]]
        return np.concatenate(codes)[None].astype(np.float32)

    def generate(self, image, masks, style, alpha):
        self.generate_calls += 1
        self.batch_sizes.append(image.shape[0])
        out = image.copy()
        for c in range(3):
            target = style[:, 3 * c:3 * c + 3, None, None]
            out += alpha[:, :, None, None] * masks[:, c:c + 1] * (target - image)
        return out

    def close(self) -> None: ...


class CountingClassic(ClassicEngine):
    def __init__(self) -> None:
        super().__init__()
        self.run_calls = 0

    def run(self, crops, masks, style, intensity=1.0):
        self.run_calls += 1
        return super().run(crops, masks, style, intensity)


@pytest.fixture(scope="module")
def frames(shared_data) -> list[np.ndarray]:
    return clip_frames(shared_data, "d18.mp4", 6)


@pytest.fixture(scope="module")
def looks() -> dict[str, np.ndarray]:
    """Two references made for the test: red lips with green lids, purple lips with blue lids."""
    a = MakeupParams(lipstick=Lipstick((42, 62, 38), 1.0), eye_shadow=EyeShadow((45, -40, 30), 0.95, 0.2, 1.0))
    b = MakeupParams(lipstick=Lipstick((35, 45, -30), 1.0), eye_shadow=EyeShadow((35, 15, -50), 0.95, 0.2, 1.0))
    return {"a": look_image(a), "b": look_image(b), "red": preset_image("bold-red-lip"),
            "natural": preset_image("natural")}


def test_three_references_cost_one_batched_ipmnet_call_per_frame(frames, looks) -> None:
    backend = FakeBackend()
    engine = IPMNetEngine(backend, style_dim=9, crop_size=256, n_masks=3)
    sink = Recorder()
    refs = {"lips": looks["a"], "eyes": looks["b"], "skin": looks["natural"]}
    stats = Pipeline(FlakySource(frames, {}), engine, [sink], PipelineOptions(smooth=False), reference=refs).run()
    assert stats.frames_with_face == len(frames)
    assert backend.generate_calls == len(frames)
    assert backend.batch_sizes == [3] * len(frames)  # one face x three styles, a style per sample
    assert engine.style_calls == 3  # each reference encoded once


def test_three_references_cost_one_classic_call_per_frame(frames, looks) -> None:
    engine = CountingClassic()
    refs = {"lips": looks["a"], "eyes": looks["b"], "skin": looks["natural"]}
    options = PipelineOptions(smooth=False, strengths={"skin": 0.5})
    stats = Pipeline(FlakySource(frames, {}), engine, [Recorder()], options, reference=refs).run()
    assert stats.frames_with_face == len(frames) and engine.run_calls == len(frames)


def test_same_reference_everywhere_is_one_plain_call(frames, looks) -> None:
    backend = FakeBackend()
    engine = IPMNetEngine(backend, style_dim=9, crop_size=256, n_masks=3)
    pipeline = Pipeline(None, engine, options=PipelineOptions(smooth=False),
                        reference={r: looks["a"] for r in mixing.REGIONS})
    pipeline.process(frames[0], 0.0)
    pipeline.close()
    assert backend.batch_sizes == [1] and engine.style_calls == 1


# --------------------------------------------------------------------------- colours on real faces


def _measure(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lip colour and mean lid colour (Lab) of the one face in ``image``."""
    crop, masks = reference_crop(image)
    lab = to_lab(crop)
    return robust_colour(lab, masks[LIPS]), weighted_mean(lab, masks[EYE_SHADOW])


@pytest.mark.parametrize("engine_name", ["classic", "ipmnet-fake"])
def test_each_region_takes_its_references_colour(frames, looks, engine_name) -> None:
    lips_a, eyes_a = _measure(looks["a"])
    lips_b, eyes_b = _measure(looks["b"])
    for lips_ref, eyes_ref in (("a", "b"), ("b", "a")):
        engine = (ClassicEngine() if engine_name == "classic"
                  else IPMNetEngine(FakeBackend(), style_dim=9, crop_size=256, n_masks=3))
        pipeline = Pipeline(None, engine, options=PipelineOptions(smooth=False),
                            reference={"lips": looks[lips_ref], "eyes": looks[eyes_ref]})
        out, faces = pipeline.process(frames[0], 0.0)
        pipeline.close()
        assert faces == 1
        lips, eyes = _measure(out)
        lips_to = {"a": delta_e2000(lips, lips_a), "b": delta_e2000(lips, lips_b)}
        eyes_to = {"a": delta_e2000(eyes, eyes_a), "b": delta_e2000(eyes, eyes_b)}
        other = {"a": "b", "b": "a"}
        assert lips_to[lips_ref] < lips_to[other[lips_ref]], (engine_name, lips_ref, lips_to)
        assert eyes_to[eyes_ref] < eyes_to[other[eyes_ref]], (engine_name, eyes_ref, eyes_to)


def test_intensity_zero_is_bit_identical_with_mixing_and_strengths(frames, looks) -> None:
    refs = {"lips": looks["a"], "eyes": looks["b"], "skin": looks["natural"]}
    engine = CountingClassic()
    options = PipelineOptions(smooth=False, intensity=0.0, strengths={"lips": 0.7})
    pipeline = Pipeline(None, engine, options=options, reference=refs)
    for i, frame in enumerate(frames[:3]):
        out, _ = pipeline.process(frame, i / 30)
        assert np.array_equal(out, frame)
    # Full intensity does change the face, in the pixels the blend touches, through the same pipeline.
    pipeline.options.intensity = 1.0
    out, _ = pipeline.process(frames[3], 3 / 30)
    pipeline.close()
    assert not np.array_equal(out, frames[3]) and engine.run_calls == 1


def test_intensity_is_monotonic_in_lip_colour_distance(frames, looks) -> None:
    ref_lips, _ = _measure(looks["red"])
    distances = []
    for intensity in (0.0, 0.25, 0.5, 0.75, 1.0):
        pipeline = Pipeline(None, ClassicEngine(), options=PipelineOptions(smooth=False, intensity=intensity),
                            reference=looks["red"])
        out, _ = pipeline.process(frames[0], 0.0)
        pipeline.close()
        distances.append(float(delta_e2000(_measure(out)[0], ref_lips)))
    assert all(a > b for a, b in zip(distances, distances[1:])), distances
    assert distances[-1] < 0.5 * distances[0], distances


def test_zero_region_strength_leaves_that_region_alone(frames, looks) -> None:
    _, region, _ = _aligned(frames[0])
    engine = ClassicEngine()
    style = engine.encode_style(*reference_crop(looks["a"]))
    crops = _aligned(frames[0])[0][None]
    full = mixing.run(engine, crops, region[None], style, 1.0)
    no_lips = mixing.run(engine, crops, region[None], style, 1.0, {"lips": 0.0})
    lips_only = region[LIPS] > 0.9 * region.sum(axis=0) + 1e-6  # feathering mixes a little skin in
    assert lips_only.sum() > 100
    assert np.abs(no_lips[0][lips_only]).mean() < 0.1 * np.abs(full[0][lips_only]).mean()
    eyes_only = (region[EYE_SHADOW] > 0) & (region[LIPS] == 0)
    assert np.allclose(full[0][eyes_only], no_lips[0][eyes_only])


def _aligned(frame: np.ndarray):
    from ipmcam.face.reference import align_face
    from ipmcam.face.tracker import FaceTracker

    with FaceTracker(static=True, smooth=False) as tracker:
        face = tracker(frame, 0.0)[0]
    return align_face(frame, face.landmarks)
