"""Aligned face crops for training and evaluation, built from the development data.

Every crop goes through the live pipeline's own tracker, aligner and mask
drawing (``face.reference.align_face``), so the model trains on exactly
the framing and masks it will see at run time.

Identities are split once, by name: a held-out identity (a photo, or every
frame of a held-out video) is never trained on. The clips' split is declared
here (``TRAINING_CLIPS``, ``EVAL_CLIPS``); the photos' is a stable hash.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ipmcam.face.masks import region_masks
from ipmcam.face.reference import align_face
from ipmcam.face.tracker import FaceTracker
from ipmcam.media import video_frames
from ipmcam.resources import CACHE_DIR, SHARED_DATA

log = logging.getLogger("ipmcam")

#: Videos whose person wears strong makeup: their frames serve as real references.
MAKEUP_VIDEOS = {"d10"}
#: Share of photo identities held out for evaluation (chosen by a stable hash of the name).
HELD_OUT_EVERY = 5
#: The shared clips the model trains on (their frames are the webcam-like part of the training set).
TRAINING_CLIPS = frozenset({
    "d0", "d3", "d6", "d10", "d14", "d18", "d20", "latentsync_woman_outdoor_seated", "retalk_older_woman_glasses",
    "retalk_asian_man_suit", "retalk_white_man_map_bg", "retalk_woman_blue_bg", "edtalk_older_woman_news",
    "edtalk_woman_expressions_headturn", "edtalk_older_asian_man_pose_20s", "paddlegan_asian_man_expressive_20s",
    "dpe_man_head_motion",
})
#: The clips kept out of training entirely: the webcam evaluation set (``ipmcam.measure.webcam_set``). Ten of
#: the 27, chosen to cover glasses (d12, d13), the darker-skinned man (both Obama clips: one person), real
#: webcams (a laptop, a two-person video chat), low-key light with a hand over the face, a 720p wide shot and
#: older faces.
EVAL_CLIPS = frozenset({
    "edtalk_obama_office", "ghost_obama_warm_indoor", "d12", "d13", "pyfeat_webcam_asian_man_short",
    "ghost_webcam_videochat_2person", "pyfeat_woman_lowkey_headturn", "s18", "aniportrait_older_woman",
    "mimictalk_older_man_office",
})
#: Frames sampled per clip, evenly over its length.
FRAMES_PER_CLIP = 48


@dataclass
class FaceSet:
    """Crops (N,S,S,3) uint8 BGR, masks (N,3,S,S) uint8 (0..255), crop landmarks (N,478,2) float32."""

    crops: np.ndarray
    masks: np.ndarray
    landmarks: np.ndarray
    identity: np.ndarray  # (N,) str: file stem, or video name for its frames
    makeup: np.ndarray  # (N,) bool: wears makeup (usable as a real reference)

    def __len__(self) -> int:
        return len(self.crops)

    def subset(self, keep: np.ndarray) -> "FaceSet":
        return FaceSet(self.crops[keep], self.masks[keep], self.landmarks[keep], self.identity[keep], self.makeup[keep])

    def float_masks(self, index: np.ndarray | int) -> np.ndarray:
        return self.masks[index].astype(np.float32) / 255.0


def is_held_out(identity: str) -> bool:
    """Stable split: the same identity is always on the same side, on every machine.

    Declared clips are on their declared side; any other name (a photo, a clip
    added later) is held out by a hash of the name.
    """
    if identity in EVAL_CLIPS or identity in TRAINING_CLIPS:
        return identity in EVAL_CLIPS
    return int(hashlib.sha256(identity.encode()).hexdigest(), 16) % HELD_OUT_EVERY == 0


def sample_frames(video: Path, count: int) -> list[np.ndarray]:
    """``count`` frames spread evenly over a clip (all of them when it is shorter), decoded in order."""
    capture = cv2.VideoCapture(str(video))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    every = max(1, total // max(count, 1))
    return list(video_frames(video, every, count))


def _photos(data: Path) -> list[tuple[Path, str, bool]]:
    out = []
    for folder, makeup in (("makeup", True), ("nonmakeup", False)):
        out += [(p, p.stem, makeup) for p in sorted((data / "faces" / folder).glob("*.png"))]
    return out


def build(data: Path, per_clip: int = FRAMES_PER_CLIP) -> FaceSet:
    """Track and align every photo and ``per_clip`` frames of every video under ``data``."""
    items: list[tuple[np.ndarray, str, bool]] = [(cv2.imread(str(p)), name, mk) for p, name, mk in _photos(data)]
    for video in sorted((data / "videos").glob("*.mp4")):
        items += [(f, video.stem, video.stem in MAKEUP_VIDEOS) for f in sample_frames(video, per_clip)]
    crops, region, lms, ids, mk = [], [], [], [], []
    with FaceTracker(static=True, smooth=False) as tracker:
        for image, name, makeup in items:
            faces = tracker(image, 0.0) if image is not None else []
            if len(faces) != 1:
                continue
            crop, face_masks, mat = align_face(image, faces[0].landmarks)
            pts = faces[0].landmarks @ mat[:, :2].T + mat[:, 2]
            crops.append(crop)
            region.append(np.round(face_masks * 255).astype(np.uint8))
            lms.append(pts.astype(np.float32))
            ids.append(name)
            mk.append(makeup)
    log.info("faces: %d aligned crops from %d images", len(crops), len(items))
    return FaceSet(np.stack(crops), np.stack(region), np.stack(lms), np.array(ids), np.array(mk, dtype=bool))


def save(faces: FaceSet, path: Path) -> None:
    """The crops, landmarks and labels; masks are not stored (``load`` draws them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, crops=faces.crops, landmarks=faces.landmarks,
                        identity=faces.identity, makeup=faces.makeup)


def draw_masks(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Region masks (N, C, S, S) uint8 of crops with landmarks (N, 478, 2), as the live pipeline draws them."""
    return np.stack([np.round(region_masks(lm, size) * 255).astype(np.uint8) for lm in landmarks])


def load(path: Path) -> FaceSet:
    """A saved face set, its masks drawn anew from the landmarks (6 ms a crop), so a cache made before a
    change of the region shapes trains on today's masks, the ones the live pipeline draws."""
    with np.load(path) as z:
        crops, landmarks = z["crops"], z["landmarks"]
        return FaceSet(crops, draw_masks(landmarks, crops.shape[1]), landmarks, z["identity"], z["makeup"])


def load_or_build(data: Path, cache: Path) -> FaceSet:
    """The cached face set, built first when missing."""
    if cache.is_file():
        return load(cache)
    faces = build(data)
    save(faces, cache)
    return faces


def split(faces: FaceSet) -> tuple[FaceSet, FaceSet]:
    """(train, held_out) by identity."""
    held = np.array([is_held_out(str(i)) for i in faces.identity])
    return faces.subset(~held), faces.subset(held)


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the aligned face set from the development data.")
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--out", type=Path, default=CACHE_DIR / "faces.npz")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    faces = build(args.data)
    save(faces, args.out)
    train, held = split(faces)
    print(f"{args.out}: {len(faces)} crops; train {len(train)} ({len(set(train.identity))} identities), "
          f"held out {len(held)} ({sorted(set(held.identity))})")


if __name__ == "__main__":
    main()
