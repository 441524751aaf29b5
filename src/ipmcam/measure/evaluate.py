"""`ipmcam eval`: how well each engine copies a look, and what it must leave alone.

    ipmcam eval [--data ../shared/data] [--out out/eval] [--models auto] [--precision fp32,int8]

Every model is judged on data no model was trained on (``ipmnet.dataset.is_held_out``):

* **pairs**: held-out bare faces (faces/nonmakeup) x held-out made-up
  references (faces/makeup), run through the real ``Pipeline`` on the full
  photos. On the canonical crops the pipeline made:

  - ``delta_e``: CIEDE2000 between the robust colour (``robust_colour``:
    median, highlights left out) of each region of the output and of the same
    region of the reference: lips, eye_shadow, skin, and their mean. The
    ``none`` model is the input itself, so its ΔE is the distance to beat;
    ``delta_e_gain`` is how much closer a model got (positive is better).
  - ``identity``: dlib face-recognition distance between output and input
    crop (``measure.identity``); under 0.6 is "the same person" for dlib.

  On the full frames: ``outside``: PSNR between output and input frame over
  every pixel outside the face (the face-mesh hull grown by 6% of the face
  size; the mask feathering reaches about 4% past the hull; the whole frame
  when no face was drawn), pooled over all frames, which must be infinite:
  nothing outside the face may change. ``changed_pixels`` counts them.
* **synthetic**: exact pairs from the procedural renderer
  (``ipmnet.render.make_pair``, ``MakeupParams.random``, fixed seed) on
  held-out identities of the cached face set: PSNR to the exact target over
  the whole crop (``psnr``) and over the region makeup may touch
  (``psnr_face``).
* **webcam**: frames of the clips held out of training, through the real
  Pipeline with the demo reference and held-out references: skin tone
  shift, skin texture kept, identity, lips and eye-shadow ΔE, per clip,
  overall and per group (``measure.webcam_set``).
* **videos**: held-out clips through the real Pipeline (tracking and
  smoothing as live): ``flicker`` is the mean absolute frame-to-frame change
  of the makeup delta inside the face, in crop space and pixel units (lower
  is steadier; ``delta`` is the mean delta magnitude, for scale), and the
  frames count towards ``outside``.

Writes ``eval.json`` (settings, versions, per-model summary, per-row
results; infinities as the string "inf"), ``table.md``, ``grid.png``
(source | reference | each engine) and ``grid_synthetic.png`` (source |
reference | target | each engine), ``grid_webcam.png`` (webcam frames: input |
each engine). torch is never imported; dlib only for the identity metric.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ipmcam.engines.base import Engine
from ipmcam.engines.classic import ClassicEngine
from ipmcam.engines.loader import default_model_dir, load
from ipmcam.errors import EngineError, UserError
from ipmcam.face.masks import union
from ipmcam.face.reference import read_reference
from ipmcam.ipmnet.dataset import is_held_out, load_or_build, split
from ipmcam.ipmnet.render import paint_region
from ipmcam.ipmnet.weights import GENERATOR_FILES, read_manifest
from ipmcam.measure.eval_data import held_out_photos, synthetic_pairs
from ipmcam.measure.eval_report import (
    grid_image,
    jsonable,
    markdown_table,
    summarise,
)
from ipmcam.measure.harness import (
    BASELINE,
    IdentityMeter,
    NoOpEngine,
    Recorder,
    TrackerTap,
    static_pipeline,
)
from ipmcam.measure.identity import available
from ipmcam.measure.machine import versions
from ipmcam.measure.metrics import (
    CORE,
    OUTSIDE_MARGIN,
    FlickerMeter,
    OutsideFace,
    apply_delta,
    psnr,
    region_delta_e,
)
from ipmcam.measure.webcam_set import (
    CLIPS,
    FRAMES_PER_CLIP,
    default_clips,
    run_webcam,
    summarise_webcam,
    webcam_frames,
    webcam_table,
)
from ipmcam.realtime.pipeline import Pipeline
from ipmcam.resources import CACHE_DIR, DEMO_REFERENCE, SHARED_DATA

log = logging.getLogger("ipmcam")

DEFAULT_DATA = SHARED_DATA
DEFAULT_CACHE = CACHE_DIR / "faces.npz"


# --------------------------------------------------------------------------- engines


@dataclass
class ModelSpec:
    """One column of the report: ``none``, ``classic`` or ``ipmnet`` at a precision."""

    key: str
    kind: str
    precision: str = "fp32"


def resolve_models(names: str, precisions: Sequence[str], model_dir: Path | None,
                   config: str) -> tuple[list[ModelSpec], dict[str, str]]:
    """The models to run and, for ``auto``, those passed over with the reason."""
    skipped: dict[str, str] = {}
    wanted = ["none", "classic", "ipmnet"] if names == "auto" else [n.strip() for n in names.split(",") if n.strip()]
    specs: list[ModelSpec] = []
    for name in wanted:
        if name not in ("none", "classic", "ipmnet"):
            raise EngineError(f"unknown model {name!r}: choose from none, classic, ipmnet (comma-separated) or auto")
        if name != "ipmnet":
            specs.append(ModelSpec(name, name))
            continue
        root = model_dir or default_model_dir(config)
        if names == "auto" and model_dir is None and not Path(root).is_dir():
            skipped["ipmnet"] = f"no weights at {root} (train and export, or pass --model-dir)"
            continue
        for p in precisions:
            specs.append(ModelSpec("ipmnet" if p == "fp32" else f"ipmnet-{p}", "ipmnet", p))
    if BASELINE not in [s.key for s in specs]:
        specs.insert(0, ModelSpec(BASELINE, BASELINE))  # every gain is measured against it
    return specs, skipped


def model_info(spec: ModelSpec, model_dir: Path | None, config: str) -> dict[str, Any] | None:
    """Which exported model an ipmnet column ran: folder, config and the graph's checksum."""
    if spec.kind != "ipmnet":
        return None
    root = Path(model_dir) if model_dir is not None else default_model_dir(config)
    manifest = read_manifest(root)
    graph = GENERATOR_FILES.get(spec.precision, "")
    return {"dir": str(root), "config": manifest.config_name, "generator": graph,
            "sha256": manifest.files.get(graph, {}).get("sha256")}


def open_engine(spec: ModelSpec, backend: str, model_dir: Path | None, config: str) -> Engine:
    if spec.kind == "none":
        return NoOpEngine()
    if spec.kind == "classic":
        return ClassicEngine()
    return load(model_dir, backend=backend, precision=spec.precision, config=config)


# --------------------------------------------------------------------------- runners


def run_pairs(engine: Engine, sources: list[tuple[str, np.ndarray]], references: list[tuple[str, np.ndarray]],
              identity: IdentityMeter | None, outside: OutsideFace, keep: Callable[[str, str, dict[str, np.ndarray]], None]
              ) -> tuple[list[dict[str, Any]], list[float]]:
    """Per-pair metrics for one engine and its run times (ms per face).

    ``keep(source, reference, crops)`` receives the crops for the grid.
    """
    rec = Recorder(engine)
    pipeline, tap = static_pipeline(rec)
    rows: list[dict[str, Any]] = []
    clock = 0.0
    try:
        for ref_name, ref_image in references:
            try:
                pipeline.set_reference(ref_image)
            except UserError as exc:
                rows += [{"source": s, "reference": ref_name, "error": str(exc)} for s, _ in sources]
                continue
            ref_crop, ref_masks = rec.reference
            for src_name, src_image in sources:
                rec.last = None
                clock += 10.0
                out, changed = pipeline.process(src_image, clock)
                if not changed or rec.last is None:
                    outside.add(out, src_image, [])  # no face: nothing at all may change
                    rows.append({"source": src_name, "reference": ref_name, "error": "no face found in the source"})
                    continue
                crops, masks, deltas = rec.last
                crop, crop_masks = crops[0], np.asarray(masks[0], np.float32)
                made_up = apply_delta(crop, deltas[0])
                row: dict[str, Any] = {"source": src_name, "reference": ref_name,
                                       "delta_e": region_delta_e(made_up, crop_masks, ref_crop, ref_masks)}
                if identity is not None:
                    row["identity"] = identity.distance(crop, made_up)
                row["psnr_outside"] = outside.add(out, src_image, tap.drawn(changed))
                rows.append(row)
                keep(src_name, ref_name, {"source": crop, "reference": ref_crop, "output": made_up})
    finally:
        pipeline.close()
    return rows, [1000.0 * t for t in rec.seconds_per_face]


def run_synthetic(engine: Engine, pairs: list[dict[str, Any]], keep: Callable[[int, np.ndarray], None]
                  ) -> list[dict[str, Any]]:
    """PSNR of the engine's output to the exact rendered target, crop by crop."""
    rows = []
    for k, item in enumerate(pairs):
        pair = item["pair"]
        style = engine.encode_style(pair.reference, item["reference_masks"])
        delta = engine.run(pair.source[None], item["source_masks"][None], style)[0]
        made_up = apply_delta(pair.source, delta)
        face = paint_region(item["source_masks"])
        rows.append({"psnr": psnr(made_up, pair.target), "psnr_face": psnr(made_up, pair.target, face)})
        keep(k, made_up)
    return rows


def run_video(engine: Engine, path: Path, reference: np.ndarray, max_frames: int, outside: OutsideFace) -> dict[str, Any]:
    """Flicker of the makeup delta and the outside check on one clip, through a live-configured Pipeline."""
    rec = Recorder(engine)
    pipeline = Pipeline(None, rec, reference=reference)
    tap = TrackerTap(pipeline.tracker)
    pipeline.tracker = tap
    meter = FlickerMeter()
    local = OutsideFace()
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    frames = frames_with_face = 0
    try:
        while max_frames <= 0 or frames < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            rec.last = None
            out, changed = pipeline.process(frame, frames / fps)
            frames += 1
            if not changed or rec.last is None:
                meter.gap()
                for pool in (local, outside):
                    pool.add(out, frame, [])  # no face: nothing at all may change
                continue
            frames_with_face += 1
            _, masks, deltas = rec.last
            meter.add(deltas[0], union(np.asarray(masks[0], np.float32)))
            for pool in (local, outside):
                pool.add(out, frame, tap.drawn(changed))
    finally:
        capture.release()
        pipeline.close()
    return {"frames": frames, "frames_with_face": frames_with_face, "flicker": meter.value, "delta": meter.delta,
            "psnr_outside": local.summary()["psnr"], "changed_pixels_outside": local.changed}


# --------------------------------------------------------------------------- runner


@dataclass
class EvalSettings:
    data: Path = DEFAULT_DATA
    out: Path = Path("out/eval")
    models: str = "auto"
    precisions: tuple[str, ...] = ("fp32",)
    backend: str = "auto"
    config: str = "lite"
    model_dir: Path | None = None
    sources: int = 6
    references: int = 4
    synthetic: int = 24
    seed: int = 0
    videos: tuple[str, ...] = ("d12", "d13", "edtalk_obama_office", "pyfeat_webcam_asian_man_short")
    video_frames: int = 60
    video_reference: Path | None = None
    faces_cache: Path = DEFAULT_CACHE
    webcam_clips: tuple[str, ...] = field(default_factory=default_clips)
    webcam_frames: int = FRAMES_PER_CLIP
    webcam_references: int = 3  # the demo reference, then the first held-out references
    identity: bool = True
    cell: int = 160
    notes: dict[str, str] = field(default_factory=dict)


def evaluate(s: EvalSettings) -> dict[str, Any]:
    """Run every model on every set; write eval.json, table.md and the grids under ``s.out``; the report."""
    if not (s.data / "faces").is_dir():
        raise UserError(f"no evaluation data at {s.data} (expected faces/ and videos/): pass --data DIR")
    specs, skipped = resolve_models(s.models, s.precisions, s.model_dir, s.config)
    sources = held_out_photos(s.data, "nonmakeup", s.sources)
    references = held_out_photos(s.data, "makeup", s.references)
    if not sources or not references:
        raise UserError(f"no held-out faces under {s.data / 'faces'}")
    notes = dict(s.notes)
    identity = None
    if s.identity:
        reason = available()
        if reason:
            notes["identity"] = f"skipped: {reason}"
        else:
            identity = IdentityMeter()

    held = None
    if s.synthetic > 0:
        _, held = split(load_or_build(s.data, s.faces_cache))
    synth = synthetic_pairs(held, s.synthetic, s.seed) if held is not None else []

    video_paths = []
    for name in s.videos:
        path = s.data / "videos" / f"{name}.mp4"
        if path.is_file():
            video_paths.append(path)
            if not is_held_out(name):
                notes[f"video {name}"] = "not a held-out identity (its frames are in the training set)"
        else:
            notes[f"video {name}"] = f"skipped: {path} not found"
    video_ref_name = str(s.video_reference) if s.video_reference else f"faces/makeup/{references[0][0]}.png"
    video_ref = read_reference(s.video_reference) if s.video_reference else references[0][1]

    wframes = webcam_frames(s.data, s.webcam_clips, s.webcam_frames) if s.webcam_references > 0 else []
    wrefs = ([("demo reference", read_reference(DEMO_REFERENCE))] + references)[: s.webcam_references]
    webcam_rows: dict[str, list[dict[str, Any]]] = {}
    webcam_crops: dict[tuple[str, str], dict[str, np.ndarray]] = {}

    pair_rows: dict[str, list[dict[str, Any]]] = {}
    synth_rows: dict[str, list[dict[str, Any]]] = {}
    videos: dict[str, dict[str, Any]] = {
        p.stem: {"path": str(p), "held_out": is_held_out(p.stem), "reference": video_ref_name, "models": {}}
        for p in video_paths
    }
    summaries: dict[str, dict[str, Any]] = {}
    pair_crops: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    synth_crops: dict[int, dict[str, np.ndarray]] = {}
    for spec in specs:
        try:
            engine = open_engine(spec, s.backend, s.model_dir, s.config)
        except EngineError as exc:
            if s.models != "auto":
                raise
            skipped[spec.key] = str(exc)
            continue
        log.info("eval: %s (%s)", spec.key, engine.name)
        outside = OutsideFace()
        try:
            def keep_pair(src: str, ref: str, crops: dict[str, np.ndarray], key: str = spec.key) -> None:
                entry = pair_crops.setdefault((src, ref), {"source": crops["source"], "reference": crops["reference"]})
                entry[key] = crops["output"]

            def keep_synth(k: int, image: np.ndarray, key: str = spec.key) -> None:
                synth_crops.setdefault(k, {})[key] = image

            def keep_webcam(clip: str, ref: str, crops: dict[str, np.ndarray], key: str = spec.key) -> None:
                entry = webcam_crops.setdefault((clip, ref), {"source": crops["source"]})
                entry[key] = crops["output"]

            rows, ms = run_pairs(engine, sources, references, identity, outside, keep_pair)
            webcam_rows[spec.key] = run_webcam(engine, wframes, wrefs, identity, keep_webcam) if wframes else []
            pair_rows[spec.key] = rows
            synth_rows[spec.key] = run_synthetic(engine, synth, keep_synth)
            for path in video_paths:
                videos[path.stem]["models"][spec.key] = run_video(engine, path, video_ref, s.video_frames, outside)
            precision = spec.precision if spec.kind == "ipmnet" else None
            summaries[spec.key] = {"engine": engine.name, "precision": precision,
                                   "model": model_info(spec, s.model_dir, s.config),
                                   **summarise(spec.key, rows, synth_rows[spec.key], videos, outside, ms)}
            if wframes:
                summaries[spec.key]["webcam"] = summarise_webcam(webcam_rows[spec.key])
        finally:
            engine.close()

    base = summaries.get(BASELINE)
    if base is not None:
        for summary in summaries.values():
            summary["delta_e_gain"] = {k: base["delta_e"][k] - v for k, v in summary["delta_e"].items()}

    settings = {
        "data": str(s.data), "models": [sp.key for sp in specs], "backend": s.backend, "config": s.config,
        "model_dir": str(s.model_dir) if s.model_dir else None, "sources": [n for n, _ in sources],
        "references": [n for n, _ in references], "synthetic": {"pairs": len(synth), "seed": s.seed,
                                                                 "faces_cache": str(s.faces_cache)},
        "videos": [p.stem for p in video_paths], "video_frames": s.video_frames, "video_reference": video_ref_name,
        "outside_margin": OUTSIDE_MARGIN, "region_core": CORE,
        "webcam": {"clips": {n: vars(CLIPS[n]) if n in CLIPS else {} for n in dict.fromkeys(c for c, _ in wframes)},
                   "frames_per_clip": s.webcam_frames, "references": [n for n, _ in wrefs]},
        "identity": {"model": "dlib_face_recognition_resnet_model_v1 + shape_predictor_5_face_landmarks",
                     "on": "canonical 256x256 crops; box from the input crop, reused for the output",
                     "same_person_threshold": 0.6, "enabled": identity is not None},
    }
    report: dict[str, Any] = {
        "settings": settings, "versions": versions(), "models": summaries, "skipped": skipped, "notes": notes,
        "pairs": _pair_table(pair_rows), "synthetic": _synth_table(synth, synth_rows), "videos": videos,
        "webcam": webcam_rows,
    }
    s.out.mkdir(parents=True, exist_ok=True)
    (s.out / "eval.json").write_text(json.dumps(jsonable(report), indent=1, ensure_ascii=False) + "\n")
    webcam = {k: v["webcam"] for k, v in summaries.items() if "webcam" in v}
    (s.out / "table.md").write_text(markdown_table(report) + ("\n## Webcam set\n\n" + webcam_table(webcam)
                                                             if webcam else ""))
    shown = [sp.key for sp in specs if sp.key in summaries and sp.key != BASELINE]
    keys = sorted(pair_crops)
    if keys:
        grid = grid_image(["source", "reference", *shown],
                          [[pair_crops[k]["source"], pair_crops[k]["reference"], *(pair_crops[k].get(m) for m in shown)]
                           for k in keys], [f"{a} x {b}" for a, b in keys], s.cell)
        cv2.imwrite(str(s.out / "grid.png"), grid)
    if webcam_crops:
        keys = sorted(k for k in webcam_crops if k[1] == wrefs[0][0])
        grid = grid_image(["input", *shown], [[webcam_crops[k]["source"], *(webcam_crops[k].get(m) for m in shown)]
                                              for k in keys], [k[0] for k in keys], s.cell)
        cv2.imwrite(str(s.out / "grid_webcam.png"), grid)
    if synth:
        grid = grid_image(["source", "reference", "target", *shown],
                          [[it["pair"].source, it["pair"].reference, it["pair"].target,
                            *(synth_crops.get(k, {}).get(m) for m in shown)] for k, it in enumerate(synth)],
                          [f"{it['source']} x {it['reference']}" for it in synth], s.cell)
        cv2.imwrite(str(s.out / "grid_synthetic.png"), grid)
    return report


def _pair_table(rows_by_model: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (source, reference) with each model's metrics under "models"."""
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for key, rows in rows_by_model.items():
        for row in rows:
            entry = table.setdefault((row["source"], row["reference"]),
                                     {"source": row["source"], "reference": row["reference"], "models": {}})
            entry["models"][key] = {k: v for k, v in row.items() if k not in ("source", "reference")}
    return list(table.values())


def _synth_table(pairs: list[dict[str, Any]], rows_by_model: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{"source": it["source"], "reference": it["reference"], "look": it["look"],
             "models": {key: rows[k] for key, rows in rows_by_model.items() if k < len(rows)}}
            for k, it in enumerate(pairs)]


