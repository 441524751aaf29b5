"""``load()``: a ready IPM-Net engine from a model directory on the best backend this machine has.

``backend="auto"`` tries TensorRT (installed, and a CUDA GPU), then torch on
CUDA, then onnxruntime, and logs (logger "ipmcam") which one runs and why
the others were passed over. torch on CPU is never picked automatically:
onnxruntime is faster there. With ``auto``, the backends after the chosen
one stay in reserve (``engines.fallback``): if the chosen one fails at run
time, the next takes over with one warning line and the stream goes on.
"""
from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.util
import logging
import os
import sys
from pathlib import Path

from ipmcam.engines.base import Engine
from ipmcam.engines.fallback import FallbackBackend
from ipmcam.engines.ipmnet_engine import Backend, IPMNetEngine
from ipmcam.errors import EngineError
from ipmcam.ipmnet.weights import Manifest, read_manifest
from ipmcam.resources import WEIGHTS_DIR

log = logging.getLogger("ipmcam")

#: backend name -> (module, class), in the order ``auto`` tries them
BACKEND_CLASSES = {
    "tensorrt": ("ipmcam.engines.tensorrt_backend", "TensorRTBackend"),
    "torch": ("ipmcam.engines.torch_backend", "TorchBackend"),
    "onnxruntime": ("ipmcam.engines.onnx_backend", "OnnxBackend"),
}
BACKENDS = tuple(BACKEND_CLASSES)


def default_model_dir(config: str) -> Path:
    """$IPMCAM_WEIGHTS, else the shipped ``ipmcam/weights/<config>``."""
    override = os.environ.get("IPMCAM_WEIGHTS")
    return Path(override) if override else WEIGHTS_DIR / config


def cuda_driver_loads() -> bool:
    """Whether the NVIDIA driver's CUDA library loads: without it there is no CUDA GPU to count."""
    names = ("nvcuda.dll",) if sys.platform == "win32" else ("libcuda.so.1", "libcuda.so", "libcuda.dylib")
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def cuda_device_count() -> int:
    """CUDA GPUs visible to this process, asked through cuda-python or torch, whichever is installed.

    Without a CUDA driver the answer is 0 at once: importing torch only to ask would cost
    about 270 MB of memory in every run on a machine without a GPU.
    """
    if not cuda_driver_loads():
        return 0
    if importlib.util.find_spec("cuda") is not None:
        try:
            try:
                from cuda.bindings import runtime as cudart
            except ImportError:
                from cuda import cudart
            err, count = cudart.cudaGetDeviceCount()
            return int(count) if err == cudart.cudaError_t.cudaSuccess else 0
        except ImportError:
            pass
    if importlib.util.find_spec("torch") is not None:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    return 0


def backend_unavailable(name: str) -> str | None:
    """Why backend ``name`` cannot run on this machine at all (checked without importing its runtime), or None."""
    if name == "tensorrt":
        if importlib.util.find_spec("tensorrt") is None:
            return "the tensorrt package is not installed"
        return None if cuda_device_count() else "no CUDA GPU"
    if name == "torch":
        return None if importlib.util.find_spec("torch") is not None else "PyTorch is not installed"
    if name == "onnxruntime":
        return None if importlib.util.find_spec("onnxruntime") is not None else "onnxruntime is not installed"
    return f"unknown backend {name!r}"


def _skip_reason(backend: str) -> str | None:
    """Why ``auto`` should not try ``backend`` on this machine, or None to try it."""
    if reason := backend_unavailable(backend):
        return reason
    if backend == "torch" and not cuda_device_count():
        return "no CUDA GPU (onnxruntime is faster on CPU)"
    return None


def _backend(name: str, manifest: Manifest, precision: str) -> Backend:
    """Construct a backend, importing its module (and runtime) only now."""
    module, cls = BACKEND_CLASSES[name]
    return getattr(importlib.import_module(module), cls)(manifest, precision)


def load(model_dir: Path | None = None, backend: str = "auto", precision: str = "fp32", config: str = "lite") -> Engine:
    """An IPMNetEngine for the model in ``model_dir`` (default: ``default_model_dir(config)``).

    ``backend`` is "auto" or one of BACKENDS; ``precision`` is "fp32", "fp16"
    or "int8" (each needs its generator graph in the model directory).
    Raises EngineError with a one-line reason and the fix.
    """
    if backend != "auto" and backend not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    root = Path(model_dir) if model_dir is not None else default_model_dir(config)
    if not root.is_dir():
        raise EngineError(
            f"no model directory at {root}: export one with `python -m ipmcam.ipmnet.export --config {config} "
            f"--weights <file> --out {root}` or set IPMCAM_WEIGHTS"
        )
    manifest = read_manifest(root)
    candidates = list(BACKENDS) if backend == "auto" else [backend]
    error: EngineError | None = None
    for index, name in enumerate(candidates):
        if backend == "auto" and (reason := _skip_reason(name)):
            log.info("backend %s skipped: %s", name, reason)
            continue
        try:
            chosen = _backend(name, manifest, precision)
        except EngineError as exc:
            if backend != "auto":
                raise
            log.warning("backend %s unavailable: %s", name, exc)
            error = exc
            continue
        cfg = manifest.config
        log.info("IPM-Net %s (%s) on %s", manifest.config_name, precision, chosen.name)
        later = [(n, functools.partial(_backend, n, manifest, precision))
                 for n in candidates[index + 1 :] if backend == "auto" and not _skip_reason(n)]
        if later:  # a GPU backend that fails at run time hands over to the next one
            chosen = FallbackBackend(chosen, later)
        return IPMNetEngine(chosen, style_dim=cfg.style_dim, crop_size=cfg.crop_size, n_masks=cfg.n_masks)
    raise error or EngineError("no engine backend could be loaded")
