"""Calibration sets: aligned face crops, their region masks and reference style codes.

A calibration set is what INT8 calibration feeds the generator, so it must
look like what the generator sees live: every crop comes out of the live
pipeline's own tracker and aligner (``realtime.reference.align_face``), from
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

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger("ipmcam")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("IPMCAM_SHARED_DATA", REPO.parent / "shared" / "data"))
FORMAT = "ipmcam-calibration/1"
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
#: intensities the calibration feeds cycle through (1 is the default; lower ones mix in the face's own style)
ALPHAS = (1.0, 1.0, 0.7, 0.4)
#: generator inputs, in the exported graph's order
GENERATOR_INPUTS = ("image", "masks", "style", "alpha")


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


def is_held_out(identity: str) -> bool:
    from ipmnet.dataset import is_held_out as held

    return held(identity)


def iter_frames(path: Path, every: int = 1, limit: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, BGR image) of a photo (once) or of every ``every``-th video frame, at most ``limit``."""
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is not None:
            yield 0, image
        return
    from realtime.sources import VideoFileSource

    source = VideoFileSource(path)
    taken = 0
    try:
        for frame in source:
            if frame is None:
                continue
            if limit is not None and taken >= limit:
                break
            if frame.index % every == 0:
                taken += 1
                yield frame.index, frame.image
    finally:
        source.close()


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
    from realtime.reference import align_face

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
    from realtime.tracker import FaceTracker

    stats: dict[str, SourceStats] = {}
    skipped: list[str] = []
    faces = Faces()
    with FaceTracker(max_faces=max(settings.max_faces, 1), static=True, smooth=False) as tracker:
        collect(_items(files, settings, video_limit, stats, skipped), tracker, dedup, faces,
                stats=lambda s: stats[s], max_faces=settings.max_faces)
    return faces, stats, skipped


# --------------------------------------------------------------------------- the set

def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class CalibrationSet:
    """Crops, masks and reference styles for calibrating and evaluating the generator."""

    crops: np.ndarray  # (N,S,S,3) uint8 BGR
    masks: np.ndarray  # (N,C,S,S) uint8 0..255
    origins: np.ndarray  # (N,) str
    identities: np.ndarray  # (N,) str
    ref_crops: np.ndarray  # (R,S,S,3) uint8
    ref_masks: np.ndarray  # (R,C,S,S) uint8
    ref_origins: np.ndarray  # (R,) str
    styles: np.ndarray  # (R,D) float32, style codes of the references
    manifest: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.crops)

    def float_masks(self, index: Any) -> np.ndarray:
        return self.masks[index].astype(np.float32) * np.float32(1 / 255)

    def with_styles_for(self, model_dir: Path) -> CalibrationSet:
        """This set with its styles from ``model_dir``'s style encoder (recomputed only if it differs)."""
        from ipmnet.weights import STYLE_ENCODER, read_manifest

        sha = read_manifest(model_dir).files[STYLE_ENCODER]["sha256"]
        if sha == self.manifest.get("style_encoder_sha256"):
            return self
        log.info("calibration set styles come from another style encoder; recomputing them with %s", model_dir)
        manifest = dict(self.manifest, style_encoder_sha256=sha, style_model_dir=str(model_dir))
        styles = compute_styles(model_dir, self.ref_crops, self.ref_masks)
        return CalibrationSet(self.crops, self.masks, self.origins, self.identities, self.ref_crops,
                              self.ref_masks, self.ref_origins, styles, manifest)

    def generator_batches(self, batch_size: int = 1, limit: int | None = None,
                          alphas: tuple[float, ...] = ALPHAS) -> Iterator[dict[str, np.ndarray]]:
        """Generator feeds (image, masks, style, alpha), float32 C-contiguous, ``batch_size`` crops each.

        Crop i is paired with reference style i mod R and intensity
        ``alphas[i mod len(alphas)]``, so every batch mixes references and
        intensities. ``limit`` caps the number of crops; the last batch may be
        smaller. Images are BGR in [-1, 1], NCHW, exactly as the engines feed them.
        """
        from engines.ipmnet_engine import to_model_input

        if len(self.styles) == 0:
            raise ValueError("the calibration set has no reference styles")
        n = len(self) if limit is None else min(limit, len(self))
        for start in range(0, n, batch_size):
            idx = np.arange(start, min(start + batch_size, n))
            yield {
                "image": to_model_input(self.crops[idx]),
                "masks": np.ascontiguousarray(self.float_masks(idx)),
                "style": np.ascontiguousarray(self.styles[idx % len(self.styles)], dtype=np.float32),
                "alpha": np.array([[alphas[i % len(alphas)]] for i in idx], dtype=np.float32),
            }

    def save(self, path: Path) -> Path:
        """Write ``path`` (.npz) and its manifest ``path`` with suffix .json; returns the manifest path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez_compressed(tmp, crops=self.crops, masks=self.masks, styles=self.styles.astype(np.float32),
                            origins=self.origins.astype(str), identities=self.identities.astype(str),
                            ref_crops=self.ref_crops, ref_masks=self.ref_masks,
                            ref_origins=self.ref_origins.astype(str))
        os.replace(tmp, path)
        data = path.read_bytes()
        self.manifest.update(
            format=FORMAT,
            file=path.name,
            sha256=sha256_bytes(data),
            bytes=len(data),
            counts={"crops": int(len(self.crops)), "references": int(len(self.ref_crops)),
                    "styles": int(len(self.styles)), "identities": int(len(set(self.identities.tolist())))},
            shapes={"crops": list(self.crops.shape), "masks": list(self.masks.shape),
                    "styles": list(self.styles.shape)},
        )
        manifest_path = manifest_path_for(path)
        manifest_path.write_text(json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")
        return manifest_path


def manifest_path_for(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def load_set(path: Path, verify: bool = True) -> CalibrationSet:
    """A saved set; with ``verify``, its npz must match the sha256 in its manifest."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no calibration set at {path}: build one with `ipmcam calibrate build-set --out {path}`")
    manifest_file = manifest_path_for(path)
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    if verify and manifest.get("sha256") and sha256_bytes(path.read_bytes()) != manifest["sha256"]:
        raise ValueError(f"calibration set {path} does not match the checksum in {manifest_file}; rebuild it")
    with np.load(path) as z:
        return CalibrationSet(z["crops"], z["masks"], z["origins"], z["identities"], z["ref_crops"],
                              z["ref_masks"], z["ref_origins"], z["styles"].astype(np.float32), manifest)


def compute_styles(model_dir: Path, crops: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Style codes (R, D) of reference crops, by the model's style encoder (onnxruntime, fp32)."""
    from engines.loader import load

    engine = load(Path(model_dir), backend="onnxruntime", precision="fp32")
    try:
        if len(crops) == 0:
            return np.zeros((0, engine.style_dim), np.float32)
        return np.concatenate([engine.encode_style(c, m.astype(np.float32) / 255) for c, m in zip(crops, masks)])
    finally:
        engine.close()


def _evenly(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, k).round().astype(int)) if n > k else np.arange(n)


def build_set(
    sources: list[Path],
    references: list[Path],
    model_dir: Path,
    settings: BuildSettings | None = None,
) -> CalibrationSet:
    """Build a calibration (or held-out evaluation) set from video and photo files or folders."""
    from ipmnet.weights import STYLE_ENCODER, read_manifest

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
