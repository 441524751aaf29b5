"""The interface every makeup engine implements.

The pipeline hands an engine batches of canonical face crops with their
region masks and gets back a makeup *delta* in crop space (output minus
input, float32, BGR, pixel units). A delta is what the pipeline warps back
into the frame: it is exactly zero wherever the masks are zero, which is what
keeps every pixel outside the face bit-identical.

A reference is analysed once, by ``encode_style``; each frame only pays for
``run``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class Engine(ABC):
    """A makeup generator. Arrays are BGR uint8 crops (N, S, S, 3) and masks (N, C, S, S)."""

    #: short name shown in logs and benchmarks, e.g. "classic" or "ipmnet/onnxruntime"
    name: str = "engine"

    @abstractmethod
    def encode_style(self, crop: np.ndarray, masks: np.ndarray) -> Any:
        """Analyse one reference crop (S, S, 3) uint8 with its masks (C, S, S) into a style.

        The returned object is opaque to the pipeline and only handed back to ``run``.
        """

    @abstractmethod
    def run(self, crops: np.ndarray, masks: np.ndarray, style: Any, intensity: float = 1.0) -> np.ndarray:
        """Makeup deltas (N, S, S, 3) float32 for a batch of crops, all with the same style."""

    def close(self) -> None:
        """Release device memory, sessions and streams."""
