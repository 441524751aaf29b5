"""The webcam evaluation set: its split, its metrics and its summary."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from ipmcam.face.masks import EYE_SHADOW, LIPS, SKIN
from ipmcam.ipmnet.dataset import EVAL_CLIPS, TRAINING_CLIPS, is_held_out
from ipmcam.measure.webcam_set import (
    CLIPS,
    METRICS,
    identity_parts,
    skin_interior,
    skin_shift,
    summarise_webcam,
    texture_ratio,
    webcam_frames,
    webcam_table,
)


def test_the_held_out_clips_are_declared_and_a_third_of_all(shared_data) -> None:
    assert set(CLIPS) == set(EVAL_CLIPS) and not EVAL_CLIPS & TRAINING_CLIPS
    assert all(is_held_out(name) for name in EVAL_CLIPS) and not any(is_held_out(n) for n in TRAINING_CLIPS)
    clips = {p.stem for p in (shared_data / "videos").glob("*.mp4")}
    assert EVAL_CLIPS | TRAINING_CLIPS == clips  # every shared clip is on a declared side
    assert len(EVAL_CLIPS) >= len(clips) / 3
    # one person, two clips: both on the same side; the groups the issue asks for are there
    assert {"edtalk_obama_office", "ghost_obama_warm_indoor"} <= EVAL_CLIPS
    assert {c.tone for c in CLIPS.values()} == {"light", "medium", "dark"}
    assert any(c.glasses for c in CLIPS.values()) and not all(c.glasses for c in CLIPS.values())


def test_webcam_frames_are_spread_over_each_clip(shared_data) -> None:
    frames = webcam_frames(shared_data, ["d13", "no_such_clip"], 3)
    assert [name for name, _ in frames] == ["d13"] * 3
    assert not np.array_equal(frames[0][1], frames[2][1])


def test_skin_shift_is_zero_when_untouched_and_measures_a_tint(aligned_faces) -> None:
    crop, masks = aligned_faces[0]
    assert skin_shift(crop, crop, masks) == 0.0
    tinted = crop.astype(np.float32)
    tinted[masks[SKIN] > 0.5] *= (0.9, 1.0, 1.12)  # pinker, BGR
    shift = skin_shift(crop, np.clip(tinted, 0, 255).astype(np.uint8), masks)
    assert 2.0 < shift < 15.0
    lips_only = crop.copy()
    lips_only[masks[0] > 0.5] = (40, 40, 200)  # lipstick alone does not move the skin
    assert skin_shift(crop, lips_only, masks) < 0.2


def test_texture_ratio_is_one_when_kept_and_falls_when_smoothed(aligned_faces) -> None:
    crop, masks = aligned_faces[0]
    assert texture_ratio(crop, crop, masks) == 1.0
    assert texture_ratio(crop, cv2.GaussianBlur(crop, (0, 0), 1.5), masks) < 0.7
    assert math.isnan(texture_ratio(crop, crop, np.zeros_like(masks)))


def test_texture_ratio_reads_the_skin_not_the_lip_line(aligned_faces) -> None:
    """Pale lipstick raises the lip line's contrast; the skin's own detail is what the ratio measures."""
    crop, masks = aligned_faces[0]
    pale_lips = crop.copy()
    pale_lips[masks[LIPS] > 0.5] = (235, 235, 250)
    assert texture_ratio(crop, pale_lips, masks) == 1.0
    interior = skin_interior(masks)
    assert interior.sum() > 0.8 * (masks[SKIN] > 0.5).sum()  # most of the skin still counts
    assert not (interior & (masks[LIPS] > 0.01)).any()
    noisy = crop.astype(np.float32) + np.random.default_rng(0).normal(0, 6, crop.shape) * (masks[SKIN] > 0.5)[..., None]
    assert texture_ratio(crop, np.clip(noisy, 0, 255).astype(np.uint8), masks) > 1.2  # noise on the skin counts


def test_summary_has_clip_rows_worst_clips_and_groups() -> None:
    def row(clip: str, shift: float, ident: float) -> dict:
        return {"clip": clip, "reference": "r", "skin_shift": shift, "texture": 1.0, "identity": ident,
                "lips": 3.0, "eye_shadow": 7.0, "lid": 5.0}

    rows = [row("d13", 1.0, 0.2), row("d13", 3.0, 0.3), row("edtalk_obama_office", 4.0, 0.4),
            {"clip": "s18", "reference": "r", "error": "no face found"}]
    summary = summarise_webcam(rows)
    assert summary["rows"] == 3 and summary["failed"] == 1
    assert summary["clips"]["d13"]["skin_shift"] == pytest.approx(2.0)
    assert summary["mean"]["skin_shift"] == pytest.approx(3.0)  # the mean of clip means
    assert summary["worst"]["skin_shift"] == pytest.approx(4.0) and summary["worst"]["identity"] == pytest.approx(0.4)
    assert set(summary["groups"]) == {"glasses", "no glasses", "medium skin", "dark skin"}
    assert summary["groups"]["dark skin"]["clips"] == ["edtalk_obama_office"]
    assert set(METRICS) <= set(summary["groups"]["glasses"])
    table = webcam_table({"ipmnet": summary})
    assert "| ipmnet | all 2 | 3.00 | 4.00 |" in table and "| edtalk_obama_office | 4.00 / 0.40 / 3.00 |" in table


def test_identity_parts_split_the_delta_by_region(aligned_faces) -> None:
    _, masks = aligned_faces[0]
    parts = identity_parts(masks)
    assert set(parts) == {"lips", "eyes", "rest"}
    assert np.array_equal(parts["lips"], masks[LIPS]) and np.array_equal(parts["eyes"], masks[EYE_SHADOW])
    bare = (masks[LIPS] == 0) & (masks[EYE_SHADOW] == 0)
    assert bare.any() and (parts["rest"][bare] == 1).all()
    mouth = (masks[LIPS] > 0.5) & (masks[EYE_SHADOW] == 0)
    assert mouth.any() and np.allclose(parts["rest"][mouth] + parts["lips"][mouth], 1)  # shared, never counted twice
