"""The webcam evaluation set: frames of clips the model never trained on, judged as a user would judge them.

People judge the product on their own webcam image, not on studio
portraits. This set samples frames from the shared clips held out of
training (``ipmcam.ipmnet.dataset.EVAL_CLIPS``: real webcams, warm lamps,
low light, glasses, a darker-skinned man, a small face in a 720p frame),
runs each through the real Pipeline with a few references, and measures
on the aligned crops:

* ``skin_shift``: CIEDE2000 between the mean Lab colour of the skin (the
  skin mask's core: the face without lips, eyes, lids and brows) of the
  input and of the output. Makeup may tint; it must not change who the
  person is (their tone). 0 is untouched.
* ``texture``: the skin's fine detail kept, the standard deviation of the
  Laplacian of L, output over input (1: all kept; below: smoothed or washed
  out; above: noise or sharpening added), on the skin core away from the
  lips' and lids' feathered edges (``skin_interior``).
* ``identity``: dlib distance, output against input, averaged over the
  clip's frames (``measure.identity``); ``identity_lips``,
  ``identity_eyes`` and ``identity_rest``: the same with only that part of
  the makeup delta applied (``identity_parts``), which says what moves it.
* ``lips`` and ``eye_shadow``: the robust colour of the lips and of the
  whole eye-shadow region against the reference's
  (``measure.metrics.region_delta_e``), as in the portrait set; ``lid``:
  the same on the upper lid only (the region where the lid profile of
  ``ipmnet.render`` is over one half, on both faces), where eye shadow is
  worn: the eye-shadow region also holds the under-eye and brow bone,
  which are the person's skin on both faces.

Clip means are reported per clip, over all clips, their worst, and per
group (glasses or not, skin tone light / medium / dark) from ``CLIPS``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ipmcam.engines.base import Engine
from ipmcam.errors import UserError
from ipmcam.face import align
from ipmcam.face.masks import EYE_SHADOW, LIPS, SKIN, lid_profile
from ipmcam.ipmnet.color import delta_e2000, robust_colour, to_lab, weighted_mean
from ipmcam.ipmnet.dataset import EVAL_CLIPS, sample_frames
from ipmcam.measure.harness import IdentityMeter, Recorder, static_pipeline
from ipmcam.measure.metrics import CORE, apply_delta, region_delta_e


@dataclass(frozen=True)
class Clip:
    """What a held-out clip shows, for the per-group rows."""

    glasses: bool
    tone: str  # light, medium or dark skin
    conditions: str


#: The held-out clips (exactly ``EVAL_CLIPS``) and their groups. Skin tone by eye, from the frames.
CLIPS: dict[str, Clip] = {
    "edtalk_obama_office": Clip(False, "dark", "daylight office"),
    "ghost_obama_warm_indoor": Clip(False, "dark", "warm tungsten light, dark background"),
    "d12": Clip(True, "medium", "glasses, indoor"),
    "d13": Clip(True, "medium", "webcam-like, glasses, portrait orientation"),
    "pyfeat_webcam_asian_man_short": Clip(False, "medium", "home laptop webcam"),
    "ghost_webcam_videochat_2person": Clip(False, "light", "webcam video chat, two faces, dim room"),
    "pyfeat_woman_lowkey_headturn": Clip(False, "light", "low-key light, hand over the face, profile turns"),
    "s18": Clip(False, "light", "720p wide shot, small face"),
    "aniportrait_older_woman": Clip(False, "light", "older face, warm indoor light"),
    "mimictalk_older_man_office": Clip(False, "light", "older face, office light"),
}
#: frames sampled per clip, evenly over its length
FRAMES_PER_CLIP = 6
#: a lips or eye-shadow mask above this reaches the pixel: its feather's edge, kept out of the texture ratio
EDGE_REACH = 0.01
#: the per-frame metrics averaged into clip, group and overall rows
METRICS = ("skin_shift", "texture", "identity", "lips", "eye_shadow", "lid",
           "identity_lips", "identity_eyes", "identity_rest")
GROUPS: dict[str, Any] = {
    "glasses": lambda c: c.glasses, "no glasses": lambda c: not c.glasses,
    "light skin": lambda c: c.tone == "light", "medium skin": lambda c: c.tone == "medium",
    "dark skin": lambda c: c.tone == "dark",
}


def skin_core(masks: np.ndarray) -> np.ndarray:
    """Boolean (S, S): the skin mask's core (lips, eyes, lids and brows are other channels or holes)."""
    return np.asarray(masks[SKIN]) > CORE


def skin_shift(crop: np.ndarray, output: np.ndarray, masks: np.ndarray) -> float:
    """CIEDE2000 between the mean skin colour of input and output crops (BGR uint8)."""
    weight = skin_core(masks).astype(np.float32)
    return float(delta_e2000(weighted_mean(to_lab(crop), weight), weighted_mean(to_lab(output), weight)))


def _laplacian_spread(crop: np.ndarray, where: np.ndarray) -> float:
    lightness = to_lab(crop)[..., 0]
    return float(cv2.Laplacian(lightness, cv2.CV_32F, ksize=3)[where].std())


def skin_interior(masks: np.ndarray) -> np.ndarray:
    """Boolean (S, S): the skin core without the band where the lips' or eye shadow's feather reaches.

    A 3x3 Laplacian beside the lip line measures the line's contrast, and
    lipstick changes that contrast by design: pale lips on dark skin read as
    texture added (lite v4 on the warm-light Obama clip: 1.05 on the whole
    core, 1.00 beyond the band; ``docs/eval.md``). The band is left out, as the independent judge leaves out a
    margin round the lips and eyes; the skin shift keeps the whole core, so
    colour spilling past an edge still counts there.
    """
    near = (np.asarray(masks[LIPS]) > EDGE_REACH) | (np.asarray(masks[EYE_SHADOW]) > EDGE_REACH)
    near = cv2.dilate(near.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # the Laplacian's own reach
    return skin_core(masks) & ~near


def texture_ratio(crop: np.ndarray, output: np.ndarray, masks: np.ndarray) -> float:
    """The skin's Laplacian spread of L, output over input (1: texture kept); NaN on an empty skin."""
    where = skin_interior(masks)
    if where.sum() < 16:
        return math.nan
    before = _laplacian_spread(crop, where)
    return _laplacian_spread(output, where) / before if before > 0 else math.nan


def identity_parts(masks: np.ndarray) -> dict[str, np.ndarray]:
    """Weights (S, S) that split a makeup delta into the lips', the eye shadow's and the rest's share.

    The rest is everything outside both feathered masks: the skin, and any
    colour a region painted past its own edge.
    """
    lips, eyes = np.asarray(masks[LIPS], np.float32), np.asarray(masks[EYE_SHADOW], np.float32)
    return {"lips": lips, "eyes": eyes, "rest": 1.0 - np.maximum(lips, eyes)}


def lid_colour(crop: np.ndarray, masks: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Robust Lab colour of the upper lid of a crop; ``landmarks`` (478, 2) in crop pixels."""
    lid = masks[EYE_SHADOW] * (lid_profile(crop.shape[0], landmarks) > 0.5)
    return robust_colour(to_lab(crop), lid.astype(np.float32), core=CORE)


def crop_landmarks(frame_landmarks: np.ndarray) -> np.ndarray:
    """A face's landmarks in the canonical crop the pipeline cuts from the frame."""
    return align.transform_points(frame_landmarks, align.crop_transform(frame_landmarks))


def webcam_frames(data: Path, clips: Iterable[str], per_clip: int) -> list[tuple[str, np.ndarray]]:
    """(clip, frame) for ``per_clip`` frames spread over each clip under ``data``/videos; missing clips skipped."""
    out = []
    for name in clips:
        path = data / "videos" / f"{name}.mp4"
        if path.is_file():
            out += [(name, frame) for frame in sample_frames(path, per_clip)]
    return out


def run_webcam(engine: Engine, frames: Sequence[tuple[str, np.ndarray]],
               references: Sequence[tuple[str, np.ndarray]], identity: IdentityMeter | None,
               keep: Any = None) -> list[dict[str, Any]]:
    """One row of metrics per (frame, reference) through a real Pipeline (every frame a fresh photo).

    ``keep(clip, reference, crops)`` receives the input and output crops of each clip's first frame.
    """
    rec = Recorder(engine)
    pipeline, tap = static_pipeline(rec)
    rows: list[dict[str, Any]] = []
    try:
        for ref_name, ref_image in references:
            try:
                pipeline.set_reference(ref_image)
            except UserError as exc:
                rows.append({"reference": ref_name, "error": str(exc)})
                continue
            ref_crop, ref_masks = rec.reference
            ref_lid = lid_colour(ref_crop, ref_masks, tap.tracker(ref_crop, 0.0)[0].landmarks)
            seen: set[str] = set()
            for k, (clip, frame) in enumerate(frames):
                rec.last = None
                _, changed = pipeline.process(frame, 10.0 * (k + 1))
                if not changed or rec.last is None:
                    rows.append({"clip": clip, "reference": ref_name, "error": "no face found"})
                    continue
                crops, masks, deltas = rec.last
                crop, crop_masks = crops[0], np.asarray(masks[0], np.float32)
                made_up = apply_delta(crop, deltas[0])
                colour = region_delta_e(made_up, crop_masks, ref_crop, ref_masks)
                row: dict[str, Any] = {
                    "clip": clip, "reference": ref_name, "skin_shift": skin_shift(crop, made_up, crop_masks),
                    "texture": texture_ratio(crop, made_up, crop_masks), "lips": colour["lips"],
                    "eye_shadow": colour["eye_shadow"],
                    "lid": float(delta_e2000(lid_colour(made_up, crop_masks, crop_landmarks(tap.faces[0].landmarks)),
                                             ref_lid)),
                }
                if identity is not None:
                    row["identity"] = identity.distance(crop, made_up)
                    for part, weight in identity_parts(crop_masks).items():
                        part_only = apply_delta(crop, deltas[0] * weight[..., None])
                        row[f"identity_{part}"] = identity.distance(crop, part_only)
                rows.append(row)
                if keep is not None and clip not in seen:
                    keep(clip, ref_name, {"source": crop, "reference": ref_crop, "output": made_up})
                seen.add(clip)
    finally:
        pipeline.close()
    return rows


def _mean(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def summarise_webcam(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-clip means, then over all clips (mean and worst clip) and per group with clips in it."""
    ok = [r for r in rows if "error" not in r]
    clips = {name: {m: _mean(r.get(m) for r in ok if r["clip"] == name) for m in METRICS}
             for name in dict.fromkeys(r["clip"] for r in ok)}
    summary: dict[str, Any] = {"rows": len(ok), "failed": len(rows) - len(ok), "clips": clips,
                               "mean": {m: _mean(c[m] for c in clips.values()) for m in METRICS}}
    summary["worst"] = {
        "skin_shift": max((c["skin_shift"] for c in clips.values()), default=math.nan),
        "identity": max((c["identity"] for c in clips.values() if not math.isnan(c["identity"])), default=math.nan),
        "texture_low": min((c["texture"] for c in clips.values()), default=math.nan),
        "texture_high": max((c["texture"] for c in clips.values()), default=math.nan),
    }
    groups = {}
    for group, member in GROUPS.items():
        names = [n for n in clips if n in CLIPS and member(CLIPS[n])]
        if names:
            groups[group] = {"clips": names, **{m: _mean(clips[n][m] for n in names) for m in METRICS}}
    summary["groups"] = groups
    return summary


def _fmt(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def webcam_table(models: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per model and group (all clips first), then per clip for every model."""
    head = "| model | clips | skin shift ΔE | worst clip | texture | ID dist | worst ID | lips ΔE | eyes ΔE | lid ΔE |"
    lines = [head, "|" + "---|" * 10]
    for key, summary in models.items():
        mean, worst = summary["mean"], summary["worst"]
        lines.append(f"| {key} | all {len(summary['clips'])} | {_fmt(mean['skin_shift'])} | {_fmt(worst['skin_shift'])}"
                     f" | {_fmt(mean['texture'])} | {_fmt(mean['identity'])} | {_fmt(worst['identity'])}"
                     f" | {_fmt(mean['lips'])} | {_fmt(mean['eye_shadow'])} | {_fmt(mean['lid'])} |")
        for group, g in summary["groups"].items():
            lines.append(f"| {key} | {group} ({len(g['clips'])}) | {_fmt(g['skin_shift'])} | | {_fmt(g['texture'])}"
                         f" | {_fmt(g['identity'])} | | {_fmt(g['lips'])} | {_fmt(g['eye_shadow'])} | {_fmt(g['lid'])} |")
    lines += ["", "| clip | " + " | ".join(f"{k} skin / ID / lips" for k in models) + " |",
              "|" + "---|" * (len(models) + 1)]
    for clip in dict.fromkeys(c for s in models.values() for c in s["clips"]):
        cells = []
        for summary in models.values():
            c = summary["clips"].get(clip)
            cells.append("–" if c is None else f"{_fmt(c['skin_shift'])} / {_fmt(c['identity'])} / {_fmt(c['lips'])}")
        lines.append(f"| {clip} | " + " | ".join(cells) + " |")
    lines += ["", "| model | ID dist | lips' change only | eye shadow's only | the rest only |", "|---|---|---|---|---|"]
    for key, summary in models.items():
        mean = summary["mean"]
        lines.append(f"| {key} | {_fmt(mean['identity'])} | {_fmt(mean['identity_lips'])}"
                     f" | {_fmt(mean['identity_eyes'])} | {_fmt(mean['identity_rest'])} |")
    return "\n".join(lines) + "\n"


def default_clips() -> tuple[str, ...]:
    """The held-out clips, in ``CLIPS`` order."""
    return tuple(name for name in CLIPS if name in EVAL_CLIPS)
