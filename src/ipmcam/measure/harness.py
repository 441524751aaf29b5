"""The evaluation's harness: the real Pipeline run on photos and frames, with taps on what it did.

``Recorder`` wraps an engine inside a Pipeline and keeps the crops, masks and
deltas of the last frame; ``TrackerTap`` keeps the faces the tracker found;
``static_pipeline`` treats every frame as an unrelated photo (no smoothing
across frames); ``IdentityMeter`` measures dlib identity distances with each
input's descriptor computed once; ``NoOpEngine`` is the do-nothing baseline.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np

from ipmcam.engines.base import Engine
from ipmcam.face.tracker import FaceTracker
from ipmcam.measure.identity import IdentityModel
from ipmcam.realtime.pipeline import Pipeline, PipelineOptions

#: the do-nothing model's key in every report
BASELINE = "none"


class NoOpEngine(Engine):
    """The do-nothing baseline: every delta is zero, so the output is the input."""

    name = BASELINE

    def encode_style(self, crop: np.ndarray, masks: np.ndarray) -> None:
        return None

    def run(self, crops: np.ndarray, masks: np.ndarray, style: Any, intensity: float = 1.0) -> np.ndarray:
        return np.zeros(crops.shape, np.float32)


class Recorder(Engine):
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


class TrackerTap:
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


class IdentityMeter:
    """Identity distances to each source crop, with the input's descriptor computed once."""

    def __init__(self) -> None:
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


def static_pipeline(engine: Recorder) -> tuple[Any, TrackerTap]:
    """A real Pipeline whose tracker treats every frame as an unrelated photo."""
    pipeline = Pipeline(None, engine, options=PipelineOptions(smooth=False))
    pipeline.tracker.close()
    tap = TrackerTap(FaceTracker(static=True, smooth=False))
    pipeline.tracker = tap
    return pipeline, tap
