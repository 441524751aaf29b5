"""onnxruntime backend: the default everywhere, and the only one on a machine without a GPU.

Execution providers are taken in speed order from what this onnxruntime
build offers (TensorRT, CUDA, then CPU). Sessions are tuned for one frame at
a time: full graph optimisation and one intra-op thread per physical core
(hyper-threads only add contention on convolution kernels), and worker
threads that sleep when they run out of work instead of spinning.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ipmcam.engines.engine_cache import default_cache_dir
from ipmcam.errors import EngineError
from ipmcam.ipmnet.weights import GENERATOR_FILES, STYLE_ENCODER, Manifest

log = logging.getLogger("ipmcam")

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def physical_cores() -> int:
    """Physical cores this process may use: logical CPUs in its affinity mask, less hyper-threads."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or logical
    except ImportError:
        physical = logical
    return max(1, min(logical, physical))


#: onnxruntime session setting that lets idle intra-op workers busy-wait for the next op
ALLOW_SPINNING = "session.intra_op.allow_spinning"


def session_options(threads: int | None = None) -> Any:
    """Options tuned for per-frame latency: full graph optimisation, one sequential stream of ops.

    Spinning is off. onnxruntime's workers otherwise busy-wait after every
    op and after every run, on the cores the capture, tracking and blending
    threads need, and, with two sessions in one process, on the cores the
    other session is about to run on. On the 2-core AMD EPYC (2026-12-01),
    six alternating rounds each (docs/benchmarks.md): the live path
    (``bench --async``, int8) ran at 36.5 instead of 30.4 fps with its
    generator at 54 instead of 72 ms; the synchronous pipeline was unchanged
    in int8 (18.2 against 17.7 fps) and 7% slower in fp32 (13.2 against 14.2).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    options.add_session_config_entry(ALLOW_SPINNING, "0")
    return options


def select_providers(precision: str, cache_dir: Path | None = None) -> list[str | tuple[str, dict]]:
    """Providers of this onnxruntime build in speed order, with TensorRT options when it is there."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    providers: list[str | tuple[str, dict]] = []
    for name in PREFERRED_PROVIDERS:
        if name not in available:
            continue
        if name == "TensorrtExecutionProvider":
            opts: dict[str, object] = {"trt_fp16_enable": precision != "fp32", "trt_int8_enable": precision == "int8"}
            if cache_dir is not None:
                opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
            providers.append((name, opts))
        elif name == "CUDAExecutionProvider":
            # TF32 is on by default in onnxruntime's CUDA provider; fp32 means fp32, as on the other backends.
            providers.append((name, {"use_tf32": int(precision != "fp32")}))
        else:
            providers.append(name)
    return providers


class OnnxBackend:
    """Runs ``style_encoder.onnx`` and the generator graph for ``precision`` from a verified model directory."""

    def __init__(
        self,
        manifest: Manifest,
        precision: str = "fp32",
        providers: Sequence[str | tuple[str, dict]] | None = None,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        if precision not in GENERATOR_FILES:
            raise EngineError(f"unknown precision {precision!r}; choose one of {', '.join(GENERATOR_FILES)}")
        generator_file = GENERATOR_FILES[precision]
        manifest.verify([STYLE_ENCODER, generator_file])
        options = session_options(threads)
        if providers is None:
            providers = select_providers(precision, default_cache_dir() / "onnxruntime-tensorrt")
        chosen = list(providers)
        try:
            self.style_session = ort.InferenceSession(str(manifest.path(STYLE_ENCODER)), options, providers=chosen)
            self.generator_session = ort.InferenceSession(str(manifest.path(generator_file)), options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own exception types per failure
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"onnxruntime cannot load the model in {manifest.root} ({first})") from None
        used = self.generator_session.get_providers()[0].replace("ExecutionProvider", "").lower()
        self.name = f"onnxruntime-{used}" if used != "cpu" else "onnxruntime"
        self.precision = precision
        log.info(
            "onnxruntime %s, providers %s, %d threads",
            generator_file,
            self.generator_session.get_providers(),
            options.intra_op_num_threads,
        )

    @staticmethod
    def _run(session, feeds: dict[str, np.ndarray], output: str, shape: tuple[int, ...]) -> np.ndarray:
        """One run with bound inputs and a preallocated output, so no intermediate copies are made."""
        binding = session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array, dtype=np.float32))
        out = np.empty(shape, dtype=np.float32)
        binding.bind_output(output, "cpu", 0, np.float32, out.shape, out.ctypes.data)
        session.run_with_iobinding(binding)
        return out

    def style(self, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
        dim = self.style_session.get_outputs()[0].shape[1]
        return self._run(self.style_session, {"image": image, "masks": masks}, "style", (image.shape[0], dim))

    def generate(self, image: np.ndarray, masks: np.ndarray, style: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        feeds = {"image": image, "masks": masks, "style": style, "alpha": alpha}
        return self._run(self.generator_session, feeds, "output", image.shape)

    def close(self) -> None:
        self.style_session = self.generator_session = None
