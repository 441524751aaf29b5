"""`ipmcam bench`: what every stage of the pipeline costs, for every engine and backend, in one run.

    ipmcam bench [--source video|synthetic] [--size 640x480,1280x720,1920x1080]
                 [--engine classic,ipmnet] [--backend auto|all|onnxruntime,torch,tensorrt]
                 [--precision fp32,int8] [--frames 200] [--warmup 20] [--fps 0] [--async]
                 [--json out.json] [--plot out.png]
    ipmcam bench --generator-only [--batch 1,2,4,8] [--calls 30] [--baseline-model-dir DIR] ...

**Pipeline mode** drives the real ``Pipeline.run`` (the code ``ipmcam live``
runs) into a ``NullSink``, once per engine configuration and frame size.
Frames come from the bundled clip (looped to reach ``--frames``) or from a
synthetic moving face (the reference photo moved, turned and scaled along
a smooth, deterministic path over a plain background), made at the
requested size as a camera of that resolution would deliver them: the clip
is letterboxed (``--fit scale``) or only padded (``--fit pad``).

With ``--fps 0`` (default) each frame is made when the pipeline asks for
it, so "capture" is the cost of decoding and resizing one frame and every
stage runs flat out: throughput is the pipeline's capacity. With
``--fps N`` frames come from a simulated N-fps camera through
``CameraSource`` (capture thread, newest frame wins); "capture" is then the
wait for a frame and ``frames_dropped`` counts the stale frames skipped.

The first ``--warmup`` frames are run and then forgotten (the stage clock,
the CPU and memory counters restart). A run also ends after
``--time-limit`` measured seconds (default 20), so a slow engine on a slow
machine still finishes; the report notes how many frames were measured. Per stage: p50/p95/p99/mean ms;
end-to-end latency (capture timestamp to sink); throughput; frames dropped;
CPU % (process CPU time / wall time; 100 = one core busy); peak resident
memory of the measured part (Linux: ``/proc/self/clear_refs``; elsewhere
the process's lifetime peak, marked so); GPU memory when torch runs on
CUDA. The style encoder runs once per pipeline, before the warm-up; it is
kept and reported as "style (once)". When two or more sizes are run, every
stage's p50 at the largest size over the smallest is reported next to the
frame-area and face-area ratios: the blend and the alignment work on the
face's box, so they follow the face, not the frame.

**Generator mode** (``--generator-only``) times ``engine.run`` alone on
real aligned crops (the bundled clip through the face tracker) at each
``--batch`` size: ms per call and per face. With ``--baseline-model-dir``
each ipmnet configuration is timed beside the same backend and precision of
that (previously shipped) model, calls alternating (``measure.bench_compare``),
and ``generator_ratios`` gives main over baseline ms per face.

``--backend all`` tries every backend this machine can run (torch on CPU
included) and records why the others were skipped; a missing ipmnet model
(``weights/<config>`` or ``--model-dir``) is recorded as skipped too.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ipmcam.engines.base import Engine
from ipmcam.engines.classic import ClassicEngine
from ipmcam.engines.loader import backend_unavailable, default_model_dir, load
from ipmcam.errors import EngineError, UserError
from ipmcam.face.reference import align_face, read_reference, reference_crop
from ipmcam.face.tracker import FaceTracker
from ipmcam.ipmnet.weights import read_manifest
from ipmcam.measure.bench_compare import alternate, generator_ratios
from ipmcam.measure.bench_meter import ResourceMeter, percentiles, ratio
from ipmcam.measure.bench_report import (
    SCHEMA_ID,
    SIZE_STAGES,
    STAGE_LABELS,
    WORKER_STAGE,
)
from ipmcam.measure.frames import LoopedVideo, OnDemandSource, PacedCapture, SyntheticFace
from ipmcam.measure.machine import machine, versions
from ipmcam.media import open_video
from ipmcam.realtime.pipeline import Pipeline, PipelineOptions
from ipmcam.realtime.sinks import NullSink
from ipmcam.realtime.sources import CameraSource, Source
from ipmcam.resources import DEMO_CLIP, DEMO_REFERENCE

log = logging.getLogger("ipmcam")

BACKEND_NAMES = ("onnxruntime", "torch", "tensorrt")
ENGINE_NAMES = ("classic", "ipmnet")
PRECISIONS = ("fp32", "fp16", "int8")


# --------------------------------------------------------------------------- settings and engines


@dataclass
class BenchSettings:
    source: str = "video"  # video | synthetic
    video: Path = DEMO_CLIP
    reference: Path = DEMO_REFERENCE
    sizes: tuple[tuple[int, int], ...] = ((640, 480), (1280, 720), (1920, 1080))
    fit: str = "scale"
    engines: tuple[str, ...] = ("classic", "ipmnet")
    backend: str = "auto"  # auto | all | comma-separated names
    precisions: tuple[str, ...] = ("fp32",)
    model_dir: Path | None = None
    config: str = "lite"
    frames: int = 200
    warmup: int | None = None  # None: 20 frames (pipeline) or 3 calls (generator)
    time_limit: float = 20.0  # s of measured frames per run (0: none); a slow engine still finishes
    fps: float = 0.0
    max_faces: int = 1
    intensity: float = 1.0
    async_inference: bool = False
    generator_only: bool = False
    batches: tuple[int, ...] = (1, 2, 4, 8)
    calls: int = 30
    baseline_model_dir: Path | None = None  # generator only: time this model beside the main one

    @property
    def warmup_count(self) -> int:
        if self.warmup is not None:
            return self.warmup
        return 3 if self.generator_only else 20


@dataclass
class EngineSpec:
    engine: str
    backend: str | None = None
    precision: str | None = None

    def key(self) -> dict[str, str | None]:
        return {"engine": self.engine, "backend": self.backend, "precision": self.precision}


@dataclass
class Report:
    settings: BenchSettings
    runs: list[dict[str, Any]] = field(default_factory=list)
    generator: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, spec: EngineSpec, reason: str) -> None:
        self.skipped.append({**spec.key(), "reason": reason})
        log.warning("bench: skipping %s: %s", "/".join(v for v in spec.key().values() if v), reason)


def backend_list(spec: str) -> list[str]:
    """``auto`` → [auto]; ``all`` → every backend; else the comma-separated names, checked."""
    if spec in ("auto", "all"):
        return ["auto"] if spec == "auto" else list(BACKEND_NAMES)
    names = [b.strip() for b in spec.split(",") if b.strip()]
    for name in names:
        if name not in BACKEND_NAMES:
            raise UserError(f"unknown backend {name!r}: choose auto, all, or from {', '.join(BACKEND_NAMES)}")
    return names


def engine_specs(s: BenchSettings, report: Report) -> list[EngineSpec]:
    """Every (engine, backend, precision) to try; those that cannot run here go to ``report.skipped``."""
    specs: list[EngineSpec] = []
    for name in s.engines:
        if name not in ENGINE_NAMES:
            raise UserError(f"unknown engine {name!r}: choose from {', '.join(ENGINE_NAMES)} (comma-separated)")
        if name == "classic":
            specs.append(EngineSpec("classic"))
            continue
        for precision in s.precisions:
            if precision not in PRECISIONS:
                raise UserError(f"unknown precision {precision!r}: choose from {', '.join(PRECISIONS)}")
        model_problem = _model_problem(main_model_dir(s))
        if model_problem:
            report.skip(EngineSpec("ipmnet"), f"{model_problem} (pass --model-dir, or install weights/{s.config})")
            continue
        for backend in backend_list(s.backend):
            reason = backend_unavailable(backend) if backend != "auto" else None
            for precision in s.precisions:
                spec = EngineSpec("ipmnet", backend, precision)
                if reason:
                    report.skip(spec, reason)
                else:
                    specs.append(spec)
    return specs


def main_model_dir(s: BenchSettings) -> Path:
    """The ipmnet model directory ``load`` will use: ``--model-dir``, else the installed weights of ``--config``."""
    return Path(s.model_dir) if s.model_dir else default_model_dir(s.config)


def _model_problem(root: Path) -> str | None:
    """Why there is no ipmnet model to load at ``root`` (missing or broken directory), or None."""
    if not root.is_dir():
        return f"no model at {root}"
    try:
        read_manifest(root)
    except EngineError as exc:
        return str(exc)
    return None


def open_engine(spec: EngineSpec, s: BenchSettings) -> Engine:
    if spec.engine == "classic":
        return ClassicEngine()
    return load(s.model_dir, backend=spec.backend or "auto", precision=spec.precision or "fp32", config=s.config)


def engine_entry(spec: EngineSpec, engine: Engine) -> dict[str, Any]:
    return {**spec.key(), "engine_name": engine.name}


# --------------------------------------------------------------------------- measuring


class TrackerTap:
    """Passes frames to the pipeline's tracker and notes how many faces it found and how big they were."""

    def __init__(self, tracker: Any) -> None:
        self.tracker = tracker
        self.reset()

    def reset(self) -> None:
        self.frames = 0
        self.with_face = 0
        self.face_sizes: list[float] = []

    def __call__(self, image: np.ndarray, timestamp: float) -> list[Any]:
        faces = self.tracker(image, timestamp)
        self.frames += 1
        if faces:
            self.with_face += 1
            self.face_sizes.append(max(float(f.size) for f in faces))
        return faces

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tracker, name)


class TimedEngine(Engine):
    """Passes every call to ``engine`` and keeps the duration (ms) of each ``run``, whichever thread makes it.

    In asynchronous mode the pipeline's "generator" stage is only the hand-off
    to the worker; these durations are what the generator itself costs there.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.name = engine.name
        self.times: list[float] = []

    def encode_style(self, crop: np.ndarray, masks: np.ndarray) -> Any:
        return self.engine.encode_style(crop, masks)

    def run(self, crops: np.ndarray, masks: np.ndarray, style: Any, intensity: float = 1.0) -> np.ndarray:
        start = time.perf_counter()
        try:
            return self.engine.run(crops, masks, style, intensity)
        finally:
            self.times.append((time.perf_counter() - start) * 1000.0)

    def reset(self) -> None:
        self.times = []

    def close(self) -> None:
        """The wrapped engine outlives the pipeline (it is reused across frame sizes): nothing to do."""


def pipeline_options(s: BenchSettings, report: Report) -> Any:
    """PipelineOptions for the run, with ``async_inference`` when asked for and this pipeline has it."""
    options = PipelineOptions(max_faces=s.max_faces, intensity=s.intensity)
    has_async = "async_inference" in {f.name for f in dataclasses.fields(PipelineOptions)}
    if s.async_inference:
        if has_async:
            options = dataclasses.replace(options, async_inference=True)
        else:
            note = ("--async was asked for, but this pipeline has no async_inference option: "
                    "every run here is synchronous")
            if note not in report.notes:
                report.notes.append(note)
    return options


def make_frames(s: BenchSettings, size: tuple[int, int], reference: np.ndarray) -> tuple[Any, float]:
    """A frame maker (index → image at ``size``) for the chosen source and its nominal fps."""
    if s.source == "synthetic":
        return SyntheticFace(reference, size), 30.0
    video = LoopedVideo(s.video, size, s.fit)
    return video, video.fps


def run_pipeline(engine: Engine, spec: EngineSpec, size: tuple[int, int], s: BenchSettings,
                 reference: np.ndarray, report: Report) -> dict[str, Any]:
    """One measured ``Pipeline.run`` at one frame size; the figures as a report row."""
    make, native_fps = make_frames(s, size, reference)
    if s.fps > 0:
        source: Source = CameraSource("bench", capture_factory=lambda: PacedCapture(make, s.fps))
    else:
        source = OnDemandSource(make, native_fps)
    sink = NullSink()
    timed = TimedEngine(engine)
    try:
        pipeline = Pipeline(source, timed, [sink], pipeline_options(s, report), reference=reference)
    except BaseException:
        source.close()
        raise
    style = pipeline.clock.summary().get("style")
    tap = TrackerTap(pipeline.tracker)
    pipeline.tracker = tap
    warmup = s.warmup_count
    meter = ResourceMeter()
    mark: dict[str, Any] = {"dropped": 0, "last": None, "frames": 0}

    def start_measuring() -> None:
        pipeline.clock.reset()
        tap.reset()
        timed.reset()
        meter.start()
        mark["dropped"] = source.dropped
        mark["sink"] = sink.frames

    def on_frame(n: int) -> None:
        if n == warmup:
            start_measuring()
            return
        mark["last"] = time.perf_counter()
        mark["frames"] = n - warmup
        if n > warmup and s.time_limit > 0 and mark["last"] - meter.wall0 >= s.time_limit:
            pipeline.stop()

    if warmup == 0:
        start_measuring()
    stats = pipeline.run(max_frames=warmup + s.frames, on_frame=on_frame)
    wall_end = mark["last"] or time.perf_counter()
    cpu = meter.cpu_percent(wall_end)
    wall = wall_end - meter.wall0
    summary = stats.stages  # measured part only: the clock restarted after the warm-up
    latency = summary.pop("latency", None)
    if style is not None:
        summary["style"] = style
    is_async = bool(getattr(pipeline.options, "async_inference", False))
    calls = list(timed.times)
    if is_async and calls:
        summary[WORKER_STAGE] = percentiles(calls)
    frames_out = mark["frames"]
    if frames_out < s.frames:
        why = (f"--time-limit {s.time_limit:g} s reached" if s.time_limit > 0 and wall >= s.time_limit
               else "the source ended")
        report.notes.append(f"{engine.name} {size[0]}x{size[1]}: {frames_out} of {s.frames} frames measured ({why})")
    face_px = float(np.median(tap.face_sizes)) if tap.face_sizes else None
    return {
        **engine_entry(spec, engine),
        "size": list(size), "size_label": f"{size[0]}x{size[1]}",
        "async_inference": is_async, "generator_calls": len(calls),
        "frames_out": frames_out, "frames_dropped": int(stats.dropped - mark["dropped"]),
        "frames_with_face": tap.with_face, "face_size_px": face_px,
        "seconds": wall, "throughput_fps": frames_out / wall if wall > 0 and frames_out else 0.0,
        "stages": summary, "latency": latency,
        "cpu_percent": cpu, "peak_rss_mb": meter.peak_rss_mb(), "peak_rss_scope": meter.rss_scope,
        "gpu_memory_mb": meter.gpu_memory_mb(),
    }


def size_ratios(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per engine configuration run at two or more sizes: p50 at the largest size over the smallest."""
    out = []
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["engine"], r["backend"], r["precision"], r["engine_name"]), []).append(r)
    for rows in groups.values():
        if len({tuple(r["size"]) for r in rows}) < 2:
            continue
        small = min(rows, key=lambda r: r["size"][0] * r["size"][1])
        large = max(rows, key=lambda r: r["size"][0] * r["size"][1])

        stages = {name: ratio(large["stages"][name]["p50"], small["stages"][name]["p50"])
                  for name in small["stages"] if name in large["stages"] and name != "style"
                  and large["stages"][name]["count"] and small["stages"][name]["count"]}
        face = ratio(large["face_size_px"], small["face_size_px"])
        out.append({
            "engine": small["engine"], "backend": small["backend"], "precision": small["precision"],
            "engine_name": small["engine_name"], "from": small["size_label"], "to": large["size_label"],
            "frame_area": large["size"][0] * large["size"][1] / (small["size"][0] * small["size"][1]),
            "face_area": face * face if face is not None else None,
            "stages": stages, "size_stages": {n: stages.get(n) for n in SIZE_STAGES},
            "latency": ratio((large["latency"] or {}).get("p50"), (small["latency"] or {}).get("p50")),
            "throughput": ratio(large["throughput_fps"], small["throughput_fps"]),
        })
    return out


def real_crops(video: Path, count: int, stride: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """``count`` aligned crops (N, S, S, 3) and masks (N, C, S, S) from a clip, through the face tracker."""
    capture = open_video(video)
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    crops, regions = [], []
    index = 0
    try:
        with FaceTracker(smooth=False) as tracker:
            while len(crops) < count:
                ok, frame = capture.read()
                if not ok:
                    break
                faces = tracker(frame, index / fps)
                if faces and index % stride == 0:
                    crop, region, _ = align_face(frame, faces[0].landmarks)
                    crops.append(crop)
                    regions.append(region)
                index += 1
    finally:
        capture.release()
    if not crops:
        raise UserError(f"no face found in {video}: the generator benchmark needs a clip with a face")
    reps = -(-count // len(crops))  # a short clip: reuse its crops
    return np.stack((crops * reps)[:count]), np.stack((regions * reps)[:count]).astype(np.float32)


def run_generator(engine: Engine, spec: EngineSpec, s: BenchSettings, crops: np.ndarray, masks: np.ndarray,
                  reference: tuple[np.ndarray, np.ndarray], notes: list[str],
                  baseline: Engine | None = None) -> list[dict[str, Any]]:
    """``engine.run`` alone at each batch size: ms per call and per face (``--time-limit`` s at most each).

    With ``baseline`` (the ``--baseline-model-dir`` model on the same backend
    and precision) both are timed, their calls alternating so that load on
    the machine hits both alike (``bench_compare``); each row then says which
    model it timed ("model": main or baseline, "model_dir"), and its CPU and
    memory figures cover both. Each engine encodes the reference style itself.
    """
    engines = [engine] if baseline is None else [engine, baseline]
    marks: list[dict[str, Any]] = [{}] if baseline is None else [
        {"model": "main", "model_dir": str(main_model_dir(s))},
        {"model": "baseline", "model_dir": str(s.baseline_model_dir)}]
    styles, style_ms = [], []
    for each in engines:
        start = time.perf_counter()
        styles.append(each.encode_style(*reference))
        style_ms.append((time.perf_counter() - start) * 1000.0)
    rows = []
    for batch in s.batches:
        x, m = crops[:batch], masks[:batch]
        calls = [functools.partial(each.run, x, m, style, s.intensity) for each, style in zip(engines, styles)]
        times, meter = alternate(calls, s.calls, s.warmup_count, s.time_limit)
        if len(times[0]) < s.calls:
            notes.append(f"{engine.name} batch {batch}: {len(times[0])} of {s.calls} calls measured"
                         f"{'' if baseline is None else ' per model'} (--time-limit {s.time_limit:g} s reached)")
        for each, mark, encode_ms, spent in zip(engines, marks, style_ms, times):
            per_call = percentiles(spent)
            per_face = {k: (v / batch if k != "count" else v) for k, v in per_call.items()}
            rows.append({
                **engine_entry(spec, each), **mark, "batch": batch, "style_ms": encode_ms,
                "calls": len(spent), "ms_per_call": per_call, "ms_per_face": per_face,
                "faces_per_second": 1000.0 * batch / per_call["mean"] if per_call["mean"] > 0 else 0.0,
                "cpu_percent": meter.cpu_percent(), "peak_rss_mb": meter.peak_rss_mb(),
                "peak_rss_scope": meter.rss_scope, "gpu_memory_mb": meter.gpu_memory_mb(),
            })
    return rows


def generator_rows(engine: Engine, spec: EngineSpec, s: BenchSettings, crops: np.ndarray, masks: np.ndarray,
                   reference: tuple[np.ndarray, np.ndarray], report: Report) -> list[dict[str, Any]]:
    """Generator mode for one configuration: alone, or (ipmnet with a baseline) beside the baseline model.

    A baseline that cannot open this backend and precision (no int8 graph,
    say), or that ``auto`` puts on another backend, has nothing fair to be
    compared with: the pair is skipped, with the reason.
    """
    if s.baseline_model_dir is None or spec.engine != "ipmnet":
        return run_generator(engine, spec, s, crops, masks, reference, report.notes)
    try:
        baseline = open_engine(spec, dataclasses.replace(s, model_dir=s.baseline_model_dir))
    except EngineError as exc:
        report.skip(spec, f"baseline model {s.baseline_model_dir}: {exc}")
        return []
    try:
        if baseline.name != engine.name:
            report.skip(spec, f"the baseline model runs on {baseline.name}, the main one on {engine.name}")
            return []
        return run_generator(engine, spec, s, crops, masks, reference, report.notes, baseline)
    finally:
        baseline.close()


# --------------------------------------------------------------------------- runner


def bench(s: BenchSettings, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run everything ``s`` asks for; the report (the layout of docs/bench_schema.json)."""
    say = progress or (lambda text: None)
    started = time.perf_counter()
    report = Report(s)
    reference = read_reference(s.reference)
    if s.source not in ("video", "synthetic"):
        raise UserError(f"unknown source {s.source!r}: choose video or synthetic")
    if not s.generator_only and s.source == "video" and not Path(s.video).is_file():
        raise UserError(f"cannot open video {s.video}: file not found")
    if s.baseline_model_dir is not None:
        if not s.generator_only:
            raise UserError("--baseline-model-dir compares generators: use it with --generator-only")
        if problem := _model_problem(Path(s.baseline_model_dir)):
            raise UserError(f"--baseline-model-dir: {problem}")
    specs = engine_specs(s, report)
    crops = masks = ref = None
    if s.generator_only and specs:
        crops, masks = real_crops(s.video, max(s.batches))
        ref = reference_crop(reference, f"reference {s.reference}")
    for spec in specs:
        try:
            engine = open_engine(spec, s)
        except EngineError as exc:
            report.skip(spec, str(exc))
            continue
        try:
            label = engine.name + (f" {spec.precision}" if spec.precision else "")
            if s.generator_only:
                say(f"generator {label}: batch {', '.join(map(str, s.batches))}")
                report.generator += generator_rows(engine, spec, s, crops, masks, ref, report)
            else:
                for size in s.sizes:
                    say(f"{label} at {size[0]}x{size[1]}: {s.warmup_count} + {s.frames} frames")
                    report.runs.append(run_pipeline(engine, spec, size, s, reference, report))
        finally:
            engine.close()
    settings = dataclasses.asdict(s)
    settings.update(sizes=[f"{w}x{h}" for w, h in s.sizes], warmup=s.warmup_count,
                    backends=backend_list(s.backend), mode="generator" if s.generator_only else "pipeline",
                    sink="NullSink", capture=("on demand (decode + resize per frame)" if s.fps <= 0 else
                                              f"simulated {s.fps:g} fps camera (wait for the newest frame)"))
    if s.generator_only:
        for key in ("sizes", "fit", "fps", "frames", "time_limit", "async_inference", "max_faces", "capture", "sink"):
            settings.pop(key, None)
    else:
        for key in ("batches", "calls", "baseline_model_dir"):
            settings.pop(key, None)
    return {
        "schema": SCHEMA_ID,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mode": "generator" if s.generator_only else "pipeline",
        "machine": machine(),
        "versions": versions(),
        "settings": settings,
        "stage_labels": dict(STAGE_LABELS),
        "runs": report.runs,
        "ratios": size_ratios(report.runs),
        "generator": report.generator,
        "generator_ratios": generator_ratios(report.generator),
        "skipped": report.skipped,
        "notes": report.notes,
        "seconds": time.perf_counter() - started,
    }


