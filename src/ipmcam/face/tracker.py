"""Face tracking with mediapipe face mesh (478 points with refined irises).

Each tracked face keeps its own One-Euro filter; faces are matched between
frames by nearest centre, so smoothing survives a second person entering.

Face mesh alone happily fits a mesh onto a pet or a poster, so every new
track must be confirmed by one of mediapipe's face detectors before its
makeup is drawn: the full-range model on the frame with a border added (it
misses faces that fill the whole image otherwise), or the short-range model
on the frame itself with a high threshold (it is the one that catches
expressive close faces, and the one a dog's face fools at lower scores).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from ipmcam.face.align import downscaled
from ipmcam.face.smoothing import OneEuroFilter


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
    confirmed: bool = False
    frames_since_check: int = 0


#: Border added around a frame before detection, as a fraction of its larger side.
DETECTION_PAD = 0.25
#: Score the short-range detector must reach on its own to confirm a face.
SHORT_RANGE_CONFIDENCE = 0.8
#: How often (frames) an unconfirmed track is checked again.
RECHECK_EVERY = 15
#: Longest side of the copy the face detectors look at (larger frames are shrunk for them).
DETECT_SIDE = 960


def _padded(frame_bgr: np.ndarray) -> tuple[np.ndarray, int]:
    pad = int(DETECTION_PAD * max(frame_bgr.shape[:2]))
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    return cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0), pad


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
    confirm: bool = True
    _tracks: list[_Track] = field(default_factory=list, init=False)
    _next_id: int = field(default=0, init=False)
    _frame_shape: tuple[int, ...] | None = field(default=None, init=False)
    _last_time: float = field(default=-math.inf, init=False)

    def __post_init__(self) -> None:
        # mediapipe's native logging floods the terminal; keep only errors.
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import mediapipe as mp  # heavy import: only when a tracker is made

        self._mesh = self._new_mesh()
        detection = mp.solutions.face_detection.FaceDetection
        # (detector, pad the frame, score it must reach); scores are checked here because
        # the short-range graph does not apply its own threshold to every detection.
        self._detectors = [
            (detection(model_selection=1, min_detection_confidence=self.min_detection_confidence), True,
             self.min_detection_confidence),
            (detection(model_selection=0, min_detection_confidence=SHORT_RANGE_CONFIDENCE), False,
             SHORT_RANGE_CONFIDENCE),
        ]

    def _new_mesh(self) -> object:
        import mediapipe as mp

        return mp.solutions.face_mesh.FaceMesh(
            static_image_mode=self.static,
            max_num_faces=self.max_faces,
            refine_landmarks=True,
            min_detection_confidence=self.min_detection_confidence,
            min_tracking_confidence=0.5,
        )

    def _follow_size(self, shape: tuple[int, ...]) -> None:
        """Start tracking afresh when the frame size changes.

        In video mode mediapipe carries the face's region from one frame to the
        next in normalised coordinates; after a resolution change that region
        points at the wrong place and the mesh lands beside the face.
        """
        if self._frame_shape is not None and shape != self._frame_shape and not self.static:
            self._restart()
        self._frame_shape = shape

    def _restart(self) -> None:
        """Forget every face: a fresh mesh (no region carried over) and no tracks."""
        self._mesh.close()
        self._mesh = self._new_mesh()
        self._tracks = []

    def detect(self, frame_bgr: np.ndarray) -> list[np.ndarray]:
        """Raw landmarks (478, 2) in pixels for each face mesh fitted, unsmoothed and unconfirmed.

        Still images are padded first (close-up crops are otherwise missed); video
        frames are not, since mesh tracking carries a face from frame to frame.
        """
        self._follow_size(frame_bgr.shape)
        if self.static:
            image, pad = _padded(frame_bgr)
        else:
            image, pad = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB), 0
        h, w = image.shape[:2]
        result = self._mesh.process(image)
        return [
            np.array([(p.x * w - pad, p.y * h - pad) for p in face.landmark], dtype=np.float64)
            for face in result.multi_face_landmarks or []
        ]

    def face_boxes(self, frame_bgr: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Boxes (x0, y0, x1, y1) in pixels of the faces either detector is confident about."""
        boxes = []
        # The detectors see 128-192 px inputs: a copy at most DETECT_SIDE long loses nothing, and keeps the
        # padded copy of a big photo small (2880x2880 RGB for a 1920 px frame, 25 MB, otherwise).
        small, scale = downscaled(frame_bgr, DETECT_SIDE)
        for detector, padded, threshold in self._detectors:
            image, pad = _padded(small) if padded else (cv2.cvtColor(small, cv2.COLOR_BGR2RGB), 0)
            h, w = image.shape[:2]
            for det in detector.process(image).detections or []:
                if det.score[0] < threshold:
                    continue
                b = det.location_data.relative_bounding_box
                x0, y0 = b.xmin * w - pad, b.ymin * h - pad
                boxes.append(tuple(v / scale for v in (x0, y0, x0 + b.width * w, y0 + b.height * h)))
            if boxes:
                break
        return boxes

    def is_face(self, frame_bgr: np.ndarray, landmarks: np.ndarray) -> bool:
        """Whether a detector box agrees with a fitted mesh (its centre inside the mesh's box)."""
        lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
        for x0, y0, x1, y1 in self.face_boxes(frame_bgr):
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            if lo[0] <= cx <= hi[0] and lo[1] <= cy <= hi[1]:
                return True
        return False

    def __call__(self, frame_bgr: np.ndarray, timestamp: float) -> list[Face]:
        """Tracked, smoothed faces in a frame taken at ``timestamp`` seconds."""
        if timestamp < self._last_time and not self.static:
            # The stream started again (a source restarted or swapped): a track last seen "later" would
            # never age out, and mediapipe would look for the face where the old one was.
            self._restart()
        self._last_time = timestamp
        raw = self.detect(frame_bgr)
        if self.static:
            self._tracks = []  # unrelated images: nothing carries over
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
            if self.confirm and not track.confirmed:
                if track.frames_since_check % RECHECK_EVERY == 0:
                    track.confirmed = self.is_face(frame_bgr, pts)
                track.frames_since_check += 1
            track.centre, track.last_seen = centre, timestamp
            if self.confirm and not track.confirmed:
                continue
            smoothed = track.filter(pts, timestamp) if self.smooth else pts
            faces.append(Face(smoothed, track.track_id))
        # Forget tracks unseen for a second: a returning face starts fresh.
        self._tracks = [t for t in self._tracks if timestamp - t.last_seen < 1.0]
        return faces

    def close(self) -> None:
        self._mesh.close()
        for detector, _, _ in self._detectors:
            detector.close()

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
