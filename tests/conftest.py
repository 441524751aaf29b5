"""Shared fixtures: the development data beside the checkout and real aligned face crops."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from ipmcam.resources import DEMO_REFERENCE

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IPMCAM_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $IPMCAM_SHARED_DATA); tests that need real faces skip without it."""
    if not SHARED.is_dir():
        pytest.skip(f"development data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def aligned_faces(shared_data: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Real canonical crops (256, 256, 3) uint8 BGR with their region masks (3, 256, 256) float32."""
    from ipmcam.face.reference import align_face
    from ipmcam.face.tracker import FaceTracker

    paths = sorted((shared_data / "faces" / "nonmakeup").glob("*.png"))[:3]
    paths += sorted((shared_data / "faces" / "makeup").glob("*.png"))[:3]
    out = []
    with FaceTracker(static=True, smooth=False) as tracker:
        for path in paths:
            frame = cv2.imread(str(path))
            faces = tracker(frame, 0.0)
            if not faces:
                continue
            crop, region, _ = align_face(frame, faces[0].landmarks)
            out.append((crop, region))
    assert len(out) >= 4, "expected faces in the shared crops"
    return out


@pytest.fixture(scope="session")
def reference_image() -> np.ndarray:
    """The bundled demo reference (a face with strong makeup), BGR uint8."""
    image = cv2.imread(str(DEMO_REFERENCE))
    assert image is not None
    return image


def clip_frames(shared_data: Path, name: str, count: int, every: int = 1) -> list[np.ndarray]:
    """The first ``count`` frames (every ``every``-th) of a development clip, BGR uint8."""
    from ipmcam.media import video_frames

    return list(video_frames(shared_data / "videos" / name, every, count))
