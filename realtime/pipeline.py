"""The frame pipeline: track faces, align crops, run the engine, blend deltas, publish.

``Pipeline.process`` is the per-frame work on one image (usable from a
notebook or a test); ``Pipeline.run`` drives it from a source into sinks and
owns the clean shutdown.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.base import Engine
from realtime import masks
from realtime.blend import add_delta
from realtime.reference import align_face, read_reference, reference_crop
from realtime.sinks import Sink
from realtime.sources import Source
from realtime.stages import StageClock
from realtime.tracker import FaceTracker

log = logging.getLogger("ipmcam")


@dataclass
class PipelineOptions:
    """What a user tunes; every field has a CLI flag."""

    max_faces: int = 1
    intensity: float = 1.0
    min_face_size: float = 48.0  # px: smaller faces pass through untouched
    output_size: tuple[int, int] | None = None  # (width, height); None keeps the source's
    smooth: bool = True


@dataclass
class RunStats:
    """What a finished run did."""

    frames: int = 0
    frames_with_face: int = 0
    dropped: int = 0
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
        self.tracker = FaceTracker(max_faces=self.options.max_faces, smooth=self.options.smooth)
        self.style: Any = None
        self.has_reference = False
        self._stop = threading.Event()
        self._opened_size: tuple[int, int] | None = None
        self._closed = False
        if reference is not None:
            self.set_reference(reference)

    def set_reference(self, reference: str | Path | np.ndarray) -> None:
        """Analyse a reference photo once; every later frame reuses its style."""
        if isinstance(reference, np.ndarray):
            image, name = reference, "reference"
        else:
            image, name = read_reference(reference), f"reference {reference}"
        crop, region = reference_crop(image, name)
        with self.clock.stage("style"):
            self.style = self.engine.encode_style(crop, region)
        self.has_reference = True

    def process(self, image: np.ndarray, timestamp: float) -> tuple[np.ndarray, int]:
        """The made-up frame (a new array) and how many faces were changed."""
        if not self.has_reference:
            raise RuntimeError("set a reference before processing frames")
        out = image.copy()
        with self.clock.stage("landmarks"):
            faces = [f for f in self.tracker(image, timestamp) if f.size >= self.options.min_face_size]
        if not faces or self.options.intensity <= 0.0:
            return out, 0
        with self.clock.stage("align"):
            aligned = [align_face(image, face.landmarks) for face in faces]
            crops = np.stack([a[0] for a in aligned])
            region = np.stack([a[1] for a in aligned])
        with self.clock.stage("generator"):
            deltas = self.engine.run(crops, region, self.style, self.options.intensity)
        with self.clock.stage("blend"):
            for (_, face_masks, mat), delta in zip(aligned, deltas):
                add_delta(out, delta, masks.union(face_masks), mat)
        return out, len(faces)

    def stop(self) -> None:
        """Ask ``run`` to finish after the current frame (thread- and signal-safe)."""
        self._stop.set()

    def _publish(self, frame: np.ndarray, fps: float) -> None:
        h, w = frame.shape[:2]
        if self._opened_size is None:
            self._opened_size = self.options.output_size or (w, h)
            for sink in self.sinks:
                sink.open(*self._opened_size, fps)
        if (w, h) != self._opened_size:
            frame = cv2.resize(frame, self._opened_size, interpolation=cv2.INTER_AREA)
        with self.clock.stage("sink"):
            for sink in self.sinks:
                sink.write(frame)

    def run(self, max_frames: int | None = None, on_frame: Callable[[int], None] | None = None) -> RunStats:
        """Process the source into the sinks until it ends, ``max_frames``, a sink asks, or ``stop()``."""
        if self.source is None:
            raise RuntimeError("this pipeline has no source")
        stats = RunStats()
        start = time.perf_counter()
        frames = iter(self.source)
        try:
            while not self._stop.is_set() and (max_frames is None or stats.frames < max_frames):
                with self.clock.stage("capture"):
                    frame = next(frames, None)
                if frame is None:
                    break
                out, changed = self.process(frame.image, frame.timestamp)
                self._publish(out, self.source.fps)
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
        if errors:
            raise errors[0]
