"""CPU reference outputs for the GPU parity check, and how a GPU backend's outputs are held against them.

``src/ipmcam/assets/gpu_reference.npz`` holds a few real aligned crops of the
demo clip with their masks, the demo reference's crop and masks, and what
onnxruntime fp32 on the CPU makes of them with the shipped model: the style
code and the makeup deltas at intensity 0.8. ``make gpu-check`` runs every
GPU backend and precision on the same inputs and compares, so a GPU result
is checked against a CPU one without onnxruntime or a face tracker on the
GPU machine. Masks are stored as uint8 (x255) and the references were made
from exactly those quantized masks; deltas are stored in 1/100 px (int16),
well below the 0.05 px fp32 tolerance. The file names the sha256 of the
graphs it was made with, so a re-exported model is not checked against a
stale reference.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ipmcam.engines.base import Engine
from ipmcam.ipmnet.weights import GENERATOR_FILES, STYLE_ENCODER, Manifest
from ipmcam.resources import ASSETS_DIR

REFERENCE_FILE = ASSETS_DIR / "gpu_reference.npz"
DELTA_SCALE = 100.0  # stored deltas are in 1/100 px
INTENSITY = 0.8
#: what each precision must meet against the fp32 CPU reference: fp32 as tight as the parity tests,
#: fp16 under 1.5 grey levels anywhere, int8 as the INT8 report's PSNR target over the makeup region
TOLERANCES = {"fp32": {"max_abs_px": 0.05}, "fp16": {"max_abs_px": 1.5}, "int8": {"psnr_makeup_db": 35.0}}
REMAKE = "python -m ipmcam.measure.gpu_check --write-reference (on a CPU machine with onnxruntime and mediapipe)"


def model_hashes(manifest: Manifest) -> dict[str, str]:
    return {name: manifest.files[name]["sha256"] for name in (STYLE_ENCODER, GENERATOR_FILES["fp32"])}


@dataclass(frozen=True)
class Reference:
    """Inputs and CPU outputs; masks as float32 in [0, 1] exactly as the outputs were made from them."""

    crops: np.ndarray  # (N, S, S, 3) uint8
    masks: np.ndarray  # (N, C, S, S) float32
    ref_crop: np.ndarray  # (S, S, 3) uint8
    ref_masks: np.ndarray  # (C, S, S) float32
    style: np.ndarray  # (1, style_dim) float32
    deltas: np.ndarray  # (N, S, S, 3) float32, px
    hashes: dict[str, str]

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` crops with their masks, the stored ones repeated as needed."""
        idx = np.arange(n) % len(self.crops)
        return self.crops[idx], self.masks[idx]


def quantize_masks(masks: np.ndarray) -> np.ndarray:
    return np.round(np.clip(masks, 0, 1) * 255).astype(np.uint8)


def dequantize_masks(masks: np.ndarray) -> np.ndarray:
    return masks.astype(np.float32) / np.float32(255)


def make_reference(engine: Engine, manifest: Manifest, crops: np.ndarray, masks: np.ndarray,
                   ref_crop: np.ndarray, ref_masks: np.ndarray) -> Reference:
    """Run ``engine`` (onnxruntime fp32 on the CPU) on the inputs, masks quantized first as they are stored."""
    masks, ref_masks = dequantize_masks(quantize_masks(masks)), dequantize_masks(quantize_masks(ref_masks))
    style = engine.encode_style(ref_crop, ref_masks)
    deltas = engine.run(crops, masks, style, INTENSITY)
    return Reference(crops, masks, ref_crop, ref_masks, style, deltas, model_hashes(manifest))


def save_reference(ref: Reference, path: Path = REFERENCE_FILE) -> None:
    np.savez_compressed(
        path, crops=ref.crops, masks=quantize_masks(ref.masks), ref_crop=ref.ref_crop,
        ref_masks=quantize_masks(ref.ref_masks), style=ref.style,
        deltas=np.round(ref.deltas * DELTA_SCALE).astype(np.int16),
        hashes=np.array([f"{k}={v}" for k, v in sorted(ref.hashes.items())]))


def load_reference(path: Path = REFERENCE_FILE) -> Reference:
    with np.load(path) as z:
        hashes = dict(item.split("=", 1) for item in z["hashes"].tolist())
        return Reference(z["crops"], dequantize_masks(z["masks"]), z["ref_crop"], dequantize_masks(z["ref_masks"]),
                         z["style"].astype(np.float32), z["deltas"].astype(np.float32) / np.float32(DELTA_SCALE),
                         hashes)


def stale(ref: Reference, manifest: Manifest) -> str | None:
    """Why ``ref`` cannot judge the model of ``manifest`` (made with other graphs), or None."""
    if ref.hashes != model_hashes(manifest):
        return f"the stored CPU reference was made with another model: remake it with `{REMAKE}`"
    return None


def psnr_makeup(delta: np.ndarray, expected: np.ndarray, masks: np.ndarray) -> float | None:
    """PSNR (dB, peak 255) of ``delta`` against ``expected`` over the makeup region; None when identical."""
    region = np.broadcast_to((masks.max(axis=1) > 0)[..., None], delta.shape)
    mse = float(np.mean((delta[region] - expected[region]) ** 2)) if region.any() else 0.0
    return None if mse == 0 else 10 * np.log10(255.0**2 / mse)


def compare(engine: Engine, ref: Reference, precision: str) -> dict[str, Any]:
    """Run ``engine`` on the reference inputs (all crops at once, then the first alone) and judge it."""
    style = engine.encode_style(ref.ref_crop, ref.ref_masks)
    full = engine.run(ref.crops, ref.masks, ref.style, INTENSITY)  # the CPU style: the generator alone is judged
    single = engine.run(ref.crops[:1], ref.masks[:1], ref.style, INTENSITY)
    outside = np.broadcast_to((ref.masks.max(axis=1) == 0)[..., None], full.shape)
    psnr = psnr_makeup(full, ref.deltas, ref.masks)
    result = {
        "max_abs_px": float(np.abs(full - ref.deltas).max()),
        "max_abs_px_batch1": float(np.abs(single - ref.deltas[:1]).max()),
        "psnr_makeup_db": psnr,
        "style_max_abs": float(np.abs(style - ref.style).max()),
        "background_exact": bool(not full[outside].any()),
        "crops": int(len(ref.crops)),
    }
    limits = TOLERANCES[precision]
    ok = result["background_exact"]
    if "max_abs_px" in limits:
        ok = ok and max(result["max_abs_px"], result["max_abs_px_batch1"]) <= limits["max_abs_px"]
    if "psnr_makeup_db" in limits:
        ok = ok and (psnr is None or psnr >= limits["psnr_makeup_db"])
    return {**result, "tolerance": limits, "passed": bool(ok)}
