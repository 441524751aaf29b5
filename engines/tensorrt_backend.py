"""TensorRT backend: engines built from the exported ONNX graphs, cached on disk, run on a CUDA stream.

* fp32: ``generator.onnx`` with TF32 off, so "fp32" means fp32.
* fp16 / int8: ``generator.fp16.onnx`` / the QDQ ``generator.int8.onnx``
  (explicit quantization) in a *strongly typed* network: every tensor keeps
  the type the graph gives it, so the preprocessing and the final composition
  stay fp32 and pixels outside the masks stay bit-exact. (A weakly typed
  build with the FP16 flag would be free to round the input image to fp16.)
  The style encoder, whose code needs no exactness, is built with the FP16
  flag.

Engines are cached by ``engines.engine_cache`` (key: ONNX sha256, TensorRT
version, GPU, compute capability, build mode, batch profile) together with
TensorRT's timing cache. Device buffers come from cuda-python, or pycuda
where that is what is installed. ``tensorrt`` is imported only when this
backend is constructed.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engines.base import EngineError
from engines.engine_cache import EngineCache, EngineKey
from ipmnet.weights import GENERATOR_FILES, STYLE_ENCODER, Manifest

log = logging.getLogger("ipmcam")

Shapes = tuple[tuple[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]], ...]


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise EngineError("the TensorRT backend needs the tensorrt package: pip install 'ipmcam[tensorrt]'") from None
    return tensorrt


class CudaRuntime(Protocol):
    """The few CUDA calls the backend needs; addresses are plain ints."""

    device_name: str
    capability: tuple[int, int]
    stream_handle: int

    def malloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def to_device(self, ptr: int, host: np.ndarray) -> None: ...
    def to_host(self, host: np.ndarray, ptr: int) -> None: ...
    def synchronize(self) -> None: ...
    def close(self) -> None: ...


class CudaPythonRuntime:
    """CUDA runtime API through cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` before 12.6)."""

    def __init__(self, device: int = 0) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        self.rt = cudart
        self._call("cudaSetDevice", device)
        props = self._call("cudaGetDeviceProperties", device)
        raw = props.name
        self.device_name = (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)).strip("\x00 ")
        self.capability = (int(props.major), int(props.minor))
        self.stream = self._call("cudaStreamCreate")
        self.stream_handle = int(self.stream)

    def _call(self, fn: str, *args: Any) -> Any:
        err, *rest = getattr(self.rt, fn)(*args)
        if err != self.rt.cudaError_t.cudaSuccess:
            message = self.rt.cudaGetErrorString(err)[1]
            raise EngineError(f"CUDA {fn} failed: {message.decode() if isinstance(message, bytes) else message}")
        return rest[0] if len(rest) == 1 else None

    def malloc(self, nbytes: int) -> int:
        return int(self._call("cudaMalloc", nbytes))

    def free(self, ptr: int) -> None:
        self._call("cudaFree", ptr)

    def to_device(self, ptr: int, host: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync", ptr, host.ctypes.data, host.nbytes, kind, self.stream)

    def to_host(self, host: np.ndarray, ptr: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync", host.ctypes.data, ptr, host.nbytes, kind, self.stream)

    def synchronize(self) -> None:
        self._call("cudaStreamSynchronize", self.stream)

    def close(self) -> None:
        self._call("cudaStreamDestroy", self.stream)


class PyCudaRuntime:
    """The same calls through pycuda, on the device's primary context (the one TensorRT uses)."""

    def __init__(self, device: int = 0) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self.cuda = cuda
        dev = cuda.Device(device)
        self.context = dev.retain_primary_context()
        self.context.push()
        self.device_name = dev.name()
        self.capability = tuple(dev.compute_capability())
        self.stream = cuda.Stream()
        self.stream_handle = int(self.stream.handle)
        self._allocations: dict[int, Any] = {}

    def malloc(self, nbytes: int) -> int:
        alloc = self.cuda.mem_alloc(nbytes)
        self._allocations[int(alloc)] = alloc
        return int(alloc)

    def free(self, ptr: int) -> None:
        self._allocations.pop(ptr).free()

    def to_device(self, ptr: int, host: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(ptr, host, self.stream)

    def to_host(self, host: np.ndarray, ptr: int) -> None:
        self.cuda.memcpy_dtoh_async(host, ptr, self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self.context.pop()


def cuda_runtime(device: int = 0) -> CudaRuntime:
    """cuda-python if installed, else pycuda; EngineError naming both when neither is."""
    try:
        return CudaPythonRuntime(device)
    except ImportError:
        pass
    try:
        return PyCudaRuntime(device)
    except ImportError:
        raise EngineError("the TensorRT backend needs cuda-python (pip install cuda-python) or pycuda") from None


def profile_shapes(onnx_path: Path, max_batch: int, opt_batch: int) -> Shapes:
    """(min, opt, max) shapes of every graph input: batch 1..max_batch, the other axes as exported."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    shapes = []
    for inp in graph.input:
        rest = tuple(d.dim_value for d in inp.type.tensor_type.shape.dim[1:])
        shapes.append((inp.name, ((1, *rest), (opt_batch, *rest), (max_batch, *rest))))
    return tuple(shapes)


def build_plan(trt: Any, onnx_path: Path, mode: str, shapes: Shapes, timing_cache: bytes) -> tuple[bytes, bytes]:
    """Build a serialized engine; ``mode`` is "fp32", "fp16" (builder flag) or "typed" (strongly typed).

    Returns the plan and the updated timing cache.
    """
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # Explicit batch is the only mode in TensorRT 10; the flag left is strong typing.
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if mode == "typed" else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if mode == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif mode == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes:
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    config.set_timing_cache(config.create_timing_cache(timing_cache), False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(f"TensorRT failed to build an engine from {onnx_path} ({mode}); see the TensorRT log above")
    return bytes(plan), bytes(config.get_timing_cache().serialize())


class TrtGraph:
    """One deserialized engine with its execution context and device buffers sized for ``max_batch``."""

    def __init__(self, trt: Any, runtime: Any, cuda: CudaRuntime, plan: bytes, max_batch: int) -> None:
        self.engine = runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise EngineError("TensorRT could not deserialize the engine; delete the engine cache to rebuild it")
        self.context = self.engine.create_execution_context()
        self.cuda = cuda
        self.max_batch = max_batch
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in self.inputs]
        if len(outputs) != 1:
            raise EngineError(f"expected one output tensor, the engine has {outputs}")
        self.output = outputs[0]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        # Size every buffer for the profile's largest shapes, allocated once.
        for n in self.inputs:
            self.context.set_input_shape(n, tuple(self.engine.get_tensor_profile_shape(n, 0)[2]))
        self.buffers: dict[str, int] = {}
        for n in names:
            self.buffers[n] = cuda.malloc(int(np.prod(tuple(self.context.get_tensor_shape(n)))) * self.dtypes[n].itemsize)
            self.context.set_tensor_address(n, self.buffers[n])

    def _run_chunk(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        for name in self.inputs:
            host = np.ascontiguousarray(feeds[name], dtype=self.dtypes[name])
            self.context.set_input_shape(name, host.shape)
            self.cuda.to_device(self.buffers[name], host)
        out = np.empty(tuple(self.context.get_tensor_shape(self.output)), dtype=self.dtypes[self.output])
        if not self.context.execute_async_v3(self.cuda.stream_handle):
            raise EngineError("TensorRT execution failed; see the TensorRT log above")
        self.cuda.to_host(out, self.buffers[self.output])
        self.cuda.synchronize()
        return out

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Run a batch of any size, in chunks of at most ``max_batch``."""
        n = next(iter(feeds.values())).shape[0]
        chunks = [
            self._run_chunk({k: v[i : i + self.max_batch] for k, v in feeds.items()}) for i in range(0, n, self.max_batch)
        ]
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def close(self) -> None:
        for ptr in self.buffers.values():
            self.cuda.free(ptr)
        self.buffers.clear()
        self.context = self.engine = None


#: build modes (see ``build_plan``) of the style encoder and the generator, per precision
BUILD_MODES = {
    "fp32": ("fp32", "fp32"),
    "fp16": ("fp16", "typed"),
    "int8": ("fp16", "typed"),
}


class TensorRTBackend:
    """Style encoder and generator as TensorRT engines, built once per machine and cached."""

    def __init__(
        self,
        manifest: Manifest,
        precision: str = "fp16",
        max_batch: int = 4,
        opt_batch: int = 1,
        cache: EngineCache | None = None,
        device: int = 0,
    ) -> None:
        if precision not in BUILD_MODES:
            raise EngineError(f"unknown precision {precision!r}; choose one of {', '.join(BUILD_MODES)}")
        trt = import_tensorrt()
        generator_file = GENERATOR_FILES[precision]
        manifest.verify([STYLE_ENCODER, generator_file])
        self.cuda = cuda_runtime(device)
        self.cache = cache or EngineCache()
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        style_mode, generator_mode = BUILD_MODES[precision]
        self.name = f"tensorrt-{precision}"
        self.style_graph = self._graph(trt, manifest, STYLE_ENCODER, style_mode, max_batch, opt_batch)
        self.generator_graph = self._graph(trt, manifest, generator_file, generator_mode, max_batch, opt_batch)

    def _graph(self, trt: Any, manifest: Manifest, file: str, mode: str, max_batch: int, opt_batch: int) -> TrtGraph:
        path = manifest.path(file)
        shapes = profile_shapes(path, max_batch, opt_batch)
        key = EngineKey(
            onnx_sha256=manifest.files[file]["sha256"],
            trt_version=trt.__version__,
            gpu_name=self.cuda.device_name,
            compute_capability=self.cuda.capability,
            precision=mode,
            shapes=shapes,
        )

        def build() -> bytes:
            timing = self.cache.load_timing_cache(key.trt_version, key.gpu_name)
            plan, timing = build_plan(trt, path, mode, shapes, timing)
            self.cache.store_timing_cache(key.trt_version, key.gpu_name, timing)
            return plan

        return TrtGraph(trt, self.runtime, self.cuda, self.cache.get_or_build(key, build), max_batch)

    def style(self, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
        return self.style_graph({"image": image, "masks": masks}).astype(np.float32, copy=False)

    def generate(self, image: np.ndarray, masks: np.ndarray, style: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        feeds = {"image": image, "masks": masks, "style": style, "alpha": alpha}
        return self.generator_graph(feeds).astype(np.float32, copy=False)

    def close(self) -> None:
        for graph in (self.style_graph, self.generator_graph):
            graph.close()
        self.cuda.close()
