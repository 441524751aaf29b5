"""The GPU backends' threading, device, cleanup and precision rules, checked on CPU through fakes that enforce them.

``live`` builds a backend on the main thread and runs it in the generator worker; these tests do the same
with stand-ins for pycuda, cuda-python, TensorRT and torch's graph capture (``tests.gpu_fakes``) that fail
the way the real libraries do when a rule is broken.
"""
from __future__ import annotations

import logging
import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from ipmcam.engines import cuda_runtime
from ipmcam.engines.engine_cache import EngineCache
from ipmcam.engines.loader import default_model_dir
from ipmcam.engines.tensorrt_backend import TensorRTBackend, trt_logger
from ipmcam.errors import EngineError
from ipmcam.ipmnet.weights import read_manifest
from tests.gpu_fakes import FakeCapture, FakeGpu, Launching, fake_cudart, fake_pycuda, fake_tensorrt, fake_trt_output


def in_worker(fn: Any, *args: Any) -> Any:
    """Run ``fn`` on a fresh thread, as ``live``'s generator worker does, and return its result."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result(timeout=60)


@pytest.fixture
def gpu() -> FakeGpu:
    return FakeGpu(devices=2)


@pytest.fixture
def with_pycuda(gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """pycuda installed, cuda-python not."""
    driver = fake_pycuda(gpu)
    monkeypatch.setitem(sys.modules, "pycuda", types.SimpleNamespace(driver=driver))
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    monkeypatch.setitem(sys.modules, "cuda", None)  # import cuda... raises ImportError
    return driver


@pytest.fixture
def with_cuda_python(gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    rt = fake_cudart(gpu)
    bindings = types.SimpleNamespace(runtime=rt)
    monkeypatch.setitem(sys.modules, "cuda", types.SimpleNamespace(bindings=bindings))
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", rt)
    return rt


def trt_module(gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch, fail_build: set[str] | None = None) -> Any:
    trt = fake_tensorrt(gpu, fail_build)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


def feeds(n: int, size: int = 256) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    masks = np.zeros((n, 3, size, size), np.float32)
    masks[:, 0, 100:140, 90:170] = rng.random((n, 40, 80))
    return {"image": rng.uniform(-1, 1, (n, 3, size, size)).astype(np.float32), "masks": masks,
            "style": rng.standard_normal((n, 64)).astype(np.float32), "alpha": np.full((n, 1), 0.8, np.float32)}


def test_the_fake_pycuda_refuses_calls_outside_the_pushed_context(gpu: FakeGpu, with_pycuda) -> None:
    ctx = with_pycuda.Device(0).retain_primary_context()
    ctx.push()
    with_pycuda.mem_alloc(16)  # fine in the thread that pushed it
    with pytest.raises(with_pycuda.LogicError, match="invalid device context"):
        in_worker(with_pycuda.mem_alloc, 16)  # the bug live's worker used to hit
    with_pycuda.Context.pop()


def test_pycuda_runtime_works_from_a_worker_thread_and_leaves_no_context_behind(gpu: FakeGpu, with_pycuda) -> None:
    cuda = cuda_runtime.cuda_runtime(0)
    assert isinstance(cuda, cuda_runtime.PyCudaRuntime) and gpu.stack == []

    def round_trip() -> np.ndarray:
        data = np.arange(12, dtype=np.float32)
        ptr = cuda.malloc(data.nbytes)
        cuda.to_device(ptr, data)
        out = np.empty_like(data)
        cuda.to_host(out, ptr)
        cuda.synchronize()
        cuda.free(ptr)
        assert gpu.stack == []  # popped in the worker too
        return out

    assert np.array_equal(in_worker(round_trip), np.arange(12, dtype=np.float32))
    in_worker(cuda.close)  # closing from another thread is fine too
    assert gpu.memory == {} and gpu.streams == {} and with_pycuda.primaries[0].retained == 0


@pytest.mark.parametrize("runtime", ["pycuda", "cuda-python"])
def test_tensorrt_built_on_one_thread_runs_on_another_on_device_1(gpu, monkeypatch, tmp_path, request,
                                                                  runtime) -> None:
    """Device 1: cudaSetDevice is per thread, so the worker must set it (it starts on device 0)."""
    request.getfixturevalue("with_pycuda" if runtime == "pycuda" else "with_cuda_python")
    trt = trt_module(gpu, monkeypatch)
    manifest = read_manifest(default_model_dir("lite"))
    backend = TensorRTBackend(manifest, "fp16", cache=EngineCache(tmp_path), device=1)
    f = feeds(3)
    out = in_worker(backend.generate, f["image"], f["masks"], f["style"], f["alpha"])
    np.testing.assert_allclose(out, fake_trt_output(f), atol=1e-6)
    style = in_worker(backend.style, f["image"][:1], f["masks"][:1])
    np.testing.assert_allclose(style, np.full((1, 64), f["image"][0].mean()), atol=1e-6)
    big = feeds(6)  # more than max_batch (4): run in two chunks
    np.testing.assert_allclose(in_worker(backend.generate, *big.values()), fake_trt_output(big), atol=1e-6)
    assert all(device == 1 for device, _ in gpu.memory.values())
    in_worker(backend.close)
    backend.close()  # twice is harmless
    assert gpu.memory == {} and gpu.streams == {}
    assert trt.loggers == 1


def test_a_failed_build_frees_everything_and_one_logger_serves_all(gpu, monkeypatch, tmp_path, with_pycuda) -> None:
    trt = trt_module(gpu, monkeypatch, fail_build={"generator.fp16.onnx"})
    manifest = read_manifest(default_model_dir("lite"))
    for _ in range(2):  # the style encoder builds, then the generator fails: nothing of either may be left
        with pytest.raises(EngineError, match="TensorRT failed to build an engine"):
            TensorRTBackend(manifest, "fp16", cache=EngineCache(tmp_path))
        assert gpu.memory == {} and gpu.streams == {} and gpu.stack == []
        assert with_pycuda.primaries[0].retained == 0
    ok = TensorRTBackend(manifest, "fp32", cache=EngineCache(tmp_path))
    ok.close()
    assert trt.loggers == 1 and trt_logger(trt) is trt_logger(trt)


# --------------------------------------------------------------------------------------------------- torch
torch = pytest.importorskip("torch")


def test_cuda_fp32_turns_tf32_off(monkeypatch) -> None:
    from ipmcam.engines.torch_backend import TorchBackend

    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = matmul.fp32_precision = "tf32"  # what torch lets convolutions use by default
    # Build the CUDA backend on a CPU-only torch: the module stays where it is, the flags are what is checked.
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: self)
    try:
        backend = TorchBackend(read_manifest(default_model_dir("lite")), "fp32", device="cuda", cuda_graphs=False)
        assert backend.name == "torch-cuda-fp32"
        assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
    finally:
        conv.fp32_precision, matmul.fp32_precision = before


def test_onnxruntime_cuda_fp32_turns_tf32_off(monkeypatch) -> None:
    import onnxruntime as ort

    from ipmcam.engines.onnx_backend import select_providers

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert select_providers("fp32") == [("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider"]
    assert select_providers("fp16")[0] == ("CUDAExecutionProvider", {"use_tf32": 1})


def test_graph_capture_survives_a_style_encoded_on_another_thread(monkeypatch) -> None:
    """The worker captures its first graph while the main thread encodes a new reference."""
    from ipmcam.engines.torch_backend import TorchBackend

    backend = TorchBackend(read_manifest(default_model_dir("lite")), "fp32", device="cpu", cuda_graphs=False)
    capture, style_done = FakeCapture(), threading.Event()
    plain = backend.model
    backend.model, backend.cuda, backend.cuda_graphs = Launching(plain, capture, style_done), capture, True
    f = feeds(1)
    worker = ThreadPoolExecutor(1)
    generated = worker.submit(backend.generate, f["image"], f["masks"], f["style"], f["alpha"])
    assert capture.capture_started.wait(30)
    style = backend.style(f["image"], f["masks"])  # must neither break the capture nor run inside it
    style_done.set()
    out = generated.result(timeout=60)
    worker.shutdown()
    assert capture.modes == ["thread_local"] and not capture.invalidated
    with torch.no_grad():
        expected = plain(*map(torch.from_numpy, f.values())).numpy()
        expected_style = plain.encode_style(torch.from_numpy(f["image"]), torch.from_numpy(f["masks"])).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(style, expected_style, atol=1e-5)


def test_the_fake_capture_fails_in_global_mode_when_another_thread_launches() -> None:
    capture = FakeCapture()
    with pytest.raises(RuntimeError, match="during capture"):
        with capture.graph(capture.CUDAGraph()):
            with pytest.raises(RuntimeError, match="stream is capturing"):
                in_worker(capture.launch)
    with capture.graph(capture.CUDAGraph(), capture_error_mode="thread_local"):
        in_worker(capture.launch)


# ------------------------------------------------------------------------------------------------ fallback
class FlakyBackend:
    """A backend that works ``good`` calls, then fails like a lost GPU; records what it did."""

    def __init__(self, name: str, good: int = 0, shift: float = 0.0, build_error: bool = False) -> None:
        if build_error:
            raise EngineError(f"{name}: CUDA driver is gone")
        self.name, self.good, self.shift, self.calls, self.closed = name, good, shift, 0, False

    def _tick(self) -> None:
        self.calls += 1
        if self.calls > self.good:
            raise RuntimeError(f"CUDA error: an illegal memory access was encountered\n{self.name} trace...")

    def style(self, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
        self._tick()
        return np.zeros((image.shape[0], 64), np.float32)

    def generate(self, image: np.ndarray, masks: np.ndarray, style: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        self._tick()
        return image + np.float32(self.shift)

    def close(self) -> None:
        self.closed = True


def fallback_engine(first: FlakyBackend, *later: tuple[str, Any]) -> Any:
    from ipmcam.engines.fallback import FallbackBackend
    from ipmcam.engines.ipmnet_engine import IPMNetEngine

    return IPMNetEngine(FallbackBackend(first, list(later)), style_dim=64, crop_size=8, n_masks=3)


def small(n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, 8, 8, 3), 100, np.uint8), np.ones((n, 3, 8, 8), np.float32)


def test_a_backend_failing_mid_stream_hands_over_with_one_warning(caplog) -> None:
    trt = FlakyBackend("tensorrt-fp16", good=2)
    torch_cuda = FlakyBackend("torch-cuda-fp16", good=10**9, shift=0.1)
    engine = fallback_engine(trt, ("torch", lambda: torch_cuda))
    crops, masks = small()
    style = engine.encode_style(crops[0], masks[0])
    assert engine.name == "ipmnet/tensorrt-fp16"
    with caplog.at_level(logging.WARNING, logger="ipmcam"):
        deltas = [engine.run(crops, masks, style) for _ in range(5)]  # the second run fails on TensorRT
    assert not deltas[0].any() and all(np.allclose(d, 0.1 * 127.5) for d in deltas[1:])
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert "tensorrt-fp16 failed at run time (CUDA error: an illegal memory access" in warnings[0].getMessage()
    assert "continuing on torch-cuda-fp16" in warnings[0].getMessage()
    assert engine.name == "ipmnet/torch-cuda-fp16" and trt.closed


def test_fallback_skips_a_backend_that_cannot_be_built_and_fails_when_none_is_left(caplog) -> None:
    ort_like = FlakyBackend("onnxruntime", good=1)

    def gone() -> FlakyBackend:
        return FlakyBackend("torch-cuda-fp32", build_error=True)

    engine = fallback_engine(FlakyBackend("tensorrt-fp32"), ("torch", gone), ("onnxruntime", lambda: ort_like))
    crops, masks = small()
    with caplog.at_level(logging.WARNING, logger="ipmcam"):
        engine.run(crops, masks, np.zeros((1, 64), np.float32))
    assert len(caplog.records) == 1
    assert "continuing on onnxruntime; passed over torch: torch-cuda-fp32: CUDA driver is gone" in caplog.text
    with pytest.raises(EngineError, match="onnxruntime failed at run time .* no other backend is left"):
        engine.run(crops, masks, np.zeros((1, 64), np.float32))


def test_the_async_stream_goes_on_after_a_gpu_failure_in_the_worker() -> None:
    from ipmcam.realtime.async_generator import AsyncGenerator

    engine = fallback_engine(FlakyBackend("tensorrt-fp16", good=1), ("onnxruntime", lambda: FlakyBackend(
        "onnxruntime", good=10**9, shift=0.2)))
    worker = AsyncGenerator(engine)
    crops, masks = small(1)
    style = np.zeros((1, 64), np.float32)
    try:
        for frame in range(4):
            worker.submit(crops, masks, style, 1.0, [frame])
            assert worker.wait_for(frame, timeout=30) is not None
    finally:
        worker.close()
    assert worker.error is None and engine.name == "ipmnet/onnxruntime"
    assert np.allclose(worker.latest(3), 0.2 * 127.5)


def test_auto_keeps_the_remaining_backends_in_reserve(monkeypatch) -> None:
    from ipmcam.engines import loader

    built: list[str] = []

    def fake_backend(name: str, manifest: Any, precision: str) -> FlakyBackend:
        built.append(name)
        return FlakyBackend(name, good=0 if name == "tensorrt" else 10**9)

    monkeypatch.setattr(loader, "_skip_reason", lambda name: None)
    monkeypatch.setattr(loader, "_backend", fake_backend)
    engine = loader.load(default_model_dir("lite"), backend="auto")
    assert built == ["tensorrt"]  # the reserve is built only when needed
    crops, masks = np.zeros((1, 256, 256, 3), np.uint8), np.zeros((1, 3, 256, 256), np.float32)
    engine.run(crops, masks, np.zeros((1, 64), np.float32))
    assert built == ["tensorrt", "torch"] and engine.name == "ipmnet/torch"
    explicit = loader.load(default_model_dir("lite"), backend="tensorrt")
    with pytest.raises(RuntimeError, match="CUDA error"):  # asked for by name: no silent substitute
        explicit.run(crops, masks, np.zeros((1, 64), np.float32))
