"""IPM-Net behind the Engine interface, on any backend (onnxruntime, torch, TensorRT).

The backends only move float32 NCHW tensors through the two exported graphs;
this class owns everything that must behave the same on all of them: the
uint8 BGR <-> [-1, 1] conversion, batching of the style, intensity, and the
delta, which is computed against exactly the tensor that was fed so it is
exactly zero wherever the masks are zero.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from ipmcam.engines.base import Engine
from ipmcam.errors import EngineError


class Backend(Protocol):
    """What IPMNetEngine needs from a runtime. Arrays are float32, C-contiguous."""

    name: str

    def style(self, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """(N,3,S,S) in [-1,1], (N,C,S,S) -> (N, style_dim)."""

    def generate(self, image: np.ndarray, masks: np.ndarray, style: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """(N,3,S,S), (N,C,S,S), (N,style_dim), (N,1) -> output (N,3,S,S) in [-1,1]."""

    def close(self) -> None: ...


def to_model_input(crops: np.ndarray) -> np.ndarray:
    """uint8 BGR crops (N,S,S,3) -> float32 NCHW in [-1, 1] (channel order stays BGR)."""
    x = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)
    x *= 1.0 / 127.5
    x -= 1.0
    return x


class IPMNetEngine(Engine):
    """Makeup transfer with an exported IPM-Net generator.

    ``encode_style`` runs the style encoder once per reference and returns
    its (1, style_dim) code; ``run`` takes that code (broadcast to the batch)
    or one code per crop, (N, style_dim), for per-face or per-region mixing.
    ``style_calls`` counts style-encoder runs, so callers and tests can check
    that a reference is not re-encoded per frame.
    """

    def __init__(self, backend: Backend, style_dim: int, crop_size: int, n_masks: int) -> None:
        self.backend = backend
        self.style_dim = style_dim
        self.crop_size = crop_size
        self.n_masks = n_masks
        self.style_calls = 0

    @property
    def name(self) -> str:  # type: ignore[override]  # follows a fallback backend's switch at run time
        return f"ipmnet/{self.backend.name}"

    def _check(self, crops: np.ndarray, masks: np.ndarray) -> None:
        s = self.crop_size
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != (s, s, 3):
            raise EngineError(f"expected uint8 crops (N, {s}, {s}, 3), got {crops.dtype} {crops.shape}")
        if masks.shape != (crops.shape[0], self.n_masks, s, s):
            raise EngineError(f"expected masks ({crops.shape[0]}, {self.n_masks}, {s}, {s}), got {masks.shape}")

    def encode_style(self, crop: np.ndarray, masks: np.ndarray) -> np.ndarray:
        crops, masks = crop[None], np.asarray(masks, dtype=np.float32)[None]
        self._check(crops, masks)
        self.style_calls += 1
        return np.asarray(self.backend.style(to_model_input(crops), np.ascontiguousarray(masks)), dtype=np.float32)

    def _batch_style(self, style: np.ndarray, n: int) -> np.ndarray:
        style = np.asarray(style, dtype=np.float32)
        if style.ndim != 2 or style.shape[1] != self.style_dim or style.shape[0] not in (1, n):
            raise EngineError(f"expected a style (1 or {n}, {self.style_dim}) from encode_style, got {style.shape}")
        return np.ascontiguousarray(np.broadcast_to(style, (n, self.style_dim)))

    def run(self, crops: np.ndarray, masks: np.ndarray, style: np.ndarray, intensity: float = 1.0) -> np.ndarray:
        masks = np.ascontiguousarray(masks, dtype=np.float32)
        self._check(crops, masks)
        n = crops.shape[0]
        x = to_model_input(crops)
        alpha = np.full((n, 1), intensity, dtype=np.float32)
        out = self.backend.generate(x, masks, self._batch_style(style, n), alpha)
        delta = (out - x) * np.float32(127.5)
        return np.ascontiguousarray(delta.transpose(0, 2, 3, 1))

    def close(self) -> None:
        self.backend.close()
