"""Calibration sets: aligned face crops, their region masks and reference style codes.

A calibration set is what INT8 calibration feeds the generator, so it must
look like what the generator sees live: every crop comes out of the live
pipeline's own tracker and aligner (``face.reference.align_face``), from
frames of videos and from photos. Near-identical consecutive frames add
nothing but time, so they are dropped (mean absolute difference of small grey
thumbnails against the last kept crop of the same source, plus a difference
hash against every kept crop). Identities that ``ipmnet.dataset`` holds out
for evaluation never enter a calibration set, so the quality report measured
on them stays honest.

On disk a set is one compressed ``.npz`` (crops uint8 (N,S,S,3) BGR, masks
uint8 (N,C,S,S) 0..255, styles float32 (R,D), and the reference crops the
styles were computed from) and a manifest JSON beside it (sources, counts,
settings, sha256 of the npz and of the style encoder that made the styles).
The reference crops are kept so the styles can be recomputed for a newer
model (``CalibrationSet.with_styles_for``) without tracking faces again.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ipmcam.engines.calibration_set import CalibrationSet, compute_styles
from ipmcam.face.reference import align_face
from ipmcam.face.tracker import FaceTracker
from ipmcam.ipmnet.dataset import is_held_out
from ipmcam.ipmnet.weights import STYLE_ENCODER, read_manifest
from ipmcam.media import IMAGE_SUFFIXES, video_frames
from ipmcam.resources import SHARED_DATA

log = logging.getLogger("ipmcam")

DEFAULT_DATA = SHARED_DATA
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}


def default_sources(data: Path = DEFAULT_DATA) -> list[Path]:
    """Frames of every development video and the photos of faces with and without makeup."""
    return [data / "videos", data / "faces" / "nonmakeup", data / "faces" / "makeup"]


def default_references(data: Path = DEFAULT_DATA) -> list[Path]:
    """Faces wearing makeup: the makeup photos and the makeup video."""
    return [data / "faces" / "makeup", data / "videos" / "d10.mp4"]


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files of ``paths`` (folders expanded, sorted) that are videos or images."""
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES)
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"calibration source {path} does not exist")
    return out


def identity_of(path: Path) -> str:
    """The identity a file shows, as ``ipmnet.dataset`` names it: the file's stem."""
    return Path(path).stem


def iter_frames(path: Path, every: int = 1, limit: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, BGR image) of a photo (once) or of every ``every``-th video frame, at most ``limit``."""
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is not None:
            yield 0, image
        return
    for taken, image in enumerate(video_frames(path, every, limit)):
        yield taken * every, image


# --------------------------------------------------------------------------- deduplication

def thumbnail(crop: np.ndarray, size: int = 64) -> np.ndarray:
    """Small grey float32 image of a crop, for comparing frames."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)


def dhash(crop: np.ndarray, bits: int = 8) -> int:
    """Difference hash (``bits``^2 bits): sign of horizontal gradients of a tiny grey image."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    small = cv2.resize(grey, (bits + 1, bits), interpolation=cv2.INTER_AREA).astype(np.int16)
    flags = (small[:, 1:] > small[:, :-1]).reshape(-1)
    return int(np.packbits(flags).tobytes().hex(), 16)


@dataclass
class Deduplicator:
    """Drops near-identical crops.

    A crop is a duplicate when its thumbnail differs from the last kept crop of
    the same source by less than ``threshold`` grey levels on average, or when
    its difference hash is within ``hash_distance`` bits of any kept crop's.
    """

    threshold: float = 2.0
    hash_distance: int = 0
    _last: dict[str, np.ndarray] = field(default_factory=dict, init=False)
    _hashes: list[int] = field(default_factory=list, init=False)

    def keep(self, crop: np.ndarray, source: str) -> bool:
        """Whether ``crop`` is new; remembers it when it is."""
        thumb = thumbnail(crop)
        last = self._last.get(source)
        if last is not None and float(np.abs(thumb - last).mean()) < self.threshold:
            return False
        h = dhash(crop)
        if any(bin(h ^ other).count("1") <= self.hash_distance for other in self._hashes):
            return False
        self._last[source] = thumb
        self._hashes.append(h)
        return True


# --------------------------------------------------------------------------- collection

@dataclass
class Faces:
    """Aligned crops (N,S,S,3) uint8, masks (N,C,S,S) uint8 0..255 and where each came from."""

    crops: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)  # "file#frame"
    identities: list[str] = field(default_factory=list)

    def add(self, crop: np.ndarray, masks: np.ndarray, origin: str, identity: str) -> None:
        self.crops.append(crop)
        self.masks.append(np.round(np.clip(masks, 0, 1) * 255).astype(np.uint8))
        self.origins.append(origin)
        self.identities.append(identity)

    def __len__(self) -> int:
        return len(self.crops)

    def arrays(self, size: int, n_masks: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.crops:
            return np.zeros((0, size, size, 3), np.uint8), np.zeros((0, n_masks, size, size), np.uint8)
        return np.stack(self.crops), np.stack(self.masks)


@dataclass
class SourceStats:
    path: str
    identity: str
    kind: str  # "video" or "photo"
    frames: int = 0
    faces: int = 0
    kept: int = 0
    duplicates: int = 0


def collect(
    items: Iterable[tuple[str, str, np.ndarray]],
    tracker: Any,
    dedup: Deduplicator | None,
    faces: Faces,
    stats: Callable[[str], SourceStats] | None = None,
    max_faces: int = 1,
) -> Faces:
    """Track, align and deduplicate ``(origin, identity, image)`` items into ``faces``.

    ``origin`` is "file#frame"; its file part keys the consecutive-frame
    comparison. Each face the tracker confirms becomes one crop (the
    ``max_faces`` largest per image).
    """
    for origin, identity, image in items:
        source = origin.split("#", 1)[0]
        st = stats(source) if stats else None
        if st:
            st.frames += 1
        found = sorted(tracker(image, 0.0), key=lambda f: -f.size)[:max_faces]
        for face in found:
            crop, region, _ = align_face(image, face.landmarks)
            if st:
                st.faces += 1
            if dedup is not None and not dedup.keep(crop, source):
                if st:
                    st.duplicates += 1
                continue
            faces.add(crop, region, origin, identity)
            if st:
                st.kept += 1
    return faces


@dataclass
class BuildSettings:
    """How a calibration set is sampled (all recorded in its manifest)."""

    every: int = 5  # take every n-th video frame
    max_per_video: int = 24  # frames taken per video, before deduplication
    max_photos: int = 0  # photos per folder, 0 = all
    max_references: int = 16
    reference_frames: int = 8  # frames taken from each reference video
    dedup_threshold: float = 2.0  # mean abs grey-level difference of 64x64 thumbnails
    dedup_hash_distance: int = 0  # dHash bits
    max_faces: int = 1
    split: str = "calibration"  # "calibration": held-out identities excluded; "held-out": only them


def _items(files: list[Path], settings: BuildSettings, video_limit: int, stats: dict[str, SourceStats],
           skipped: list[str]) -> Iterator[tuple[str, str, np.ndarray]]:
    photos_taken: dict[Path, int] = {}
    for path in files:
        identity = identity_of(path)
        held = is_held_out(identity)
        if held != (settings.split == "held-out"):
            skipped.append(str(path))
            continue
        video = path.suffix.lower() in VIDEO_SUFFIXES
        if not video and settings.max_photos:
            photos_taken[path.parent] = photos_taken.get(path.parent, 0) + 1
            if photos_taken[path.parent] > settings.max_photos:
                continue
        stats[str(path)] = SourceStats(str(path), identity, "video" if video else "photo")
        for index, image in iter_frames(path, settings.every if video else 1, video_limit if video else None):
            yield f"{path}#{index}", identity, image


def collect_files(files: list[Path], settings: BuildSettings, video_limit: int,
                  dedup: Deduplicator | None) -> tuple[Faces, dict[str, SourceStats], list[str]]:
    """Aligned, deduplicated faces of ``files`` (the split's identities only), per-source stats, skipped files."""
    stats: dict[str, SourceStats] = {}
    skipped: list[str] = []
    faces = Faces()
    with FaceTracker(max_faces=max(settings.max_faces, 1), static=True, smooth=False) as tracker:
        collect(_items(files, settings, video_limit, stats, skipped), tracker, dedup, faces,
                stats=lambda s: stats[s], max_faces=settings.max_faces)
    return faces, stats, skipped


def _evenly(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, k).round().astype(int)) if n > k else np.arange(n)


def build_set(
    sources: list[Path],
    references: list[Path],
    model_dir: Path,
    settings: BuildSettings | None = None,
) -> CalibrationSet:
    """Build a calibration (or held-out evaluation) set from video and photo files or folders."""
    settings = settings or BuildSettings()
    if settings.split not in ("calibration", "held-out"):
        raise ValueError(f"unknown split {settings.split!r}")
    model = read_manifest(model_dir)
    size, n_masks = model.config.crop_size, model.config.n_masks

    files = expand(sources)
    faces, stats, skipped = collect_files(files, settings, settings.max_per_video,
                                          Deduplicator(settings.dedup_threshold, settings.dedup_hash_distance))
    crops, masks = faces.arrays(size, n_masks)

    ref_files = expand(references)
    refs, ref_stats, ref_skipped = collect_files(ref_files, settings, settings.reference_frames,
                                                 Deduplicator(settings.dedup_threshold, settings.dedup_hash_distance))
    keep = _evenly(len(refs), settings.max_references)
    ref_crops, ref_masks = refs.arrays(size, n_masks)
    ref_crops, ref_masks = ref_crops[keep], ref_masks[keep]
    ref_origins = np.array([refs.origins[i] for i in keep], dtype=str)
    styles = compute_styles(model_dir, ref_crops, ref_masks)

    manifest = {
        "split": settings.split,
        "settings": asdict(settings),
        "crop_size": size,
        "mask_channels": n_masks,
        "model_config": model.config_name,
        "style_model_dir": str(model_dir),
        "style_encoder_sha256": model.files[STYLE_ENCODER]["sha256"],
        "sources": [asdict(s) for s in stats.values()],
        "references": [asdict(s) for s in ref_stats.values()],
        "excluded_by_split": sorted(set(skipped) | set(ref_skipped)),
    }
    log.info("calibration set: %d crops from %d sources, %d references (%d files left out by the %s split)",
             len(crops), len(stats), len(ref_crops), len(manifest["excluded_by_split"]), settings.split)
    return CalibrationSet(crops, masks, np.array(faces.origins, dtype=str), np.array(faces.identities, dtype=str),
                          ref_crops, ref_masks, ref_origins, styles, manifest)
