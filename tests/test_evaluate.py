"""`ipmcam eval`: the metrics on constructed inputs, dlib identity distances, and a small end-to-end run."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from ipmcam.errors import EngineError
from ipmcam.face.masks import LIPS
from ipmcam.measure import eval_cli
from ipmcam.measure.evaluate import resolve_models
from ipmcam.measure.harness import Recorder, static_pipeline
from ipmcam.measure.metrics import (
    FlickerMeter,
    outside_face,
    psnr,
    region_delta_e,
    temporal_flicker,
)

# --------------------------------------------------------------------------- colour distance


def test_delta_e_is_zero_for_identical_and_grows_only_where_the_colour_changed(aligned_faces) -> None:
    crop, masks = aligned_faces[0]
    same = region_delta_e(crop, masks, crop.copy(), masks)
    assert set(same) == {"lips", "eye_shadow", "skin", "mean"}
    assert all(v == 0.0 for v in same.values())

    # Paint the lips a strong red: lips move far, the other regions stay put.
    painted = crop.copy()
    painted[masks[LIPS] > 0.5] = (40, 30, 200)
    de = region_delta_e(painted, masks, crop, masks)
    assert de["lips"] > 20
    assert de["eye_shadow"] == 0.0
    assert de["skin"] < 0.5
    assert de["mean"] == pytest.approx((de["lips"] + de["eye_shadow"] + de["skin"]) / 3)


def test_delta_e_compares_each_region_with_the_same_region_of_the_reference(aligned_faces) -> None:
    """A reference whose lips are the output's lips has lip ΔE 0, whatever else differs."""
    crop, masks = aligned_faces[0]
    ref, ref_masks = aligned_faces[1]
    out = crop.copy()
    out[masks[LIPS] > 0.5] = (60, 60, 180)
    recoloured = ref.copy()
    recoloured[ref_masks[LIPS] > 0.5] = (60, 60, 180)
    de = region_delta_e(out, masks, recoloured, ref_masks)
    assert de["lips"] == pytest.approx(0.0, abs=1e-6)
    assert de["skin"] > 0.0 and de["eye_shadow"] > 0.0  # two different people


# --------------------------------------------------------------------------- PSNR and the outside check


def test_psnr_values_and_masking() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
    assert psnr(a, a.copy()) == math.inf
    b = a.copy()
    b[a < 255] += 1  # every value off by one grey level (nearly)
    b[a == 255] -= 1
    assert psnr(a, b) == pytest.approx(20 * math.log10(255), abs=1e-9)
    inside = np.zeros((64, 80), bool)
    inside[10:30, 20:40] = True
    c = a.copy()
    c[inside] = 255 - c[inside]
    assert psnr(a, c, ~inside) == math.inf
    assert psnr(a, c, inside) < 10
    assert math.isnan(psnr(a, c, np.zeros((64, 80), bool)))


def test_outside_face_excludes_the_face_with_a_margin() -> None:
    angle = np.linspace(0, 2 * np.pi, 478, endpoint=False)
    landmarks = np.stack([200 + 50 * np.cos(angle), 150 + 80 * np.sin(angle)], axis=1)  # face size 160 px
    out = outside_face((300, 400, 3), landmarks, margin=0.05)
    assert out.shape == (300, 400)
    assert not out[150, 200] and not out[150, 249]  # centre and the hull edge
    assert not out[150, 255]  # within 5% of 160 px (+2) of the edge
    assert out[150, 265] and out[0, 0] and out[299, 399]
    assert out.mean() > 0.7


def test_pipeline_output_outside_the_face_is_unchanged(shared_data, reference_image) -> None:
    """The check as `ipmcam eval` runs it: the real Pipeline with the classic engine on a full photo."""
    from ipmcam.engines.classic import ClassicEngine

    source = cv2.imread(str(sorted((shared_data / "faces" / "nonmakeup").glob("*.png"))[0]))
    rec = Recorder(ClassicEngine())
    pipeline, tap = static_pipeline(rec)
    try:
        pipeline.set_reference(reference_image)
        out, changed = pipeline.process(source, 0.0)
    finally:
        pipeline.close()
    assert changed == 1
    where = outside_face(source.shape, tap.faces[0].landmarks)
    assert psnr(out, source, where) == math.inf
    assert psnr(out, source, ~where) < 40  # the face itself did change
    assert rec.last is not None and rec.reference is not None


# --------------------------------------------------------------------------- flicker


def test_flicker_is_zero_for_a_constant_delta_and_measures_changes_inside_the_face() -> None:
    size = 32
    weight = np.zeros((size, size), np.float32)
    weight[8:24, 8:24] = 1.0
    delta = np.zeros((size, size, 3), np.float32)
    delta[8:24, 8:24] = (5.0, -3.0, 2.0)
    assert temporal_flicker([delta] * 5, [weight] * 5) == 0.0

    # Alternating +-2 inside the face: every frame-to-frame change is 4.
    flips = [delta + (2.0 if k % 2 else -2.0) * (weight[..., None] > 0) for k in range(6)]
    assert temporal_flicker(flips, [weight] * 6) == pytest.approx(4.0)

    # Changes outside the face do not count.
    noisy = [delta + (k * 10.0) * (weight[..., None] == 0) for k in range(4)]
    assert temporal_flicker(noisy, [weight] * 4) == 0.0

    # A frame without a face breaks the chain: the jump across it is not flicker.
    meter = FlickerMeter()
    meter.add(delta, weight)
    meter.gap()
    meter.add(delta + 50.0, weight)
    assert meter.pairs == 0 and math.isnan(meter.value)
    face = weight > 0
    assert meter.delta == pytest.approx((np.abs(delta[face]).mean() + np.abs(delta[face] + 50.0).mean()) / 2)


# --------------------------------------------------------------------------- identity


@pytest.fixture(scope="module")
def identity_model():
    from ipmcam.measure.identity import IdentityModel, available

    reason = available()
    if reason:
        pytest.skip(f"identity metric unavailable: {reason}")
    return IdentityModel()


def test_identity_distance_is_small_for_the_same_face_and_large_for_another_person(identity_model,
                                                                                  aligned_faces) -> None:
    from ipmcam.measure.identity import SAME_PERSON

    a, b = aligned_faces[0][0], aligned_faces[1][0]  # two different people
    assert identity_model.descriptor(a).shape == (128,)
    assert identity_model.distance(a, a.copy()) < 1e-6
    rng = np.random.default_rng(0)
    noisy = np.clip(a.astype(np.int16) + rng.integers(-6, 7, a.shape), 0, 255).astype(np.uint8)
    same = identity_model.distance(a, noisy)
    other = identity_model.distance(a, b)
    assert same < 0.2
    assert other > SAME_PERSON - 0.1
    assert other > 3 * same


# --------------------------------------------------------------------------- models and CLI


def test_auto_models_skip_ipmnet_without_weights(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("IPMCAM_WEIGHTS", str(tmp_path / "nowhere"))
    specs, skipped = resolve_models("auto", ("fp32",), None, "lite")
    assert [s.key for s in specs] == ["none", "classic"]
    assert "no weights" in skipped["ipmnet"]
    specs, _ = resolve_models("classic,ipmnet", ("fp32", "int8"), tmp_path, "lite")
    assert [s.key for s in specs] == ["none", "classic", "ipmnet", "ipmnet-int8"]  # the baseline is always run
    with pytest.raises(EngineError, match="unknown model"):
        resolve_models("classic,magic", ("fp32",), None, "lite")


def test_eval_subcommand_is_registered() -> None:
    from ipmcam.cli import build_parser

    args = build_parser().parse_args(["eval", "--sources", "3", "--precision", "fp32,int8", "--videos", "d12"])
    assert args.handler is eval_cli.cmd_eval
    assert args.sources == 3 and args.precision == ("fp32", "int8") and args.videos == ("d12",)


def test_explicit_ipmnet_without_a_model_is_an_error(shared_data, tmp_path, capsys) -> None:
    from ipmcam.cli import main

    rc = main(["eval", "--data", str(shared_data), "--out", str(tmp_path / "out"), "--models", "ipmnet",
               "--model-dir", str(tmp_path / "missing"), "--sources", "1", "--references", "1", "--synthetic", "0",
               "--videos", "", "--no-identity"])
    assert rc == 2
    assert "no model directory" in capsys.readouterr().err


@pytest.fixture(scope="module")
def random_model(tmp_path_factory) -> Path | None:
    """A random-init lite model exported like a trained one (None without torch)."""
    try:
        import torch
    except ImportError:
        return None
    from ipmcam.ipmnet import export
    from ipmcam.ipmnet.config import get_config
    from ipmcam.ipmnet.networks import build_generator
    from ipmcam.ipmnet.weights import save_weights

    torch.set_num_threads(2)
    model = build_generator(get_config("lite"), seed=0).eval()
    root = tmp_path_factory.mktemp("eval_model")
    save_weights(model, root / "trained.safetensors", model.cfg)
    export.main(["--config", "lite", "--weights", str(root / "trained.safetensors"), "--out", str(root / "model")])
    return root / "model"


def test_eval_end_to_end_writes_json_and_grids(shared_data, random_model, tmp_path, capsys) -> None:
    from ipmcam.cli import main
    from ipmcam.measure.identity import available

    out = tmp_path / "eval"
    models = ["none", "classic"] + (["ipmnet"] if random_model is not None else [])
    argv = ["eval", "--data", str(shared_data), "--out", str(out), "--models", ",".join(models),
            "--sources", "2", "--references", "1", "--synthetic", "2", "--videos", "d12", "--video-frames", "6",
            "--webcam-clips", "d13", "--webcam-frames", "2", "--webcam-references", "1", "--cell", "64"]
    if random_model is not None:
        argv += ["--model-dir", str(random_model)]
    assert main(argv) == 0
    assert "ΔE" in capsys.readouterr().out

    report = json.loads((out / "eval.json").read_text())
    assert set(report) == {"settings", "versions", "models", "skipped", "notes", "pairs", "synthetic", "videos",
                           "webcam"}
    assert report["settings"]["webcam"]["clips"]["d13"]["glasses"] is True
    assert list(report["models"]) == models
    assert len(report["pairs"]) == 2 and len(report["synthetic"]) == 2
    assert report["videos"]["d12"]["held_out"] is True
    with_identity = available() is None
    for key, summary in report["models"].items():
        assert {"delta_e", "delta_e_gain", "synthetic", "outside", "flicker", "ms_per_face", "engine"} <= set(summary)
        assert set(summary["delta_e"]) == {"lips", "eye_shadow", "skin", "mean"}
        assert summary["outside"]["psnr"] == "inf" and summary["outside"]["changed_pixels"] == 0
        assert summary["outside"]["frames"] == 2 + 6
        assert summary["synthetic"]["pairs"] == 2
        assert ("identity" in summary) == with_identity
        for row in report["pairs"]:
            assert set(row["models"][key]["delta_e"]) == {"lips", "eye_shadow", "skin", "mean"}
    none, classic = report["models"]["none"], report["models"]["classic"]
    assert none["delta_e"]["lips"] > classic["delta_e"]["lips"]  # classic copies the lipstick
    assert classic["delta_e_gain"]["lips"] > 0 and none["delta_e_gain"]["lips"] == 0
    assert none["flicker"]["d12"] == 0.0 and classic["flicker"]["d12"] > 0.0
    if with_identity:
        assert none["identity"]["mean"] == 0.0
        assert 0.0 < classic["identity"]["mean"] < 0.6
    if random_model is not None:
        assert report["models"]["ipmnet"]["engine"].startswith("ipmnet/")
    # The webcam set: two frames of a held-out clip with the demo reference; doing nothing shifts nothing.
    assert len(report["webcam"]["none"]) == 2
    webcam_none, webcam_classic = none["webcam"], classic["webcam"]
    assert list(webcam_none["clips"]) == ["d13"] and list(webcam_none["groups"]) == ["glasses", "medium skin"]
    assert webcam_none["mean"]["skin_shift"] == 0.0 and webcam_none["mean"]["texture"] == 1.0
    assert webcam_classic["mean"]["lips"] < webcam_none["mean"]["lips"]
    assert "## Webcam set" in (out / "table.md").read_text()
    webcam_grid = cv2.imread(str(out / "grid_webcam.png"))
    assert webcam_grid is not None and webcam_grid.shape == (28 + 64, 64 * len(models), 3)  # input | engines

    grid = cv2.imread(str(out / "grid.png"))
    assert grid is not None and grid.shape[1] == 64 * (len(models) - 1 + 2)  # source | reference | engines
    assert grid.shape[0] == 28 + 2 * 64
    synth = cv2.imread(str(out / "grid_synthetic.png"))
    assert synth is not None and synth.shape[1] == 64 * (len(models) - 1 + 3)
    assert (out / "table.md").read_text().startswith("| model |")
