"""Aligned face crops for training and evaluation, built from the development data.

Every crop goes through the live pipeline's own tracker, aligner and mask
drawing (``realtime.reference.align_face``), so the model trains on exactly
the framing and masks it will see at run time.

Identities are split once, by name: a held-out identity (a photo, or every
frame of a held-out video) is never trained on.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("ipmcam")

#: Videos whose person wears strong makeup: their frames serve as real references.
MAKEUP_VIDEOS = {"d10"}
#: Share of identities held out for evaluation (chosen by a stable hash of the name).
HELD_OUT_EVERY = 5


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
    """Stable split: the same identity is always on the same side, on every machine."""
    return int(hashlib.sha256(identity.encode()).hexdigest(), 16) % HELD_OUT_EVERY == 0


def _photos(data: Path) -> list[tuple[Path, str, bool]]:
    out = []
    for folder, makeup in (("makeup", True), ("nonmakeup", False)):
        out += [(p, p.stem, makeup) for p in sorted((data / "faces" / folder).glob("*.png"))]
    return out


def build(data: Path, video_every: int = 8, video_limit: int = 40) -> FaceSet:
    """Track and align every photo and a sample of every video's frames under ``data``."""
    from realtime.reference import align_face
    from realtime.sources import video_frames
    from realtime.tracker import FaceTracker

    items: list[tuple[np.ndarray, str, bool]] = [(cv2.imread(str(p)), name, mk) for p, name, mk in _photos(data)]
    for video in sorted((data / "videos").glob("*.mp4")):
        items += [(f, video.stem, video.stem in MAKEUP_VIDEOS) for f in video_frames(video, video_every, video_limit)]
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
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, crops=faces.crops, masks=faces.masks, landmarks=faces.landmarks,
                        identity=faces.identity, makeup=faces.makeup)


def load(path: Path) -> FaceSet:
    with np.load(path) as z:
        return FaceSet(z["crops"], z["masks"], z["landmarks"], z["identity"], z["makeup"])


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
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path(".cache/faces.npz"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    faces = build(args.data)
    save(faces, args.out)
    train, held = split(faces)
    print(f"{args.out}: {len(faces)} crops; train {len(train)} ({len(set(train.identity))} identities), "
          f"held out {len(held)} ({sorted(set(held.identity))})")


if __name__ == "__main__":
    main()
