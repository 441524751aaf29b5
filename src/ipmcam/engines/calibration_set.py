"""A calibration set on disk: aligned crops, masks and reference styles, as the generator is fed them.

The file format lives here, beside the engines, because both sides use it:
``ipmcam.calibration`` builds and quantizes with sets, and the TensorRT
backend reads one for its implicit INT8 calibration.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ipmcam.engines.ipmnet_engine import to_model_input
from ipmcam.engines.loader import load
from ipmcam.ipmnet.weights import STYLE_ENCODER, read_manifest

log = logging.getLogger("ipmcam")

FORMAT = "ipmcam-calibration/1"
#: intensities the calibration feeds cycle through (1 is the default; lower ones mix in the face's own style)
ALPHAS = (1.0, 1.0, 0.7, 0.4)


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``: how a set and its manifest are tied together."""
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
    """The manifest JSON beside a set's npz."""
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
    engine = load(Path(model_dir), backend="onnxruntime", precision="fp32")
    try:
        if len(crops) == 0:
            return np.zeros((0, engine.style_dim), np.float32)
        return np.concatenate([engine.encode_style(c, m.astype(np.float32) / 255) for c, m in zip(crops, masks)])
    finally:
        engine.close()
