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
    crop (``ipmnet.identity``); under 0.6 is "the same person" for dlib.

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
* **videos**: held-out clips through the real Pipeline (tracking and
  smoothing as live): ``flicker`` is the mean absolute frame-to-frame change
  of the makeup delta inside the face, in crop space and pixel units (lower
  is steadier; ``delta`` is the mean delta magnitude, for scale), and the
  frames count towards ``outside``.

Writes ``eval.json`` (settings, versions, per-model summary, per-row
results; infinities as the string "inf"), ``table.md``, ``grid.png``
(source | reference | each engine) and ``grid_synthetic.png`` (source |
reference | target | each engine). torch is never imported; dlib only for
the identity metric.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.base import Engine, EngineError

log = logging.getLogger("ipmcam")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_CACHE = REPO / ".cache" / "faces.npz"
REGIONS = ("lips", "eye_shadow", "skin")  # realtime.masks.MASK_CHANNELS order
#: how far past the face-mesh hull "outside the face" starts, as a fraction of the face size
OUTSIDE_MARGIN = 0.06
#: mask weight above which a crop pixel counts as inside a region
CORE = 0.5
BASELINE = "none"


# --------------------------------------------------------------------------- metrics


def region_colours(crop: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Robust Lab colour (len(REGIONS), 3) of each region of a BGR uint8 crop; masks (C, S, S) in [0, 1]."""
    from ipmnet.color import robust_colour, to_lab

    lab = to_lab(crop)
    return np.stack([robust_colour(lab, np.asarray(m, np.float32), core=CORE) for m in masks[: len(REGIONS)]])


def region_delta_e(output: np.ndarray, output_masks: np.ndarray,
                   reference: np.ndarray, reference_masks: np.ndarray) -> dict[str, float]:
    """CIEDE2000 per region between the output's and the reference's robust region colours, and their mean."""
    from ipmnet.color import delta_e2000

    de = delta_e2000(region_colours(output, output_masks), region_colours(reference, reference_masks))
    out = {name: float(v) for name, v in zip(REGIONS, de)}
    out["mean"] = float(np.mean(de))
    return out


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """PSNR (dB, peak 255) between two images over the pixels where ``where`` (H, W) is true; inf if equal."""
    sse, count = squared_error(a, b, where)
    return psnr_from(sse, count)


def squared_error(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> tuple[float, int]:
    """(sum of squared differences, number of values) over the selected pixels, for pooling PSNR."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    if where is not None:
        diff = diff[where]
    return float(np.square(diff).sum()), int(diff.size)


def psnr_from(sse: float, count: int) -> float:
    if count == 0:
        return math.nan
    if sse == 0:
        return math.inf
    return float(10 * math.log10(255.0**2 / (sse / count)))


def outside_face(shape: tuple[int, ...], landmarks: np.ndarray, margin: float = OUTSIDE_MARGIN) -> np.ndarray:
    """Boolean (H, W): frame pixels outside the face-mesh hull grown by ``margin`` of the face size (+2 px)."""
    h, w = shape[:2]
    pts = np.asarray(landmarks, np.float64)[:, :2]
    face = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(face, np.round(cv2.convexHull(pts.astype(np.float32))[:, 0] * 16).astype(np.int32), 1,
                       lineType=cv2.LINE_8, shift=4)
    r = int(math.ceil(margin * float(np.ptp(pts, axis=0).max()))) + 2
    face = cv2.dilate(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return face == 0


class FlickerMeter:
    """Mean absolute frame-to-frame change of a crop-space delta, weighted by the face mask.

    ``add`` one frame's delta (S, S, 3) and mask weight (S, S) in [0, 1]; a
    pair of frames is compared where both weights are (the minimum), so
    ``value`` is in pixel units per channel. ``gap`` (a frame without a face)
    breaks the chain.
    """

    def __init__(self) -> None:
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._sum = 0.0
        self._weight = 0.0
        self._delta_sum = 0.0
        self._delta_weight = 0.0
        self.pairs = 0

    def add(self, delta: np.ndarray, weight: np.ndarray) -> None:
        delta = np.asarray(delta, np.float32)
        weight = np.asarray(weight, np.float32)
        self._delta_sum += float((np.abs(delta).mean(axis=-1) * weight).sum())
        self._delta_weight += float(weight.sum())
        if self._prev is not None:
            prev_delta, prev_weight = self._prev
            both = np.minimum(weight, prev_weight)
            self._sum += float((np.abs(delta - prev_delta).mean(axis=-1) * both).sum())
            self._weight += float(both.sum())
            self.pairs += 1
        self._prev = (delta, weight)

    def gap(self) -> None:
        self._prev = None

    @property
    def value(self) -> float:
        return self._sum / self._weight if self._weight > 0 else math.nan

    @property
    def delta(self) -> float:
        """Mean absolute delta inside the face over all frames (the scale flicker is judged against)."""
        return self._delta_sum / self._delta_weight if self._delta_weight > 0 else math.nan


def temporal_flicker(deltas: Iterable[np.ndarray], weights: Iterable[np.ndarray]) -> float:
    """``FlickerMeter.value`` for a sequence of deltas (S, S, 3) and mask weights (S, S)."""
    meter = FlickerMeter()
    for delta, weight in zip(deltas, weights):
        meter.add(delta, weight)
    return meter.value


def apply_delta(crop: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """The made-up crop, rounded as ``realtime.blend.add_delta`` rounds frames."""
    return np.clip(np.rint(crop.astype(np.float32) + delta), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- engines


class NoOpEngine(Engine):
    """The do-nothing baseline: every delta is zero, so the output is the input."""

    name = BASELINE

    def encode_style(self, crop: np.ndarray, masks: np.ndarray) -> None:
        return None

    def run(self, crops: np.ndarray, masks: np.ndarray, style: Any, intensity: float = 1.0) -> np.ndarray:
        return np.zeros(crops.shape, np.float32)


class _Recorder(Engine):
    """Wraps an engine inside a Pipeline: keeps the last reference, crops, masks and deltas, and run times."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.name = engine.name
        self.reference: tuple[np.ndarray, np.ndarray] | None = None
        self.last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.seconds_per_face: list[float] = []

    def encode_style(self, crop: np.ndarray, masks: np.ndarray) -> Any:
        self.reference = (crop.copy(), np.asarray(masks, np.float32).copy())
        return self.engine.encode_style(crop, masks)

    def run(self, crops: np.ndarray, masks: np.ndarray, style: Any, intensity: float = 1.0) -> np.ndarray:
        start = time.perf_counter()
        deltas = self.engine.run(crops, masks, style, intensity)
        self.seconds_per_face.append((time.perf_counter() - start) / max(len(crops), 1))
        self.last = (crops, masks, deltas)
        return deltas


class _TrackerTap:
    """Stands in for a Pipeline's tracker and keeps the faces it returned, for the outside-face check."""

    def __init__(self, tracker: Any) -> None:
        self.tracker = tracker
        self.faces: list[Any] = []
        self.previous: list[Any] = []  # the last faces seen before this frame (a face fading out is drawn there)

    def __call__(self, image: np.ndarray, timestamp: float) -> list[Any]:
        if self.faces:
            self.previous = self.faces
        self.faces = self.tracker(image, timestamp)
        return self.faces

    def drawn(self, count: int) -> list[np.ndarray]:
        """Landmarks of the faces the pipeline may have drawn, given how many it reports."""
        faces = list(self.faces) + (list(self.previous) if count > len(self.faces) else [])
        return [f.landmarks for f in faces]

    def close(self) -> None:
        self.tracker.close()


@dataclass
class ModelSpec:
    """One column of the report: ``none``, ``classic`` or ``ipmnet`` at a precision."""

    key: str
    kind: str
    precision: str = "fp32"


def resolve_models(names: str, precisions: Sequence[str], model_dir: Path | None,
                   config: str) -> tuple[list[ModelSpec], dict[str, str]]:
    """The models to run and, for ``auto``, those passed over with the reason."""
    from engines.loader import default_model_dir

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
    from engines.loader import default_model_dir
    from ipmnet.weights import GENERATOR_FILES, read_manifest

    root = Path(model_dir) if model_dir is not None else default_model_dir(config)
    manifest = read_manifest(root)
    graph = GENERATOR_FILES.get(spec.precision, "")
    return {"dir": str(root), "config": manifest.config_name, "generator": graph,
            "sha256": manifest.files.get(graph, {}).get("sha256")}


def open_engine(spec: ModelSpec, backend: str, model_dir: Path | None, config: str) -> Engine:
    if spec.kind == "none":
        return NoOpEngine()
    if spec.kind == "classic":
        from engines.classic import ClassicEngine

        return ClassicEngine()
    from engines.loader import load

    return load(model_dir, backend=backend, precision=spec.precision, config=config)


# --------------------------------------------------------------------------- data


def held_out_photos(data: Path, folder: str, limit: int) -> list[tuple[str, np.ndarray]]:
    """(name, BGR image) of the held-out photos in faces/<folder>, sorted by name; ``limit`` 0 keeps all."""
    from ipmnet.dataset import is_held_out

    paths = [p for p in sorted((data / "faces" / folder).glob("*.png")) if is_held_out(p.stem)]
    if limit > 0:
        paths = paths[:limit]
    out = []
    for path in paths:
        image = cv2.imread(str(path))
        if image is not None:
            out.append((path.stem, image))
    return out


def synthetic_pairs(held: Any, count: int, seed: int) -> list[dict[str, Any]]:
    """Exact (source, reference, target) crops on held-out identities with random looks, reproducible by seed.

    Sources are bare faces; the reference face is any other held-out
    identity. Identities are drawn uniformly, so a long clip does not crowd
    out the photos.
    """
    from ipmnet.render import MakeupParams, make_pair
    from realtime.masks import region_masks

    rng = np.random.default_rng(seed)
    names = np.asarray(held.identity).astype(str)
    bare_ids = sorted(set(names[~held.makeup]))
    all_ids = sorted(set(names))
    if not bare_ids or len(all_ids) < 2:
        return []
    out = []
    for _ in range(count):
        src_id = bare_ids[rng.integers(len(bare_ids))]
        others = [i for i in all_ids if i != src_id]
        ref_id = others[rng.integers(len(others))]
        i = int(rng.choice(np.flatnonzero((names == src_id) & ~held.makeup)))
        j = int(rng.choice(np.flatnonzero(names == ref_id)))
        look = MakeupParams.random(rng)
        pair = make_pair(held.crops[i], held.landmarks[i], held.crops[j], held.landmarks[j], look)
        size = held.crops.shape[1]
        out.append({
            "source": src_id, "source_index": i, "reference": ref_id, "reference_index": j,
            "look": look.to_dict(), "pair": pair,
            "source_masks": region_masks(held.landmarks[i], size),
            "reference_masks": region_masks(held.landmarks[j], size),
        })
    return out


# --------------------------------------------------------------------------- runners


@dataclass
class _Outside:
    """Pooled squared error outside the face over many frames."""

    sse: float = 0.0
    count: int = 0
    changed: int = 0
    frames: int = 0

    def add(self, out: np.ndarray, image: np.ndarray, faces: Sequence[np.ndarray]) -> float:
        """Count one frame; ``faces`` are the landmarks of every face that may have been made up."""
        where = np.ones(image.shape[:2], bool)
        for landmarks in faces:
            where &= outside_face(image.shape, landmarks)
        sse, count = squared_error(out, image, where)
        self.sse += sse
        self.count += count
        self.changed += int(np.any(out != image, axis=-1)[where].sum())
        self.frames += 1
        return psnr_from(sse, count)

    def summary(self) -> dict[str, Any]:
        return {"psnr": psnr_from(self.sse, self.count), "changed_pixels": self.changed, "frames": self.frames}


class _Identity:
    """Identity distances to each source crop, with the input's descriptor computed once."""

    def __init__(self) -> None:
        from ipmnet.identity import IdentityModel

        self.model = IdentityModel()
        self._inputs: dict[str, tuple[Any, np.ndarray]] = {}

    def distance(self, crop: np.ndarray, output: np.ndarray) -> float:
        if np.array_equal(crop, output):
            return 0.0
        key = hashlib.sha1(crop.tobytes()).hexdigest()
        if key not in self._inputs:
            box = self.model.face_box(crop)
            self._inputs[key] = (box, self.model.descriptor(crop, box))
        box, ref = self._inputs[key]
        return float(np.linalg.norm(self.model.descriptor(output, box) - ref))


def _static_pipeline(engine: _Recorder) -> tuple[Any, _TrackerTap]:
    """A real Pipeline whose tracker treats every frame as an unrelated photo."""
    from realtime.pipeline import Pipeline, PipelineOptions
    from realtime.tracker import FaceTracker

    pipeline = Pipeline(None, engine, options=PipelineOptions(smooth=False))
    pipeline.tracker.close()
    tap = _TrackerTap(FaceTracker(static=True, smooth=False))
    pipeline.tracker = tap
    return pipeline, tap


def run_pairs(engine: Engine, sources: list[tuple[str, np.ndarray]], references: list[tuple[str, np.ndarray]],
              identity: _Identity | None, outside: _Outside, keep: Callable[[str, str, dict[str, np.ndarray]], None]
              ) -> tuple[list[dict[str, Any]], list[float]]:
    """Per-pair metrics for one engine and its run times (ms per face).

    ``keep(source, reference, crops)`` receives the crops for the grid.
    """
    from realtime.errors import UserError

    rec = _Recorder(engine)
    pipeline, tap = _static_pipeline(rec)
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
    from ipmnet.render import paint_region

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


def run_video(engine: Engine, path: Path, reference: np.ndarray, max_frames: int, outside: _Outside) -> dict[str, Any]:
    """Flicker of the makeup delta and the outside check on one clip, through a live-configured Pipeline."""
    from realtime.masks import union
    from realtime.pipeline import Pipeline

    rec = _Recorder(engine)
    pipeline = Pipeline(None, rec, reference=reference)
    tap = _TrackerTap(pipeline.tracker)
    pipeline.tracker = tap
    meter = FlickerMeter()
    local = _Outside()
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


# --------------------------------------------------------------------------- report


def _mean(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def summarise(key: str, pair_rows: list[dict[str, Any]], synth_rows: list[dict[str, Any]],
              videos: dict[str, dict[str, Any]], outside: _Outside, ms: list[float]) -> dict[str, Any]:
    ok = [r for r in pair_rows if "error" not in r]
    summary: dict[str, Any] = {
        "pairs": len(ok),
        "delta_e": {name: _mean(r["delta_e"][name] for r in ok) for name in (*REGIONS, "mean")},
    }
    ids = [r["identity"] for r in ok if "identity" in r]
    if ids:
        from ipmnet.identity import SAME_PERSON

        summary["identity"] = {"mean": float(np.mean(ids)), "max": float(np.max(ids)),
                               "same_person_rate": float(np.mean([d < SAME_PERSON for d in ids]))}
    if synth_rows:
        summary["synthetic"] = {"pairs": len(synth_rows), "psnr": _mean(r["psnr"] for r in synth_rows),
                                "psnr_face": _mean(r["psnr_face"] for r in synth_rows)}
    summary["outside"] = outside.summary()
    summary["flicker"] = {name: v["models"][key]["flicker"] for name, v in videos.items() if key in v["models"]}
    summary["ms_per_face"] = float(np.median(ms)) if ms else math.nan
    return summary


def _jsonable(value: Any, digits: int = 4) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, digits) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return round(v, digits)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("ipmcam", "numpy", "opencv-contrib-python", "mediapipe", "onnxruntime", "dlib-bin",
                 "face-recognition-models", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


#: (header, path into a model's summary) of the summary table, after the model name
COLUMNS = (
    ("ΔE lips", "delta_e.lips"), ("ΔE eyes", "delta_e.eye_shadow"), ("ΔE skin", "delta_e.skin"),
    ("ΔE mean", "delta_e.mean"), ("ID dist", "identity.mean"), ("same ID", "identity.same_person_rate"),
    ("PSNR syn", "synthetic.psnr"), ("PSNR syn face", "synthetic.psnr_face"), ("PSNR outside", "outside.psnr"),
)


def _get(summary: dict[str, Any], path: str) -> Any:
    value: Any = summary
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _fmt(value: Any, path: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    if path.endswith("rate"):
        return f"{100 * value:.0f}%"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the summary table (one row per model), as printed and written to table.md."""
    videos = list(report["videos"])
    header = ["model", *(h for h, _ in COLUMNS), *(f"flicker {v}" for v in videos), "ms/face"]
    rows = []
    for key, summary in report["models"].items():
        cells = [key, *(_fmt(_get(summary, path), path) for _, path in COLUMNS)]
        cells += [_fmt(summary["flicker"].get(v), "flicker") for v in videos]
        cells.append(_fmt(summary.get("ms_per_face"), "ms"))
        rows.append(cells)
    return header, rows


def markdown_table(report: dict[str, Any]) -> str:
    header, rows = table_rows(report)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def print_table(report: dict[str, Any]) -> None:
    """A rich table when the terminal is wide enough for it, else the markdown table."""
    from rich.console import Console
    from rich.table import Table

    header, rows = table_rows(report)
    console = Console()
    widths = [max(len(c) for c in column) for column in zip(header, *rows)]
    if sum(widths) + 3 * len(widths) + 1 > console.width:
        print(markdown_table(report), end="")
        return
    table = Table(title="ipmcam eval: ΔE2000 to the reference ↓, identity distance ↓, PSNR ↑, flicker ↓")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
    for r in rows:
        table.add_row(*r)
    console.print(table)


def _label(cell: np.ndarray, text: str) -> np.ndarray:
    cv2.putText(cell, text, (4, cell.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(cell, text, (4, cell.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return cell


def grid_image(columns: list[str], rows: list[list[np.ndarray | None]], labels: list[str], cell: int) -> np.ndarray:
    """Header row of column names, then one row of crops per entry (None: a grey cell)."""
    head = np.full((28, cell * len(columns), 3), 255, np.uint8)
    for i, name in enumerate(columns):
        cv2.putText(head, name, (i * cell + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    body = []
    for images, label in zip(rows, labels):
        cells = []
        for image in images:
            if image is None:
                cells.append(np.full((cell, cell, 3), 128, np.uint8))
            else:
                cells.append(cv2.resize(image, (cell, cell), interpolation=cv2.INTER_AREA))
        _label(cells[0], label)
        body.append(np.hstack(cells))
    return np.vstack([head, *body])


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
    videos: tuple[str, ...] = ("d12", "d18")
    video_frames: int = 60
    video_reference: Path | None = None
    faces_cache: Path = DEFAULT_CACHE
    identity: bool = True
    cell: int = 160
    notes: dict[str, str] = field(default_factory=dict)


def evaluate(s: EvalSettings) -> dict[str, Any]:
    """Run every model on every set; write eval.json, table.md and the grids under ``s.out``; the report."""
    from ipmnet.dataset import is_held_out, load_or_build, split
    from realtime.errors import UserError
    from realtime.reference import read_reference

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
        from ipmnet.identity import available

        reason = available()
        if reason:
            notes["identity"] = f"skipped: {reason}"
        else:
            identity = _Identity()

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
        outside = _Outside()
        try:
            def keep_pair(src: str, ref: str, crops: dict[str, np.ndarray], key: str = spec.key) -> None:
                entry = pair_crops.setdefault((src, ref), {"source": crops["source"], "reference": crops["reference"]})
                entry[key] = crops["output"]

            def keep_synth(k: int, image: np.ndarray, key: str = spec.key) -> None:
                synth_crops.setdefault(k, {})[key] = image

            rows, ms = run_pairs(engine, sources, references, identity, outside, keep_pair)
            pair_rows[spec.key] = rows
            synth_rows[spec.key] = run_synthetic(engine, synth, keep_synth)
            for path in video_paths:
                videos[path.stem]["models"][spec.key] = run_video(engine, path, video_ref, s.video_frames, outside)
            precision = spec.precision if spec.kind == "ipmnet" else None
            summaries[spec.key] = {"engine": engine.name, "precision": precision,
                                   "model": model_info(spec, s.model_dir, s.config),
                                   **summarise(spec.key, rows, synth_rows[spec.key], videos, outside, ms)}
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
        "identity": {"model": "dlib_face_recognition_resnet_model_v1 + shape_predictor_5_face_landmarks",
                     "on": "canonical 256x256 crops; box from the input crop, reused for the output",
                     "same_person_threshold": 0.6, "enabled": identity is not None},
    }
    report: dict[str, Any] = {
        "settings": settings, "versions": versions(), "models": summaries, "skipped": skipped, "notes": notes,
        "pairs": _pair_table(pair_rows), "synthetic": _synth_table(synth, synth_rows), "videos": videos,
    }
    s.out.mkdir(parents=True, exist_ok=True)
    (s.out / "eval.json").write_text(json.dumps(_jsonable(report), indent=1, ensure_ascii=False) + "\n")
    (s.out / "table.md").write_text(markdown_table(report))
    shown = [sp.key for sp in specs if sp.key in summaries and sp.key != BASELINE]
    keys = sorted(pair_crops)
    if keys:
        grid = grid_image(["source", "reference", *shown],
                          [[pair_crops[k]["source"], pair_crops[k]["reference"], *(pair_crops[k].get(m) for m in shown)]
                           for k in keys], [f"{a} x {b}" for a, b in keys], s.cell)
        cv2.imwrite(str(s.out / "grid.png"), grid)
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


# --------------------------------------------------------------------------- CLI


def _csv(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def register(sub: Any) -> None:
    """Add the ``eval`` subcommand to the ipmcam CLI."""
    p = sub.add_parser("eval", help="score the engines on held-out faces and clips → eval.json, grid.png",
                       description="Score each engine on held-out data: colour distance to the reference, identity, "
                                   "PSNR on exact synthetic pairs, untouched background, and flicker on video.")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="development data root (default ../shared/data)")
    p.add_argument("--out", type=Path, default=Path("out/eval"), help="output folder (default out/eval)")
    p.add_argument("--models", default="auto",
                   help="comma-separated from none, classic, ipmnet; auto: all, ipmnet only when weights are installed")
    p.add_argument("--precision", type=_csv, default=("fp32",), help="ipmnet precisions, e.g. fp32,int8")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "torch", "tensorrt"))
    p.add_argument("--config", default="lite", help="model config whose installed weights to use (default lite)")
    p.add_argument("--model-dir", type=Path, help="exported model folder (default weights/<config>)")
    p.add_argument("--sources", type=int, default=6, help="held-out bare faces (0: all)")
    p.add_argument("--references", type=int, default=4, help="held-out made-up references (0: all)")
    p.add_argument("--synthetic", type=int, default=24, help="exact synthetic pairs (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic pairs")
    p.add_argument("--videos", type=_csv, default=("d12", "d18"), help="clips under DATA/videos (empty: none)")
    p.add_argument("--video-frames", type=int, default=60, help="frames per clip (0: all)")
    p.add_argument("--video-reference", type=Path, help="reference for the clips (default: the first pair reference)")
    p.add_argument("--faces-cache", type=Path, default=DEFAULT_CACHE, help="aligned face set (built when missing)")
    p.add_argument("--no-identity", action="store_true", help="skip the dlib identity metric")
    p.add_argument("--cell", type=int, default=160, help="grid cell size in pixels")
    p.set_defaults(handler=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    settings = EvalSettings(
        data=args.data, out=args.out, models=args.models, precisions=tuple(args.precision) or ("fp32",),
        backend=args.backend, config=args.config, model_dir=args.model_dir, sources=args.sources,
        references=args.references, synthetic=args.synthetic, seed=args.seed, videos=tuple(args.videos),
        video_frames=args.video_frames, video_reference=args.video_reference, faces_cache=args.faces_cache,
        identity=not args.no_identity, cell=args.cell,
    )
    start = time.perf_counter()
    report = evaluate(settings)
    print_table(report)
    for key, reason in report["skipped"].items():
        print(f"skipped {key}: {reason}")
    for key, note in report["notes"].items():
        print(f"{key}: {note}")
    print(f"{args.out / 'eval.json'}, {args.out / 'table.md'}, {args.out / 'grid.png'} "
          f"({time.perf_counter() - start:.0f} s)")
    return 0
