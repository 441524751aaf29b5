"""The frame pipeline: track faces, align crops, run the engine, blend deltas, publish.

``Pipeline.process`` is the per-frame work on one image (usable from a
notebook or a test); ``Pipeline.run`` drives it from a source into sinks and
owns the clean shutdown.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ipmcam.engines.base import Engine
from ipmcam.errors import EngineError, UserError
from ipmcam.face import masks
from ipmcam.face.align import downscaled, from_scaled_frame
from ipmcam.face.reference import align_face, read_reference, reference_crop
from ipmcam.face.tracker import Face, FaceTracker
from ipmcam.realtime import mixing
from ipmcam.realtime.async_generator import AsyncGenerator
from ipmcam.realtime.blend import add_delta
from ipmcam.realtime.outputs import Outputs
from ipmcam.realtime.sinks import Sink
from ipmcam.realtime.sources import Source, as_bgr
from ipmcam.realtime.stages import StageClock

log = logging.getLogger("ipmcam")

_END = object()  # marks the end of a source's frames


@dataclass
class PipelineOptions:
    """What a user tunes; every field has a CLI flag."""

    max_faces: int = 1
    intensity: float = 1.0
    min_face_size: float = 48.0  # px: smaller faces pass through untouched
    output_size: tuple[int, int] | None = None  # (width, height); None keeps the source's
    smooth: bool = True
    fade_seconds: float = 0.2  # a face that appears or vanishes mid-stream fades over this long
    blackout_after: float = 3.0  # a stalled camera: repeat the last frame this long, then send black
    async_inference: bool = False  # run the generator in a worker; frames reuse the newest delta
    strengths: dict[str, float] | None = None  # per region (lips, eyes, skin), 0..1; None: all 1
    mirror: bool = False  # flip frames left-right first (selfie view)
    effect: bool = True  # False: frames pass through (faces still tracked, so turning it on is instant)
    split: bool = False  # before/after: left half as captured, right half made up
    output_fps: float | None = None  # publish at this rate (frames dropped or repeated); None: the source's
    keep_going: bool = False  # a live stream outlives a failing output (realtime.outputs); files stop at once


@dataclass(frozen=True)
class ReferenceCrop:
    """A reference already read, found and aligned: only its style is left to compute."""

    crop: np.ndarray
    region: np.ndarray
    name: str = "reference"


def prepare_reference(reference: str | Path | np.ndarray | ReferenceCrop) -> ReferenceCrop:
    """The slow part of using a reference (reading, finding the face, aligning); safe off the video thread."""
    if isinstance(reference, ReferenceCrop):
        return reference
    if isinstance(reference, np.ndarray):
        image, name = reference, "reference"
    else:
        image, name = read_reference(reference), f"reference {reference}"
    crop, region = reference_crop(image, name)
    return ReferenceCrop(crop, region, name)


@dataclass
class _Presence:
    """A face being drawn: its landmarks, how strongly, and when it was last seen."""

    track_id: int
    landmarks: np.ndarray
    strength: float
    seen_at: float


@dataclass
class RunStats:
    """What a finished run did."""

    frames: int = 0
    frames_with_face: int = 0
    dropped: int = 0
    repeated: int = 0  # frames re-sent in place of a stall or an unusable frame
    skipped: int = 0  # frames that were not images (garbage from a device)
    resampled: int = 0  # frames left out to publish at ``output_fps``
    seconds: float = 0.0
    stages: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class Pipeline:
    """Source → faces → engine → blend → sinks."""

    def __init__(self, source: Source | None, engine: Engine, sinks: Sequence[Sink] = (),
                 options: PipelineOptions | None = None, reference: str | Path | np.ndarray | None = None) -> None:
        self.source = source
        self.engine = engine
        self.sinks = list(sinks)
        self.options = options or PipelineOptions()
        self.clock = StageClock()
        self.style: Any = None
        self.has_reference = False
        self.faces = 0  #: faces made up in the newest frame (what a control page shows)
        self._stop = threading.Event()
        self.outputs = Outputs(self.sinks, keep_going=self.options.keep_going)
        self._closed = False
        self._presence: dict[int, _Presence] = {}
        self._last_time: float | None = None
        self._pending_reference: str | Path | np.ndarray | None = None
        # Every engine call goes through the mixer: per-region references and strengths, one call per frame.
        self._runner = mixing.Mixer(engine, lambda: self.options.strengths)
        self._async = AsyncGenerator(self._runner) if self.options.async_inference else None
        if reference is not None:
            self.set_reference(reference)
        # Made after the reference is analysed: its still-image tracker is closed by then, so the two
        # never hold their models at once (a big photo's run stays within its memory bound).
        self.tracker = FaceTracker(max_faces=self.options.max_faces, smooth=self.options.smooth)

    def set_reference(self, reference: str | Path | np.ndarray | ReferenceCrop | Mapping[str, Any]) -> None:
        """Analyse a reference photo once; every later frame reuses its style.

        A mapping {"lips": ref, "eyes": ref, "skin": ref} copies each region
        from its own reference (a region left out keeps the face's own look);
        each distinct reference is analysed once.
        """
        if isinstance(reference, Mapping):
            self.style = self._region_styles(reference)
        else:
            prepared = prepare_reference(reference)
            with self.clock.stage("style"):
                self.style = self.engine.encode_style(prepared.crop, prepared.region)
        self.has_reference = True

    def _region_styles(self, references: Mapping[str, Any]) -> mixing.RegionStyles:
        unknown = set(references) - set(mixing.REGIONS)
        if unknown:
            raise UserError(f"unknown regions {sorted(unknown)}: choose from {', '.join(mixing.REGIONS)}")
        keys: list[Any] = []
        styles: list[Any] = []
        owner: dict[str, int] = {}
        for region, reference in references.items():
            key = id(reference) if isinstance(reference, (np.ndarray, ReferenceCrop)) else str(Path(reference).resolve())
            if key not in keys:
                prepared = prepare_reference(reference)
                with self.clock.stage("style"):
                    styles.append(self.engine.encode_style(prepared.crop, prepared.region))
                keys.append(key)
            owner[region] = keys.index(key)
        return mixing.RegionStyles(tuple(styles), owner)

    def request_reference(self, reference: str | Path | np.ndarray | ReferenceCrop | Mapping[str, Any]) -> None:
        """Swap the reference between two frames of a running stream (thread-safe).

        A reference that cannot be used is logged and the current one stays.
        """
        self._pending_reference = reference

    def _swap_reference(self) -> None:
        reference, self._pending_reference = self._pending_reference, None
        if reference is None:
            return
        try:
            self.set_reference(reference)
            log.info("reference changed")
        except (UserError, EngineError) as exc:
            log.warning("keeping the current reference: %s", exc)

    def _visible(self, faces: list[Face], timestamp: float) -> list[_Presence]:
        """Faces to draw, each with a strength that ramps in and out over ``fade_seconds``.

        At the start of a stream faces are drawn fully (nothing to pop from);
        a face that vanishes keeps its last place while it fades out. Time
        that runs backwards (a source restarted or swapped, unrelated photos
        numbered afresh) starts a new stream: a face from before would
        otherwise be drawn at its old place, at full strength, over the new
        frame, and the new face would wait a whole fade to appear.
        """
        fade = self.options.fade_seconds
        first = self._last_time is None or timestamp < self._last_time  # a first step of 1 ends every old face
        step = 1.0 if first or fade <= 0 else max(timestamp - self._last_time, 0.0) / fade
        self._last_time = timestamp
        current: dict[int, _Presence] = {}
        for face in faces:
            before = self._presence.get(face.track_id)
            strength = 1.0 if first or fade <= 0 else (before.strength if before else 0.0) + step
            current[face.track_id] = _Presence(face.track_id, face.landmarks, min(strength, 1.0), timestamp)
        for track_id, gone in self._presence.items():
            if track_id not in current and gone.strength - step > 0 and timestamp - gone.seen_at <= fade:
                current[track_id] = _Presence(track_id, gone.landmarks, gone.strength - step, gone.seen_at)
        self._presence = current
        return [p for p in current.values() if p.strength > 0]

    def process(self, image: np.ndarray, timestamp: float, in_place: bool = False) -> tuple[np.ndarray, int]:
        """The made-up frame and how many faces were changed.

        The frame is a new array unless ``in_place`` (the caller hands the
        image over: a 6000x6000 photo is then held once, not twice).
        """
        if not self.has_reference:
            raise RuntimeError("set a reference before processing frames")
        if self.options.mirror:
            image = np.ascontiguousarray(image[:, ::-1])
        out, changed = self._process(image, timestamp, in_place and not self.options.split)
        if self.options.split:
            _split_view(image, out)
        return out, changed

    def _process(self, image: np.ndarray, timestamp: float, in_place: bool) -> tuple[np.ndarray, int]:
        # Faces are found and aligned on a copy at most WORK_SIDE pixels long; makeup is drawn at full size.
        work, scale = downscaled(image)
        with self.clock.stage("landmarks"):
            faces = [f for f in self.tracker(work, timestamp) if f.size >= self.options.min_face_size * scale]
        visible = self._visible(faces, timestamp)
        out = image if in_place else image.copy()
        if not visible or self.options.intensity <= 0.0 or not self.options.effect:
            return out, 0
        with self.clock.stage("align"):
            aligned = [align_face(work, p.landmarks) for p in visible]
            crops = np.stack([a[0] for a in aligned])
            region = np.stack([a[1] for a in aligned])
        with self.clock.stage("generator"):
            deltas = self._generate(crops, region, [p.track_id for p in visible])
        with self.clock.stage("blend"):
            for (_, face_masks, mat), delta, p in zip(aligned, deltas, visible):
                add_delta(out, delta if p.strength >= 1.0 else delta * np.float32(p.strength),
                          masks.union(face_masks), from_scaled_frame(mat, scale))
        return out, len(visible)

    def _generate(self, crops: np.ndarray, region: np.ndarray, track_ids: list[int]) -> list[np.ndarray]:
        """Deltas for the faces: computed now, or (asynchronous mode) the newest ones available.

        An older delta is clipped to the current masks, so lipstick never
        lands on teeth the mouth has just shown.
        """
        if self._async is None:
            return list(self._runner.run(crops, region, self.style, self.options.intensity))
        self._async.submit(crops, region, self.style, self.options.intensity, track_ids)
        self._async.forget(track_ids)
        deltas = []
        for track_id, face_masks in zip(track_ids, region):
            delta = self._async.latest(track_id)
            if delta is None:  # a new face: wait once, so it never shows bare
                delta = self._async.wait_for(track_id, timeout=2.0)
            deltas.append(np.zeros(crops.shape[1:], np.float32) if delta is None
                          else delta * (masks.union(face_masks) > 0)[..., None])
        return deltas

    def stop(self) -> None:
        """Ask ``run`` to finish after the current frame (thread- and signal-safe)."""
        self._stop.set()

    def _publish(self, frame: np.ndarray, fps: float) -> None:
        fps = self.options.output_fps or fps
        h, w = frame.shape[:2]
        if self.outputs.size is None:
            self.outputs.open(*(self.options.output_size or (w, h)), fps)
        if (w, h) != self.outputs.size:
            frame = cv2.resize(frame, self.outputs.size, interpolation=cv2.INTER_AREA)
        with self.clock.stage("sink"):
            self.outputs.write(frame)

    def run(self, max_frames: int | None = None, on_frame: Callable[[int], None] | None = None) -> RunStats:
        """Process the source into the sinks until it ends, ``max_frames``, a sink asks, or ``stop()``.

        While a live camera stalls, or hands out a frame that is no image, the
        last output frame is re-sent (black after ``blackout_after`` seconds)
        so viewers of the virtual camera see a still picture rather than a
        frozen or vanished device.
        """
        if self.source is None:
            raise RuntimeError("this pipeline has no source")
        stats = RunStats()
        start = time.perf_counter()
        frames = iter(self.source)
        last_out: np.ndarray | None = None
        stalled_since: float | None = None
        rate = self.options.output_fps
        first_time: float | None = None
        published = 0
        try:
            while not self._stop.is_set() and (max_frames is None or stats.frames < max_frames):
                with self.clock.stage("capture"):
                    frame = next(frames, _END)
                if frame is _END:
                    break
                image = None if frame is None else as_bgr(frame.image)
                if image is None:  # a stalled camera, or a frame that is no image
                    stats.skipped += frame is not None
                    if last_out is not None:
                        now = time.perf_counter()
                        stalled_since = stalled_since or now
                        if now - stalled_since >= self.options.blackout_after:
                            last_out = np.zeros_like(last_out)
                        self._publish(last_out, self.source.fps)
                        stats.repeated += 1
                    continue
                stalled_since = None
                copies = 1
                if rate:  # publish at the output rate: frames between two ticks are left out, or repeated
                    now = frame.captured_at if self.source.live else frame.timestamp
                    first_time = now if first_time is None else first_time
                    copies = min(math.floor((now - first_time) * rate + 1e-6) + 1 - published, max(int(rate), 1))
                    if copies <= 0:
                        stats.resampled += 1
                        continue
                self._swap_reference()
                out, changed = self.process(image, frame.timestamp, in_place=frame.handed_over)
                for _ in range(copies):
                    self._publish(out, self.source.fps)
                published += copies
                last_out = out
                self.faces = changed
                self.clock.record("latency", (time.perf_counter() - frame.captured_at) * 1000.0)
                stats.frames += 1
                stats.frames_with_face += changed > 0
                if on_frame is not None:
                    on_frame(stats.frames)
                if any(sink.wants_stop for sink in self.sinks):
                    break
        finally:
            stats.seconds = time.perf_counter() - start
            self.close()
        stats.dropped = self.source.dropped
        stats.stages = self.clock.summary()
        return stats

    def close(self) -> None:
        """Release the source, the sinks and the tracker; every sink is closed even if one fails."""
        if self._closed:
            return
        self._closed = True
        if self.source is not None:
            self.source.close()
        errors = []
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - close the rest, then report the first
                errors.append(exc)
        self.tracker.close()
        if self._async is not None:
            self._async.close()
        if errors:
            raise errors[0]


def _split_view(before: np.ndarray, after: np.ndarray) -> None:
    """In place: the left half of ``after`` shows ``before``, with a divider and labels."""
    h, w = after.shape[:2]
    half = w // 2
    after[:, :half] = before[:, :half]
    cv2.line(after, (half, 0), (half, h - 1), (255, 255, 255), max(1, w // 400), cv2.LINE_AA)
    scale = max(h / 900.0, 0.4)
    for text, x in (("before", 10), ("after", half + 10)):
        org = (x, h - int(14 * scale) - 4)
        cv2.putText(after, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(after, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
