"""Preset looks: data files, rendered on the bundled bare face, used like any reference; the gallery."""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest

from ipmcam.cli import main
from ipmcam.errors import UserError
from ipmcam.ipmnet.render import MakeupParams
from ipmcam.realtime import presets
from ipmcam.realtime.pipeline import Pipeline, PipelineOptions
from tests.test_pipeline import RedLips, _face_hull

REPO = Path(__file__).resolve().parents[1]

REQUIRED = ("bare", "natural", "office", "evening", "bold-red-lip", "smoky-eye")


def test_presets_are_data_and_parse() -> None:
    found = presets.available()
    assert set(REQUIRED) <= set(found)
    assert list(found)[0] == "bare"
    assert found["bare"].params == MakeupParams()  # nothing at all
    for preset in found.values():
        assert preset.description
        assert MakeupParams.from_dict(preset.params.to_dict()) == preset.params
        if preset.name != "bare":
            assert preset.params != MakeupParams()
    assert found["bold-red-lip"].params.lipstick.opacity == 1.0


def test_a_broken_preset_is_a_one_line_error(tmp_path) -> None:
    (tmp_path / "typo.toml").write_text('[lipstick]\ncolour = [40, 60, 30]\nopacityy = 1\n')
    (tmp_path / "spelling.toml").write_text('description = "x"\n[lipstick]\ncolor = [40, 60, 30]\nopacity = 1\n')
    (tmp_path / "broken.toml").write_text('[lipstick\n')
    with pytest.raises(UserError, match="typo.toml"):
        presets.parse_preset(tmp_path / "typo.toml")
    assert presets.parse_preset(tmp_path / "spelling.toml").params.lipstick.colour == (40.0, 60.0, 30.0)
    with pytest.raises(UserError, match="not valid TOML"):
        presets.parse_preset(tmp_path / "broken.toml")
    with pytest.raises(UserError, match="unknown preset 'nope'.*natural"):
        presets.load("nope")


def test_preset_images_change_only_the_face() -> None:
    face = presets.bare_face()
    bare = presets.preset_image("bare")
    assert np.array_equal(bare, face.frame)  # the empty look renders nothing
    red = presets.preset_image("bold-red-lip")
    changed = np.any(red != face.frame, axis=-1)
    assert changed.sum() > 500
    assert not np.any(changed & ~_face_hull(face.frame, grow=max(face.frame.shape[:2]) // 25))
    assert presets.preset_image("bold-red-lip") is red  # rendered once


def test_a_preset_is_a_reference_like_any_photo() -> None:
    engine = RedLips()
    pipeline = Pipeline(None, engine, reference=presets.preset_image("evening"))
    assert pipeline.has_reference and engine.style_calls == 1
    pipeline.close()


def _args(**kw) -> argparse.Namespace:
    base = dict(reference=None, preset=None, remove=False, lips=None, eyes=None, skin=None)
    return argparse.Namespace(**{**base, **kw})


def test_reference_plans(tmp_path, reference_image) -> None:
    folder = tmp_path / "refs"
    folder.mkdir()
    for name in ("b.jpg", "a.png"):
        cv2.imwrite(str(folder / name), reference_image)
    (folder / "notes.txt").write_text("not a photo")
    plan = presets.plan_references(_args(reference=folder))
    assert plan.initial == folder / "a.png"
    assert plan.labels[:2] == ["a.png", "b.jpg"] and "preset natural" in plan.labels and "preset bare" not in plan.labels
    assert presets.plan_references(_args(reference=folder), with_presets=False).labels == ["a.png", "b.jpg"]

    plan = presets.plan_references(_args(preset="smoky-eye"), with_presets=False)
    assert np.array_equal(plan.initial, presets.preset_image("smoky-eye"))

    plan = presets.plan_references(_args(remove=True, preset="evening"), with_presets=False)
    assert np.array_equal(plan.initial, presets.preset_image("bare"))

    plan = presets.plan_references(_args(preset="natural", lips="bold-red-lip", eyes=str(folder / "b.jpg")))
    assert set(plan.initial) == {"lips", "eyes", "skin"}
    assert np.array_equal(plan.initial["lips"], presets.preset_image("bold-red-lip"))
    assert plan.initial["eyes"] == folder / "b.jpg"
    assert np.array_equal(plan.initial["skin"], presets.preset_image("natural"))
    assert plan.labels[0].startswith("mix")

    assert set(presets.plan_references(_args(lips="office")).initial) == {"lips"}  # other regions stay bare-faced
    for bad, match in ((_args(), "choose a reference"), (_args(preset="nope"), "unknown preset"),
                       (_args(lips="nope.jpg"), "file not found, and no preset")):
        with pytest.raises(UserError, match=match):
            presets.plan_references(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no photos"):
        presets.plan_references(_args(reference=empty))


def test_presets_command_lists_and_writes_the_sheet(tmp_path, capsys) -> None:
    sheet = tmp_path / "sheet.png"
    assert main(["presets", "--sheet", str(sheet), "--tile", "96", "--columns", "3"]) == 0
    listed = capsys.readouterr().out
    for name in REQUIRED:
        assert name in listed
    image = cv2.imread(str(sheet))
    n = len(presets.names())
    rows = -(-n // 3)
    assert image.shape[1] == 3 * (96 + 12) and image.shape[0] > rows * 96
    # Each tile differs from the bare one: the looks are visible at thumbnail size.
    tiles = [image[r * (image.shape[0] // rows) + 6:][:96, c * 108 + 6:][:, :96] for r in range(rows) for c in range(3)][:n]
    assert all(np.abs(t.astype(int) - tiles[0].astype(int)).mean() > 0.3 for t in tiles[1:])


def test_the_gallery_image_is_in_the_docs() -> None:
    path = REPO / "docs" / "presets.png"
    assert path.is_file(), "run: ipmcam presets --sheet docs/presets.png"
    assert cv2.imread(str(path)) is not None
    assert "docs/presets.png" in (REPO / "README.md").read_text()


def test_apply_with_a_preset_changes_the_lips_only_inside_the_face(shared_data, tmp_path) -> None:
    still = shared_data / "stills" / "d8.jpg"
    out = tmp_path / "out.png"
    assert main(["apply", str(still), str(out), "--preset", "bold-red-lip", "--engine", "classic"]) == 0
    before, after = cv2.imread(str(still)), cv2.imread(str(out))
    assert before.shape == after.shape and not np.array_equal(before, after)
    changed = np.any(before != after, axis=-1)
    assert changed.mean() < 0.25


def test_pipeline_accepts_presets_in_a_region_mix() -> None:
    engine = RedLips()
    refs = {"lips": presets.preset_image("bold-red-lip"), "skin": presets.preset_image("natural")}
    pipeline = Pipeline(None, engine, options=PipelineOptions(), reference=refs)
    assert engine.style_calls == 2 and set(pipeline.style.owner) == {"lips", "skin"}
    pipeline.close()
