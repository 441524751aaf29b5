"""torch backend: the generator in eager PyTorch from ``ipmnet.safetensors``.

On CPU it is the reference the exported graphs are checked against. On CUDA
it runs fp32 or fp16 (``Generator.half_core``: networks in half, the
preprocessing and composition in fp32 so the background stays exact) and
replays the per-frame generator as a CUDA graph, one captured per batch size,
which removes the per-kernel launch cost that dominates at batch 1.

On CUDA, "fp32" means fp32: TF32 is turned off for cuBLAS and cuDNN (torch
lets cuDNN convolutions use TF32 on Ampere and newer by default), as the
TensorRT backend turns it off in its builds.

``live`` builds the backend on the main thread and runs it in a worker, and
a graph is captured on that worker's first call of each batch size while
the main thread may be encoding a new reference's style. The capture runs in
thread-local capture mode (so work from another thread cannot invalidate
it), and style encoding and generation take one lock, so the two never
interleave on the device.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from ipmcam.errors import EngineError
from ipmcam.ipmnet.weights import WEIGHTS_FILE, Manifest, load_weights

log = logging.getLogger("ipmcam")


def exact_fp32(torch: Any) -> None:
    """Turn TF32 off for matrix products and convolutions, process-wide (torch has no per-call switch)."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # torch 2.9 and later
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        conv.fp32_precision = "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


class CapturedGenerator:
    """A generator call recorded as a CUDA graph with static input and output buffers.

    ``cuda`` is ``torch.cuda`` (tests hand in a stand-in that enforces the capture rules).
    """

    def __init__(self, model: Any, example: tuple[Any, ...], cuda: Any, warmup: int = 3) -> None:
        self.inputs = tuple(t.clone() for t in example)
        side = cuda.Stream()
        side.wait_stream(cuda.current_stream())
        with cuda.stream(side):  # warm-up off the capture stream, as capture requires
            for _ in range(warmup):
                model(*self.inputs)
        cuda.current_stream().wait_stream(side)
        self.graph = cuda.CUDAGraph()
        # Thread-local: only this thread's calls can invalidate the capture, not another thread's work.
        with cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.output = model(*self.inputs)

    def __call__(self, *inputs: Any) -> Any:
        for static, value in zip(self.inputs, inputs):
            static.copy_(value, non_blocking=True)
        self.graph.replay()
        return self.output


class TorchBackend:
    """Eager (CPU or CUDA) or CUDA-graph execution of the torch generator."""

    def __init__(
        self, manifest: Manifest, precision: str = "fp32", device: str | None = None, cuda_graphs: bool = True
    ) -> None:
        try:
            import torch
        except ImportError:
            raise EngineError("the torch backend needs PyTorch: pip install 'ipmcam[gpu]'") from None
        # The network module imports torch at its top: loaded only once torch is known to be there.
        from ipmcam.ipmnet.networks import Generator

        self.torch = torch
        self.cuda = torch.cuda
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        cuda = self.device.type == "cuda"
        if precision not in ("fp32", "fp16"):
            raise EngineError(
                f"the torch backend runs fp32 or fp16, not {precision!r}; use onnxruntime or tensorrt for int8"
            )
        if precision == "fp16" and not cuda:
            raise EngineError("fp16 on the torch backend needs a CUDA GPU; use --precision fp32 on CPU")
        manifest.verify([WEIGHTS_FILE])
        if cuda:
            exact_fp32(torch)  # fp32 proper; the fp16 model's fp32 parts too
        model = load_weights(Generator(manifest.config), manifest.path(WEIGHTS_FILE)).eval().to(self.device)
        self.model = model.half_core() if precision == "fp16" else model
        self.cuda_graphs = cuda and cuda_graphs
        self.captured: dict[int, CapturedGenerator] = {}
        self.lock = threading.Lock()  # style encoding and generation (graph capture included) never interleave
        self.name = f"torch-{self.device.type}-{precision}" + ("-graphs" if self.cuda_graphs else "")
        log.info("torch generator on %s (%s%s)", self.device, precision, ", CUDA graphs" if self.cuda_graphs else "")

    def _tensors(self, *arrays: np.ndarray) -> tuple[Any, ...]:
        """Tensors sharing the arrays' memory where that is safe: read-only inputs (a broadcast style,
        a frame buffer) are copied, since torch may not alias memory it could be asked to write."""
        return tuple(self.torch.from_numpy(np.require(a, np.float32, ("C", "W"))).to(self.device) for a in arrays)

    def style(self, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
        with self.lock, self.torch.no_grad():
            return self.model.encode_style(*self._tensors(image, masks)).cpu().numpy()

    def generate(self, image: np.ndarray, masks: np.ndarray, style: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        with self.lock, self.torch.no_grad():
            inputs = self._tensors(image, masks, style, alpha)
            if not self.cuda_graphs:
                return self.model(*inputs).cpu().numpy()
            n = image.shape[0]
            if n not in self.captured:
                log.info("capturing a CUDA graph for batch %d", n)
                self.captured[n] = CapturedGenerator(self.model, inputs, self.cuda)
            return self.captured[n](*inputs).cpu().numpy()

    def close(self) -> None:
        self.captured.clear()
        self.model = None
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()
