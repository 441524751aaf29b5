"""TensorRT backend: engines built from the exported ONNX graphs, cached on disk, run on a CUDA stream.

* fp32: ``generator.onnx`` with TF32 off, so "fp32" means fp32.
* fp16 / int8: ``generator.fp16.onnx`` / the QDQ ``generator.int8.onnx``
  (explicit quantization) in a *strongly typed* network: every tensor keeps
  the type the graph gives it, so the preprocessing and the final composition
  stay fp32 and pixels outside the masks stay bit-exact. (A weakly typed
  build with the FP16 flag would be free to round the input image to fp16.)
  The style encoder, whose code needs no exactness, is built with the FP16
  flag.

* int8 by implicit calibration (TensorRT 10 only: ``IInt8EntropyCalibrator2``
  is gone from TensorRT 11): with a calibration set (``calibration_set=`` or
  $IPMCAM_TRT_CALIBRATION, a set from ``ipmcam calibrate build-set``) the
  fp32 ``generator.onnx`` is built with the INT8 and FP16 flags and an
  entropy calibrator fed from the set; its scales are kept in a calibration
  cache file next to the engines. The preprocessing and composition layers
  are pinned to fp32, as the QDQ graph keeps them float.

Engines are cached by ``engines.engine_cache`` (key: ONNX sha256, TensorRT
version, GPU, compute capability, build mode, batch profile) together with
TensorRT's timing cache. Device buffers come from cuda-python, or pycuda
where that is what is installed (``engines.cuda_runtime``). Every CUDA and
TensorRT call runs inside ``cuda.activate()``, so the backend can be built on
one thread and run on another (``live``'s generator worker) on any device. A
failed build frees what it had allocated; one ``trt.Logger`` serves every
builder and runtime of the process, as TensorRT requires. ``tensorrt`` is
imported only when this backend is constructed.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ipmcam.engines.calibration_set import load_set
from ipmcam.engines.cuda_runtime import CudaRuntime, cuda_runtime
from ipmcam.engines.engine_cache import EngineCache, EngineKey, atomic_write
from ipmcam.errors import EngineError
from ipmcam.ipmnet.weights import GENERATOR_FILES, STYLE_ENCODER, Manifest

log = logging.getLogger("ipmcam")

Shapes = tuple[tuple[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]], ...]


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise EngineError("the TensorRT backend needs the tensorrt package: pip install 'ipmcam[tensorrt]'") from None
    return tensorrt


@functools.cache
def trt_logger(trt: Any) -> Any:
    """The process's one ``trt.Logger``: TensorRT treats the logger as a singleton that every builder and
    runtime must share, and it must outlive every object made through them."""
    return trt.Logger(trt.Logger.WARNING)


def profile_shapes(onnx_path: Path, max_batch: int, opt_batch: int) -> Shapes:
    """(min, opt, max) shapes of every graph input: batch 1..max_batch, the other axes as exported."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    shapes = []
    for inp in graph.input:
        rest = tuple(d.dim_value for d in inp.type.tensor_type.shape.dim[1:])
        shapes.append((inp.name, ((1, *rest), (opt_batch, *rest), (max_batch, *rest))))
    return tuple(shapes)


def build_plan(trt: Any, onnx_path: Path, mode: str, shapes: Shapes, timing_cache: bytes,
               calibrator: Any = None, calibration_batch: int = 1) -> tuple[bytes, bytes]:
    """Build a serialized engine; ``mode`` is "fp32", "fp16" (builder flag) or "typed" (strongly typed),
    or "int8-calibrated" (INT8 + FP16 flags, ``calibrator`` fed ``calibration_batch`` samples at a time).

    Returns the plan and the updated timing cache.
    """
    logger = trt_logger(trt)
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
    if mode == "int8-calibrated":
        configure_implicit_int8(trt, network, builder, config, shapes, calibrator, calibration_batch)
    config.set_timing_cache(config.create_timing_cache(timing_cache), False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(f"TensorRT failed to build an engine from {onnx_path} ({mode}); see the TensorRT log above")
    return bytes(plan), bytes(config.get_timing_cache().serialize())


class TrtGraph:
    """One deserialized engine with its execution context and device buffers sized for ``max_batch``."""

    def __init__(self, trt: Any, runtime: Any, cuda: CudaRuntime, plan: bytes, max_batch: int) -> None:
        self.cuda = cuda
        self.max_batch = max_batch
        self.buffers: dict[str, int] = {}
        self.engine = runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise EngineError("TensorRT could not deserialize the engine; delete the engine cache to rebuild it")
        try:
            self._bind(trt)
        except BaseException:
            self.close()  # free the buffers allocated before the failure
            raise

    def _bind(self, trt: Any) -> None:
        """Execution context, tensor names and types, one device buffer per tensor at the profile's largest shape."""
        self.context = self.engine.create_execution_context()
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
        for n in names:
            count = int(np.prod(tuple(self.context.get_tensor_shape(n))))
            self.buffers[n] = self.cuda.malloc(count * self.dtypes[n].itemsize)
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
        step = self.max_batch
        chunks = [self._run_chunk({k: v[i : i + step] for k, v in feeds.items()}) for i in range(0, n, step)]
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def close(self) -> None:
        """Free the device buffers and drop the engine (its context first, as TensorRT requires)."""
        buffers, self.buffers = self.buffers, {}
        for ptr in buffers.values():
            self.cuda.free(ptr)
        self.context = None
        self.engine = None


# --------------------------------------------------------------------------- implicit INT8 calibration

#: environment variable naming a calibration set (.npz); with it, precision int8 uses implicit calibration
CALIBRATION_ENV = "IPMCAM_TRT_CALIBRATION"
#: samples per calibration batch, and at most how many samples are fed
CALIBRATION_BATCH = 8
CALIBRATION_SAMPLES = 256
#: ONNX node-name prefixes of the learned networks; every other layer (preprocessing, composition) stays fp32
LEARNED_PREFIXES = ("/enc_id/", "/enc_style/", "/dec/", "/mlp/")


def has_implicit_calibration(trt: Any) -> bool:
    """Whether this TensorRT still offers calibrators (TensorRT 10 does, 11 does not)."""
    return hasattr(trt, "IInt8EntropyCalibrator2")


def calibration_batches(calib: Any, batch: int, limit: int = CALIBRATION_SAMPLES) -> Iterator[dict[str, np.ndarray]]:
    """Full batches of generator feeds from a ``engines.calibration_set.CalibrationSet`` (a short last one is dropped:
    the calibration profile has a fixed batch size)."""
    for feeds in calib.generator_batches(batch, limit):
        if len(feeds["image"]) == batch:
            yield feeds


def make_entropy_calibrator(trt: Any, cuda: CudaRuntime, batches: Iterable[dict[str, np.ndarray]], batch: int,
                            cache_file: Path) -> Any:
    """An ``IInt8EntropyCalibrator2`` that copies each batch to device buffers and caches its scales in ``cache_file``.

    The class is defined here, only once TensorRT is imported, since its base class lives in TensorRT.
    """
    base = getattr(trt, "IInt8EntropyCalibrator2", None)
    if base is None:
        raise EngineError(f"TensorRT {getattr(trt, '__version__', '?')} has no IInt8EntropyCalibrator2")

    class EntropyCalibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.batches = iter(batches)
            self.buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
            self.fed = 0

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str], *_: Any) -> list[int] | None:
            feeds = next(self.batches, None)
            if feeds is None:
                return None
            pointers = []
            for name in names:
                host = np.ascontiguousarray(feeds[name], dtype=np.float32)
                if name not in self.buffers:
                    self.buffers[name] = (cuda.malloc(host.nbytes), host.nbytes)
                ptr, size = self.buffers[name]
                if host.nbytes != size:
                    raise EngineError(f"calibration batch {name} has {host.nbytes} bytes, expected {size}")
                cuda.to_device(ptr, host)
                pointers.append(ptr)
            cuda.synchronize()  # the host arrays die with this frame
            self.fed += 1
            return pointers

        def read_calibration_cache(self) -> bytes | None:
            try:
                data = cache_file.read_bytes()
            except FileNotFoundError:
                return None
            log.info("TensorRT INT8 scales from calibration cache %s", cache_file)
            return data or None

        def write_calibration_cache(self, cache: Any) -> None:
            atomic_write(cache_file, bytes(cache))

        def close(self) -> None:
            for ptr, _ in self.buffers.values():
                cuda.free(ptr)
            self.buffers.clear()

    return EntropyCalibrator()


def configure_implicit_int8(trt: Any, network: Any, builder: Any, config: Any, shapes: Shapes, calibrator: Any,
                            batch: int) -> None:
    """INT8 + FP16 flags, the calibrator with a fixed-batch calibration profile, float layers pinned to fp32."""
    if calibrator is None:
        raise EngineError("an int8-calibrated build needs a calibrator")
    config.set_flag(trt.BuilderFlag.INT8)
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    config.int8_calibrator = calibrator
    profile = builder.create_optimization_profile()
    for name, (lo, _, _) in shapes:
        fixed = (batch, *lo[1:])
        profile.set_shape(name, fixed, fixed, fixed)
    config.set_calibration_profile(profile)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outputs = [layer.get_output(k) for k in range(layer.num_outputs)]
        if not layer.name.startswith(LEARNED_PREFIXES) and outputs and all(o.dtype == trt.float32 for o in outputs):
            layer.precision = trt.float32
            for k in range(layer.num_outputs):
                layer.set_output_type(k, trt.float32)


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
        calibration_set: Path | None = None,
    ) -> None:
        if precision not in BUILD_MODES:
            raise EngineError(f"unknown precision {precision!r}; choose one of {', '.join(BUILD_MODES)}")
        trt = import_tensorrt()
        generator_file = GENERATOR_FILES[precision]
        calibration = calibration_set or os.environ.get(CALIBRATION_ENV) or None
        calibration = Path(calibration) if calibration and precision == "int8" else None
        if calibration is not None:
            generator_file = GENERATOR_FILES["fp32"]  # implicit calibration starts from the float graph
        manifest.verify([STYLE_ENCODER, generator_file])
        self.cache = cache or EngineCache()
        style_mode, generator_mode = BUILD_MODES[precision]
        self.name = f"tensorrt-{precision}" + ("-calibrated" if calibration is not None else "")
        self.graphs: list[TrtGraph] = []
        self.runtime: Any = None
        self.cuda = cuda_runtime(device)
        try:
            with self.cuda.activate():
                self.runtime = trt.Runtime(trt_logger(trt))
                self.style_graph = self._graph(trt, manifest, STYLE_ENCODER, style_mode, max_batch, opt_batch)
                self.generator_graph = self._graph(trt, manifest, generator_file, generator_mode, max_batch,
                                                   opt_batch, calibration)
        except BaseException:
            self.close()  # a failed build leaves no stream, buffer or engine behind
            raise

    def _graph(self, trt: Any, manifest: Manifest, file: str, mode: str, max_batch: int, opt_batch: int,
               calibration: Path | None = None) -> TrtGraph:
        path = manifest.path(file)
        shapes = profile_shapes(path, max_batch, opt_batch)
        if calibration is not None:
            return self._calibrated_graph(trt, manifest, file, shapes, max_batch, calibration)
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

        return self._keep(TrtGraph(trt, self.runtime, self.cuda, self.cache.get_or_build(key, build), max_batch))

    def _keep(self, graph: TrtGraph) -> TrtGraph:
        self.graphs.append(graph)
        return graph

    def _calibrated_graph(self, trt: Any, manifest: Manifest, file: str, shapes: Shapes, max_batch: int,
                          calibration: Path, batch: int = CALIBRATION_BATCH) -> TrtGraph:
        """The fp32 graph built INT8 by implicit calibration on ``calibration`` (a calibration set .npz)."""
        if not has_implicit_calibration(trt):
            raise EngineError(
                f"TensorRT {trt.__version__} has no implicit INT8 calibration (removed in TensorRT 11): unset "
                f"{CALIBRATION_ENV} and use the QDQ generator.int8.onnx from `ipmcam calibrate quantize`"
            )
        try:
            calib = load_set(calibration).with_styles_for(manifest.root)
        except (FileNotFoundError, ValueError) as exc:
            raise EngineError(f"calibration set for TensorRT INT8: {exc}") from None
        onnx_sha = manifest.files[file]["sha256"]
        tag = hashlib.sha256(f"{onnx_sha}|{calib.manifest.get('sha256')}|{batch}".encode()).hexdigest()[:16]
        key = EngineKey(onnx_sha256=onnx_sha, trt_version=trt.__version__, gpu_name=self.cuda.device_name,
                        compute_capability=self.cuda.capability, precision=f"int8-calibrated-{tag}", shapes=shapes)
        cache_file = self.cache.root / f"calibration-{tag}.cache"

        def build() -> bytes:
            calibrator = make_entropy_calibrator(trt, self.cuda, calibration_batches(calib, batch), batch, cache_file)
            try:
                timing = self.cache.load_timing_cache(key.trt_version, key.gpu_name)
                plan, timing = build_plan(trt, manifest.path(file), "int8-calibrated", shapes, timing,
                                          calibrator=calibrator, calibration_batch=batch)
                self.cache.store_timing_cache(key.trt_version, key.gpu_name, timing)
            finally:
                calibrator.close()
            return plan

        return self._keep(TrtGraph(trt, self.runtime, self.cuda, self.cache.get_or_build(key, build), max_batch))

    def style(self, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
        with self.cuda.activate():
            return self.style_graph({"image": image, "masks": masks}).astype(np.float32, copy=False)

    def generate(self, image: np.ndarray, masks: np.ndarray, style: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        feeds = {"image": image, "masks": masks, "style": style, "alpha": alpha}
        with self.cuda.activate():
            return self.generator_graph(feeds).astype(np.float32, copy=False)

    def close(self) -> None:
        """Free every engine and buffer, then the stream (from any thread; twice is harmless)."""
        graphs, self.graphs = self.graphs, []
        if graphs or self.runtime is not None:
            with self.cuda.activate():
                for graph in graphs:
                    graph.close()
                self.runtime = None
        self.cuda.close()
