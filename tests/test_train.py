"""Training: examples are well formed, a tiny run lowers its loss, and a stopped run resumes exactly."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from ipmcam.ipmnet.config import get_config
from ipmcam.ipmnet.dataset import FaceSet
from ipmcam.ipmnet.networks import build_generator
from ipmcam.ipmnet.train import (
    ExampleMaker,
    TrainSettings,
    generator_losses,
    make_batch,
    train,
    training_size,
)
from ipmcam.ipmnet.weights import save_train_state


@pytest.fixture(scope="module")
def tiny_faces(aligned_faces, shared_data, tmp_path_factory) -> tuple[FaceSet, object]:
    """A face set of the fixture's real crops, saved where ``train`` expects its cache."""
    from ipmcam.face.tracker import FaceTracker
    from ipmcam.ipmnet.dataset import save

    crops, region, lms = [], [], []
    with FaceTracker(static=True, smooth=False) as tracker:
        for crop, face_masks in aligned_faces:
            lm = tracker(crop, 0.0)[0].landmarks
            crops.append(crop)
            region.append(np.round(face_masks * 255).astype(np.uint8))
            lms.append(lm.astype(np.float32))
    n = len(crops)
    faces = FaceSet(np.stack(crops), np.stack(region), np.stack(lms), np.array([f"id{i}" for i in range(n)]),
                    np.array([i >= n // 2 for i in range(n)]))
    cache = tmp_path_factory.mktemp("faces") / "faces.npz"
    save(faces, cache)
    return faces, cache


def test_batches_have_the_documented_shapes(tiny_faces) -> None:
    faces, _ = tiny_faces
    maker = ExampleMaker(faces, np.random.default_rng(0), TrainSettings())
    batch = make_batch(maker, 4, 64)
    for key in ("x", "y", "t"):
        assert batch[key].shape == (4, 3, 64, 64) and batch[key].dtype == torch.float32
        assert batch[key].min() >= -1.0 and batch[key].max() <= 1.0
    assert batch["m"].shape == (4, 3, 64, 64) and batch["kind"].shape == (4,)


def test_training_size_switches_to_the_crop_size() -> None:
    settings = TrainSettings(size=128, full_size_from=10)
    assert [training_size(settings, step) for step in (0, 9, 10, 500)] == [128, 128, 256, 256]
    assert training_size(TrainSettings(size=96, full_size_from=-1), 10**6) == 96  # -1: never


def test_synthetic_targets_differ_from_sources_only_inside_the_masks(tiny_faces) -> None:
    faces, _ = tiny_faces
    settings = TrainSettings(p_synthetic=1.0, p_real=0.0)
    maker = ExampleMaker(faces, np.random.default_rng(1), settings)
    for _ in range(4):
        ex = maker()
        assert ex.kind == 0
        outside = ex.source_masks.max(axis=0) == 0
        # The renderer also paints liner just outside the eye-shadow mask; far outside, nothing.
        far = cv2.erode(outside.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        assert np.array_equal(ex.target[far], ex.source[far].astype(np.float32))


def _loss(gen, batch, settings) -> float:
    with torch.no_grad():
        return float(generator_losses(gen, batch, settings)[0])


def test_tiny_run_learns_and_resumes_exactly(tiny_faces, tmp_path) -> None:
    faces, cache = tiny_faces
    torch.set_num_threads(1)
    settings = TrainSettings(steps=4, batch=2, size=64, sample_every=2, checkpoint_every=2)
    # A fixed batch the run never sees in this order, scored by the training loss before and after. Eight
    # examples: with four, one hard example outweighed what 4 steps learn (a change of masks flipped it).
    probe = make_batch(ExampleMaker(faces, np.random.default_rng(7), settings), 8, settings.size)
    untrained = build_generator(get_config(settings.config), seed=settings.seed).eval()
    trained = train(settings, data=tmp_path / "unused", out_dir=tmp_path / "a", faces_cache=cache)
    losses = [json.loads(line) for line in (tmp_path / "a" / "loss.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in losses] == [1, 2, 3, 4]
    assert (tmp_path / "a" / "samples_000002.png").is_file()
    assert _loss(trained, probe, settings) < _loss(untrained, probe, settings)  # the run learns
    # Stop after 2 steps, then resume to 4: same weights as the straight run.
    train(settings, tmp_path / "unused", tmp_path / "b", cache, stop_at=2)
    resumed = train(settings, tmp_path / "unused", tmp_path / "b", cache)
    straight = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["gen"]
    for name, value in resumed.state_dict().items():
        torch.testing.assert_close(value, straight[name], rtol=0, atol=1e-6)
    # A later session starts a fresh run folder from the compact state shipped beside the weights, whose
    # Adam moments are rounded to bfloat16. Adam moves a weight by at most about one learning rate per
    # step, so two runs that differ only in their moments can drift apart by at most twice the learning
    # rates of the steps taken since the resume (the cosine schedule's, as logged).
    train(settings, tmp_path / "unused", tmp_path / "c", cache, stop_at=2)
    shipped = tmp_path / "train_state.pt"
    save_train_state(tmp_path / "c" / "checkpoint.pt", shipped)
    assert shipped.stat().st_size < 0.7 * (tmp_path / "c" / "checkpoint.pt").stat().st_size
    continued = train(settings, tmp_path / "unused", tmp_path / "d", cache, resume_from=shipped)
    drift = 2 * sum(entry["lr"] for entry in losses[2:])
    worst = max(float((value - straight[name]).abs().max()) for name, value in continued.state_dict().items())
    assert worst <= drift, (worst, drift)


def test_fine_tune_starts_a_new_schedule_from_given_weights(tiny_faces, tmp_path) -> None:
    """--init-from: the generator of a checkpoint, a fresh optimiser, steps counted from 0 (with warmup)."""
    _, cache = tiny_faces
    torch.set_num_threads(1)
    base = TrainSettings(steps=2, batch=2, size=64, sample_every=100, checkpoint_every=2, seed=1)
    start = train(base, tmp_path / "unused", tmp_path / "base", cache)
    tuned_settings = TrainSettings(steps=2, batch=2, size=64, sample_every=100, checkpoint_every=2, warmup=5)
    tuned = train(tuned_settings, tmp_path / "unused", tmp_path / "tuned", cache,
                  init_from=tmp_path / "base" / "checkpoint.pt")
    log = [json.loads(line) for line in (tmp_path / "tuned" / "loss.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2]
    assert log[0]["lr"] == pytest.approx(tuned_settings.lr / 6)  # ramping up: 1/(warmup + 1) of the rate
    fresh = build_generator(get_config(tuned_settings.config), seed=tuned_settings.seed)
    started = start.state_dict()
    for name, value in tuned.state_dict().items():  # a few small steps away from the given weights
        if value.dtype.is_floating_point and value.numel() > 100:
            assert (value - started[name]).abs().max() < (value - fresh.state_dict()[name]).abs().max()


def test_reset_output_starts_the_fine_tune_at_the_preprocessed_image(tiny_faces, tmp_path) -> None:
    """--reset-output: the given generator with its last convolution zeroed, so the output is the
    preprocessed image (the tinted base) until the residual is learned anew."""
    faces, cache = tiny_faces
    torch.set_num_threads(1)
    base = TrainSettings(steps=1, batch=2, size=64, sample_every=100, checkpoint_every=1, seed=1)
    start = train(base, tmp_path / "unused", tmp_path / "base", cache)
    reset = TrainSettings(steps=2, batch=2, size=64, sample_every=100, checkpoint_every=1, reset_output=True)
    tuned = train(reset, tmp_path / "unused", tmp_path / "tuned", cache,
                  init_from=tmp_path / "base" / "checkpoint.pt", stop_at=0).eval()
    for name, value in tuned.state_dict().items():
        if name.startswith("dec.up.1."):  # the last convolution
            assert not value.any()
        else:
            torch.testing.assert_close(value, start.state_dict()[name], rtol=0, atol=0)
    x = torch.from_numpy(faces.crops[:2].transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)
    m = torch.from_numpy(faces.float_masks(np.arange(2)))
    with torch.no_grad():
        own = tuned.encode_style(x, m)
        ref = own.flip(0)
        out = tuned(x, m, ref, torch.ones(2))
        r = tuned.preprocess(x, m, tuned.tint_image(ref, own, m))
    assert torch.equal(out, r.clamp(-1.0, 1.0))
