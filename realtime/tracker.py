"""Face tracking with mediapipe face mesh (478 points with refined irises).

Each tracked face keeps its own One-Euro filter; faces are matched between
frames by nearest centre, so smoothing survives a second person entering.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from realtime.smoothing import OneEuroFilter


@dataclass
class Face:
    """One face in a frame: landmarks in frame pixels (478, 2) float64 and a track id."""

    landmarks: np.ndarray
    track_id: int

    @property
    def centre(self) -> np.ndarray:
        return self.landmarks.mean(axis=0)

    @property
    def size(self) -> float:
        """Larger side of the landmark bounding box, in pixels."""
        return float(np.ptp(self.landmarks, axis=0).max())


@dataclass
class _Track:
    filter: OneEuroFilter
    centre: np.ndarray
    last_seen: float
    track_id: int


@dataclass
class FaceTracker:
    """Finds up to ``max_faces`` faces per frame and smooths their landmarks over time.

    ``static`` switches mediapipe to per-image detection (references, stills).
    """

    max_faces: int = 1
    static: bool = False
    smooth: bool = True
    min_cutoff: float = 1.0
    beta: float = 0.05
    min_detection_confidence: float = 0.5
    _tracks: list[_Track] = field(default_factory=list, init=False)
    _next_id: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        # mediapipe's native logging floods the terminal; keep only errors.
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import mediapipe as mp  # heavy import: only when a tracker is made

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=self.static,
            max_num_faces=self.max_faces,
            refine_landmarks=True,
            min_detection_confidence=self.min_detection_confidence,
            min_tracking_confidence=0.5,
        )

    def detect(self, frame_bgr: np.ndarray) -> list[np.ndarray]:
        """Raw landmarks (478, 2) in pixels for each face found, unsmoothed."""
        h, w = frame_bgr.shape[:2]
        result = self._mesh.process(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        faces = []
        for face in result.multi_face_landmarks or []:
            pts = np.array([(p.x * w, p.y * h) for p in face.landmark], dtype=np.float64)
            faces.append(pts)
        return faces

    def __call__(self, frame_bgr: np.ndarray, timestamp: float) -> list[Face]:
        """Tracked, smoothed faces in a frame taken at ``timestamp`` seconds."""
        raw = self.detect(frame_bgr)
        faces: list[Face] = []
        unused = list(self._tracks)
        for pts in raw:
            centre = pts.mean(axis=0)
            track = min(unused, key=lambda t: np.linalg.norm(t.centre - centre), default=None)
            face_size = np.ptp(pts, axis=0).max()
            if track is None or np.linalg.norm(track.centre - centre) > face_size:
                track = _Track(OneEuroFilter(self.min_cutoff, self.beta), centre, timestamp, self._next_id)
                self._next_id += 1
                self._tracks.append(track)
            else:
                unused.remove(track)
            smoothed = track.filter(pts, timestamp) if self.smooth else pts
            track.centre, track.last_seen = centre, timestamp
            faces.append(Face(smoothed, track.track_id))
        # Forget tracks unseen for a second: a returning face starts fresh.
        self._tracks = [t for t in self._tracks if timestamp - t.last_seen < 1.0]
        return faces

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
