"""Procedural makeup renderer: where it paints, what it paints, and its parameters."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ipmcam.face import align
from ipmcam.face.masks import EYE_SHADOW, LIPS, SKIN, lid_profile, region_masks
from ipmcam.ipmnet.color import delta_e2000, to_lab
from ipmcam.ipmnet.render import (
    FOUNDATION_MAX_SHIFT,
    Blush,
    Eyeliner,
    EyeShadow,
    Foundation,
    Lipstick,
    MakeupParams,
    face_fade,
    make_pair,
    paint_region,
    render,
)

FULL_LOOK = MakeupParams(
    lipstick=Lipstick(colour=(42.0, 62.0, 38.0), opacity=0.9, gloss=0.5),
    eye_shadow=EyeShadow(colour=(35.0, 28.0, -12.0), opacity=0.7, fade=0.6, extent=0.9),
    eyeliner=Eyeliner(colour=(10.0, 0.0, 0.0), thickness=0.1, wing=1.0),
    blush=Blush(colour=(62.0, 40.0, 28.0), opacity=0.5, radius=0.35, lift=0.5),
    foundation=Foundation(colour=(63.0, 14.0, 22.0), strength=0.4, smoothing=0.6),
)


@pytest.fixture(scope="module")
def faces(shared_data: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two bare canonical crops (256, 256, 3) uint8 with landmarks (478, 2) in crop pixels."""
    from ipmcam.face.tracker import FaceTracker

    out = []
    with FaceTracker(static=True, smooth=False) as tracker:
        for path in sorted((shared_data / "faces" / "nonmakeup").glob("*.png"))[:2]:
            frame = cv2.imread(str(path))
            found = tracker(frame, 0.0)
            assert found, f"no face found in {path.name}"
            mat = align.crop_transform(found[0].landmarks)
            out.append((align.warp_to_crop(frame, mat), align.transform_points(found[0].landmarks, mat)))
    return out


def test_changes_only_inside_paint_region(faces):
    crop, lm = faces[0]
    masks = region_masks(lm, crop.shape[0])
    out = render(crop, lm, FULL_LOOK, masks)
    changed = np.any(out != crop, axis=-1)
    region = paint_region(masks)
    assert changed.sum() > 1000, "a full look should visibly change the face"
    assert not np.any(changed & ~region)
    assert not region[0].any() and not region[:, 0].any(), "the crop border lies outside the face"


@pytest.mark.parametrize(
    "look, channel",
    [
        (MakeupParams(lipstick=Lipstick(opacity=1.0, gloss=0.8)), LIPS),
        (MakeupParams(eye_shadow=EyeShadow(opacity=1.0)), EYE_SHADOW),
        (MakeupParams(blush=Blush(opacity=0.6)), SKIN),
    ],
)
def test_each_component_stays_in_its_mask(faces, look, channel):
    crop, lm = faces[1]
    masks = region_masks(lm, crop.shape[0])
    changed = np.any(render(crop, lm, look, masks) != crop, axis=-1)
    assert changed.any()
    assert not np.any(changed & (masks[channel] == 0))


def test_no_makeup_is_bit_identical(faces):
    crop, lm = faces[0]
    assert np.array_equal(render(crop, lm, MakeupParams()), crop)


def test_lipstick_moves_lips_towards_its_colour_and_keeps_texture(faces):
    crop, lm = faces[0]
    masks = region_masks(lm, crop.shape[0])
    red = (42.0, 62.0, 38.0)
    out = render(crop, lm, MakeupParams(lipstick=Lipstick(colour=red, opacity=1.0)), masks)
    core = masks[LIPS] > 0.5
    before, after = to_lab(crop)[core], to_lab(out)[core]
    de_before = delta_e2000(before, np.array(red)).mean()
    de_after = delta_e2000(after, np.array(red)).mean()
    assert de_after < 0.5 * de_before
    # at full opacity the lips' core wears the colour itself, not a mix with the lips' own (sharp_weight)
    assert delta_e2000(after.mean(axis=0), np.array(red)) < 3.0
    assert after[:, 0].std() > 0.6 * before[:, 0].std(), "lip lines (L texture) must survive"


def test_random_looks_are_reproducible_and_varied():
    looks = [MakeupParams.random(np.random.default_rng(seed)) for seed in range(40)]
    assert MakeupParams.random(np.random.default_rng(7)) == looks[7]
    assert looks[0] != looks[1]
    lip_opacity = np.array([look.lipstick.opacity for look in looks])
    assert (lip_opacity == 0).any() and (lip_opacity > 0.5).any(), "sometimes absent, sometimes strong"
    assert any(look.eyeliner.thickness == 0 for look in looks) and any(look.eyeliner.thickness > 0 for look in looks)


def test_params_dict_round_trip():
    look = MakeupParams.random(np.random.default_rng(3))
    data = json.loads(json.dumps(look.to_dict()))
    assert MakeupParams.from_dict(data) == look
    partial = MakeupParams.from_dict({"lipstick": {"colour": [40, 60, 30], "opacity": 0.8}})
    assert partial.lipstick.colour == (40.0, 60.0, 30.0) and partial.blush == Blush()
    with pytest.raises(ValueError):
        MakeupParams.from_dict({"mascara": {}})


def test_make_pair(faces):
    (x, x_lm), (y, y_lm) = faces
    look = MakeupParams.random(np.random.default_rng(11))
    pair = make_pair(x, x_lm, y, y_lm, look)
    for image in pair:
        assert image.shape == x.shape and image.dtype == np.uint8
    assert pair.source is x
    assert np.array_equal(pair.target, render(x, x_lm, look))
    assert np.array_equal(pair.reference, render(y, y_lm, look))


def test_delta_e2000_matches_published_values():
    # Pairs 1, 7, 17 and 25 of Sharma, Wu & Dalal's CIEDE2000 test data.
    lab1 = np.array([[50, 2.6772, -79.7751], [50, 0, 0], [50, 2.5, 0], [60.2574, -34.0099, 36.2677]])
    lab2 = np.array([[50, 0, -82.7485], [50, -1, 2], [73, 25, -18], [60.4626, -34.1751, 39.4387]])
    np.testing.assert_allclose(delta_e2000(lab1, lab2), [2.0425, 2.3669, 27.1492, 1.2644], atol=1e-4)


# --------------------------------------------------------------------------- placement


def _skin_mean(crop: np.ndarray, masks: np.ndarray) -> np.ndarray:
    return to_lab(crop)[masks[SKIN] > 0.5].mean(axis=0)


def _laplacian_spread(crop: np.ndarray, where: np.ndarray) -> float:
    return float(cv2.Laplacian(to_lab(crop)[..., 0], cv2.CV_32F, ksize=3)[where].std())


def test_eye_shadow_is_a_lid_gradient_and_leaves_the_under_eye(faces):
    """Densest on the upper lid, nothing under the eye: a ring of colour reads as a bruise or a glow."""
    crop, lm = faces[0]
    masks = region_masks(lm, crop.shape[0])
    look = MakeupParams(eye_shadow=EyeShadow(colour=(35.0, 28.0, -12.0), opacity=0.8, fade=0.8, extent=1.0))
    change = np.abs(render(crop, lm, look, masks).astype(np.float32) - crop).sum(axis=-1)
    profile = lid_profile(crop.shape[0], lm)
    region = masks[EYE_SHADOW] > 0.5
    rows, cols = np.arange(crop.shape[0])[:, None], np.arange(crop.shape[1])[None, :]
    lid = region & (profile > 0.5)
    under = np.zeros_like(region)
    for outer, inner, lower, upper in ((33, 133, 145, 159), (263, 362, 374, 386)):  # below each lower lash line
        top = lm[lower, 1] + 2
        under |= ((cols >= min(lm[outer, 0], lm[inner, 0])) & (cols <= max(lm[outer, 0], lm[inner, 0]))
                  & (rows > top) & (rows < top + 2 * (lm[lower, 1] - lm[upper, 1]) + 6))
    assert lid.sum() > 50 and under.sum() > 50
    assert change[under].mean() < 0.1 * change[lid].mean()
    # and it thins out towards the crease: where the profile is thin the lid changes less than where dense
    thin = (masks[EYE_SHADOW] > 0.05) & (profile > 0) & (profile < 0.3)
    dense = region & (profile > 0.8)
    assert thin.sum() > 20 and dense.sum() > 20
    assert change[thin].mean() < 0.6 * change[dense].mean()


def test_foundation_is_a_bounded_shift_that_keeps_texture(faces):
    crop, lm = faces[0]
    masks = region_masks(lm, crop.shape[0])
    far_colour = (30.0, 40.0, -20.0)  # nothing like a skin: the shift is still bounded
    look = MakeupParams(foundation=Foundation(colour=far_colour, strength=1.0, smoothing=1.0))
    out = render(crop, lm, look, masks)
    shift = np.linalg.norm(_skin_mean(out, masks) - _skin_mean(crop, masks))
    assert 0.3 < shift <= FOUNDATION_MAX_SHIFT + 0.5
    skin = masks[SKIN] > 0.5
    assert 0.9 < _laplacian_spread(out, skin) / _laplacian_spread(crop, skin) < 1.05


def test_foundation_fades_out_before_the_hairline_and_jaw(faces):
    """No seam: at the face's outline the foundation is gone, well inside it is at full strength."""
    crop, lm = faces[1]
    masks = region_masks(lm, crop.shape[0])
    fade = face_fade(masks)
    inside = masks.max(axis=0) > 0.5
    cols = np.flatnonzero(inside.any(axis=0))
    top = inside.argmax(axis=0)[cols]  # the hairline, column by column
    bottom = inside.shape[0] - 1 - inside[::-1].argmax(axis=0)[cols]  # the jaw
    edge = np.zeros_like(inside)
    edge[top, cols] = edge[bottom, cols] = True
    assert fade[edge].max() < 0.1 and fade[masks[SKIN] > 0.5].max() == pytest.approx(1.0)
    look = MakeupParams(foundation=Foundation(colour=(80.0, 8.0, 14.0), strength=1.0))
    change = np.abs(render(crop, lm, look, masks).astype(np.float32) - crop).sum(axis=-1)
    assert change[edge].mean() < 0.2 * change[fade > 0.99].mean()
