"""Stand-ins for pycuda, cuda-python, TensorRT and torch.cuda graph capture that enforce CUDA's threading rules.

No GPU is needed, but each fake fails where the real library fails, so code that would break on a user's
GPU breaks here first:

* device state is per host thread: a pycuda context pushed in one thread is not current in another, and
  every pycuda call made with no current context raises ``LogicError(... invalid device context)``;
  ``cudaSetDevice`` (cuda-python) sets the calling thread's device only (default 0);
* memory, streams and engines belong to the device that was current when they were made; using them
  from a thread whose current device differs is an error;
* a graph capture in global mode (torch's default) fails when any other thread launches work while it
  is open; thread-local mode tolerates it.

``FakeGpu`` holds the simulated devices (memory is real host bytes, so copies round-trip) and counts what
is alive, so tests can check that nothing leaks.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import threading
import types
from collections.abc import Iterator
from typing import Any

import numpy as np


class FakeCudaError(RuntimeError):
    """What a real CUDA call reports (pycuda raises LogicError, cuda-python returns an error code)."""


class FakeGpu:
    """Simulated devices shared by the fakes: memory, streams, per-thread current context and device."""

    def __init__(self, devices: int = 2) -> None:
        self.devices = devices
        self._local = threading.local()
        self._lock = threading.Lock()
        self.memory: dict[int, tuple[int, bytearray]] = {}  # pointer -> (device, bytes)
        self.streams: dict[int, int] = {}  # handle -> device
        self._next = 0x10000

    # -- per-thread state -------------------------------------------------------------------------------
    @property
    def stack(self) -> list[Any]:
        """This thread's driver context stack (pycuda pushes and pops it)."""
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def set_device(self, device: int) -> None:
        if not 0 <= device < self.devices:
            raise FakeCudaError("invalid device ordinal")
        self._local.device = device

    def runtime_device(self) -> int:
        """The device runtime-API calls (cuda-python, TensorRT) act on in this thread: a pushed context's,
        else the thread's cudaSetDevice (0 if never set)."""
        return self.stack[-1].device if self.stack else getattr(self._local, "device", 0)

    def driver_device(self, call: str) -> int:
        """The device driver-API calls (pycuda) act on: the current context's; none current is an error."""
        if not self.stack:
            raise FakeCudaError(f"{call} failed: invalid device context")
        return self.stack[-1].device

    # -- resources ---------------------------------------------------------------------------------------
    def _handle(self) -> int:
        with self._lock:
            self._next += 0x1000
            return self._next

    def malloc(self, device: int, nbytes: int) -> int:
        ptr = self._handle()
        self.memory[ptr] = (device, bytearray(nbytes))
        return ptr

    def free(self, device: int, ptr: int) -> None:
        owner, _ = self.memory.get(ptr, (None, None))
        if owner is None:
            raise FakeCudaError("free of an unknown pointer")
        if owner != device:
            raise FakeCudaError("cuMemFree failed: invalid device context (pointer of another device)")
        del self.memory[ptr]

    def stream(self, device: int) -> int:
        handle = self._handle()
        self.streams[handle] = device
        return handle

    def check(self, device: int, stream: int, *ptrs: int) -> None:
        """A call on ``device`` into ``stream`` touching ``ptrs``: all must belong to that device."""
        if self.streams.get(stream) != device:
            raise FakeCudaError("invalid resource handle (stream of another device, or destroyed)")
        for ptr in ptrs:
            if self.memory.get(ptr, (None,))[0] != device:
                raise FakeCudaError("an illegal memory access was encountered (pointer of another device)")

    def copy_in(self, device: int, stream: int, ptr: int, data: bytes) -> None:
        self.check(device, stream, ptr)
        self.memory[ptr][1][: len(data)] = data

    def copy_out(self, device: int, stream: int, ptr: int, nbytes: int) -> bytes:
        self.check(device, stream, ptr)
        return bytes(self.memory[ptr][1][:nbytes])

    def read(self, ptr: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape))
        return np.frombuffer(bytes(self.memory[ptr][1][: count * np.dtype(dtype).itemsize]), dtype).reshape(shape)

    def write(self, ptr: int, array: np.ndarray) -> None:
        data = np.ascontiguousarray(array).tobytes()
        self.memory[ptr][1][: len(data)] = data


# ------------------------------------------------------------------------------------------------ pycuda
def fake_pycuda(gpu: FakeGpu) -> types.ModuleType:
    """A ``pycuda.driver`` whose calls need the calling thread to hold a current context."""
    driver = types.ModuleType("pycuda.driver")

    class LogicError(RuntimeError):
        pass

    def guarded(call: str) -> int:
        try:
            return gpu.driver_device(call)
        except FakeCudaError as exc:
            raise LogicError(str(exc)) from None

    class Context:
        def __init__(self, device: int) -> None:
            self.device = device
            self.retained = 0

        def push(self) -> None:
            if self.retained <= 0:
                raise LogicError("cuCtxPushCurrent failed: context released")
            gpu.stack.append(self)

        @staticmethod
        def pop() -> None:
            if not gpu.stack:
                raise LogicError("cuCtxPopCurrent failed: invalid device context (nothing pushed in this thread)")
            gpu.stack.pop()

        def detach(self) -> None:
            self.retained -= 1

    primaries = [Context(d) for d in range(gpu.devices)]

    class Device:
        def __init__(self, ordinal: int) -> None:
            if not 0 <= ordinal < gpu.devices:
                raise LogicError("cuDeviceGet failed: invalid device ordinal")
            self.ordinal = ordinal

        def name(self) -> str:
            return f"Fake GPU {self.ordinal}"

        def compute_capability(self) -> tuple[int, int]:
            return (8, 9)

        def retain_primary_context(self) -> Context:
            primaries[self.ordinal].retained += 1
            return primaries[self.ordinal]

    class DeviceAllocation:
        def __init__(self, ptr: int, device: int) -> None:
            self.ptr, self.device = ptr, device

        def __int__(self) -> int:
            return self.ptr

        def free(self) -> None:
            try:
                gpu.free(guarded("cuMemFree"), self.ptr)
            except FakeCudaError as exc:
                raise LogicError(str(exc)) from None

    class Stream:
        def __init__(self) -> None:
            self.device = guarded("cuStreamCreate")
            self.handle = gpu.stream(self.device)

        def synchronize(self) -> None:
            if guarded("cuStreamSynchronize") != self.device:
                raise LogicError("cuStreamSynchronize failed: invalid resource handle")

        def __del__(self) -> None:
            gpu.streams.pop(self.handle, None)

    def mem_alloc(nbytes: int) -> DeviceAllocation:
        device = guarded("cuMemAlloc")
        return DeviceAllocation(gpu.malloc(device, nbytes), device)

    def memcpy_htod_async(dest: int, src: np.ndarray, stream: Stream) -> None:
        try:
            gpu.copy_in(guarded("cuMemcpyHtoDAsync"), stream.handle, int(dest), np.ascontiguousarray(src).tobytes())
        except FakeCudaError as exc:
            raise LogicError(str(exc)) from None

    def memcpy_dtoh_async(dest: np.ndarray, src: int, stream: Stream) -> None:
        try:
            data = gpu.copy_out(guarded("cuMemcpyDtoHAsync"), stream.handle, int(src), dest.nbytes)
        except FakeCudaError as exc:
            raise LogicError(str(exc)) from None
        dest.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, np.uint8)

    driver.__dict__.update(init=lambda: None, Device=Device, Context=Context, Stream=Stream, LogicError=LogicError,
                           mem_alloc=mem_alloc, memcpy_htod_async=memcpy_htod_async,
                           memcpy_dtoh_async=memcpy_dtoh_async, primaries=primaries)
    return driver


# ------------------------------------------------------------------------------------------- cuda-python
def fake_cudart(gpu: FakeGpu) -> types.ModuleType:
    """A ``cuda.bindings.runtime``: calls return (error, values...); the device is the calling thread's."""
    rt = types.ModuleType("cuda.bindings.runtime")
    errors = types.SimpleNamespace(cudaSuccess=0, cudaErrorFake=1)
    messages: dict[int, str] = {}

    def call(fn: Any) -> Any:
        def wrapped(*args: Any) -> tuple[Any, ...]:
            try:
                out = fn(*args)
            except FakeCudaError as exc:
                messages[1] = str(exc)
                return (errors.cudaErrorFake,)
            return (errors.cudaSuccess,) if out is None else (errors.cudaSuccess, out)
        return wrapped

    def memcpy(dst: int, src: int, count: int, kind: int, stream: int) -> None:
        device = gpu.runtime_device()
        if kind == 1:  # host to device
            gpu.copy_in(device, int(stream), dst, ctypes.string_at(src, count))
        else:
            ctypes.memmove(dst, gpu.copy_out(device, int(stream), src, count), count)

    def stream_sync(stream: int) -> None:
        gpu.check(gpu.runtime_device(), int(stream))

    def destroy(stream: int) -> None:
        gpu.check(gpu.runtime_device(), int(stream))
        del gpu.streams[int(stream)]

    rt.__dict__.update(
        cudaError_t=errors,
        cudaMemcpyKind=types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2),
        cudaGetErrorString=lambda err: (errors.cudaSuccess, messages.get(err, "no error").encode()),
        cudaSetDevice=call(gpu.set_device),
        cudaGetDeviceCount=call(lambda: gpu.devices),
        cudaGetDeviceProperties=call(lambda d: types.SimpleNamespace(name=f"Fake GPU {d}".encode(), major=8,
                                                                      minor=9)),
        cudaStreamCreate=call(lambda: gpu.stream(gpu.runtime_device())),
        cudaStreamSynchronize=call(stream_sync),
        cudaStreamDestroy=call(destroy),
        cudaMalloc=call(lambda n: gpu.malloc(gpu.runtime_device(), n)),
        cudaFree=call(lambda ptr: gpu.free(gpu.runtime_device(), ptr)),
        cudaMemcpyAsync=call(memcpy),
    )
    return rt


# ---------------------------------------------------------------------------------------------- TensorRT
def fake_tensorrt(gpu: FakeGpu, fail_build: set[str] | None = None) -> types.ModuleType:
    """Just enough of TensorRT 10's Python API for ``TensorRTBackend``.

    An "engine" is the ONNX graph's input and output signature; running it computes
    ``output = image + 0.01 * alpha * sum(masks)`` (generator) or ``style = mean(image)`` per sample
    (style encoder) from the device buffers, on the device current at deserialization. Builds whose ONNX
    file name is in ``fail_build`` return None, as a failed TensorRT build does.
    """
    import onnx

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.99.0-fake"
    trt.loggers = 0
    fail_build = fail_build or set()

    class Logger:
        WARNING = 2

        def __init__(self, severity: int = 2) -> None:
            trt.loggers += 1

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, list[list[int]]] = {}

        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
            self.shapes[name] = [list(lo), list(opt), list(hi)]

    class Network:
        def __init__(self) -> None:
            self.signature: dict[str, Any] = {}

    class Parser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network, self.num_errors = network, 0

        def parse_from_file(self, path: str) -> bool:
            graph = onnx.load(path, load_external_data=False).graph
            dims = lambda v: [d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
            self.network.signature = {"file": path.rsplit("/", 1)[-1], "inputs": {i.name: dims(i) for i in graph.input},
                                      "outputs": {o.name: dims(o) for o in graph.output}}
            return True

    class TimingCache:
        def serialize(self) -> bytes:
            return b"timing"

    class Config:
        def __init__(self) -> None:
            self.flags: set[str] = set()
            self.profiles: list[Profile] = []

        def set_flag(self, flag: str) -> None:
            self.flags.add(flag)

        def clear_flag(self, flag: str) -> None:
            self.flags.discard(flag)

        def add_optimization_profile(self, profile: Profile) -> None:
            self.profiles.append(profile)

        def create_timing_cache(self, data: bytes) -> TimingCache:
            return TimingCache()

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> None:
            pass

        def get_timing_cache(self) -> TimingCache:
            return TimingCache()

    class Builder:
        def __init__(self, logger: Logger) -> None:
            pass

        def create_network(self, flags: int) -> Network:
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
            if network.signature["file"] in fail_build:
                return None
            return json.dumps({**network.signature, "profile": config.profiles[0].shapes}).encode()

    class ExecutionContext:
        def __init__(self, engine: Engine) -> None:
            self.engine, self.shapes, self.addresses = engine, {}, {}

        def set_input_shape(self, name: str, shape: tuple) -> None:
            self.shapes[name] = tuple(shape)

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            if name in self.shapes:
                return self.shapes[name]
            batch = next(iter(self.shapes.values()))[0]
            return (batch, *self.engine.plan["outputs"][name][1:])

        def set_tensor_address(self, name: str, ptr: int) -> None:
            self.addresses[name] = ptr

        def execute_async_v3(self, stream: int) -> bool:
            device = gpu.runtime_device()
            if device != self.engine.device:
                raise FakeCudaError(f"engine of device {self.engine.device} run on device {device}")
            gpu.check(device, stream, *self.addresses.values())
            x = {n: gpu.read(self.addresses[n], np.float32, s) for n, s in self.shapes.items()}
            if "style" in self.engine.plan["outputs"]:
                out = np.repeat(x["image"].mean(axis=(1, 2, 3))[:, None], self.get_tensor_shape("style")[1], 1)
                gpu.write(self.addresses["style"], out.astype(np.float32))
            else:
                change = 0.01 * x["alpha"][:, :, None, None] * x["masks"].sum(axis=1, keepdims=True)
                gpu.write(self.addresses["output"], (x["image"] + change).astype(np.float32))
            return True

    class Engine:
        def __init__(self, plan: dict[str, Any]) -> None:
            self.plan, self.device = plan, gpu.runtime_device()
            self.names = list(plan["inputs"]) + list(plan["outputs"])
            self.num_io_tensors = len(self.names)

        def get_tensor_name(self, i: int) -> str:
            return self.names[i]

        def get_tensor_mode(self, name: str) -> str:
            return "INPUT" if name in self.plan["inputs"] else "OUTPUT"

        def get_tensor_dtype(self, name: str) -> str:
            return "float32"

        def get_tensor_profile_shape(self, name: str, profile: int) -> list[list[int]]:
            return self.plan["profile"][name]

        def create_execution_context(self) -> ExecutionContext:
            return ExecutionContext(self)

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, plan: bytes) -> Engine:
            return Engine(json.loads(bytes(plan)))

    trt.__dict__.update(
        Logger=Logger, Builder=Builder, Runtime=Runtime, OnnxParser=Parser,
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=0),
        BuilderFlag=types.SimpleNamespace(FP16="FP16", TF32="TF32", INT8="INT8",
                                          OBEY_PRECISION_CONSTRAINTS="OBEY"),
        TensorIOMode=types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT"),
        nptype=lambda dtype: np.float32, float32="float32",
    )
    return trt


def fake_trt_output(feeds: dict[str, np.ndarray]) -> np.ndarray:
    """What the fake TensorRT generator computes, on the host."""
    change = 0.01 * feeds["alpha"][:, :, None, None] * feeds["masks"].sum(axis=1, keepdims=True)
    return (feeds["image"] + change).astype(np.float32)


# ---------------------------------------------------------------------------------------- torch.cuda graphs
class FakeCapture:
    """``torch.cuda`` graph capture on CPU tensors, with CUDA's capture-mode rule.

    ``launch()`` is what a kernel launch is to the driver: a model wrapped in ``Launching`` calls it on
    every forward. While a capture is open, a launch from another thread fails in "global" mode (torch's
    default) and invalidates the capture, as cudaStreamCaptureModeGlobal does; "thread_local" lets it be.
    """

    def __init__(self) -> None:
        self.capturing: tuple[int, str] | None = None  # (thread id, mode)
        self.invalidated = False
        self.modes: list[str] = []
        self.capture_started = threading.Event()

    def launch(self) -> None:
        cap = self.capturing
        if cap is not None and cap[0] != threading.get_ident() and cap[1] == "global":
            self.invalidated = True
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    # the parts of torch.cuda that CapturedGenerator uses
    def Stream(self) -> object:  # noqa: N802 - torch's spelling
        return types.SimpleNamespace(wait_stream=lambda other: None)

    def current_stream(self) -> object:
        return self.Stream()

    @contextlib.contextmanager
    def stream(self, s: object) -> Iterator[None]:
        yield

    def CUDAGraph(self) -> object:  # noqa: N802
        return types.SimpleNamespace(replay=lambda: None)

    @contextlib.contextmanager
    def graph(self, graph: object, pool: Any = None, stream: Any = None,
              capture_error_mode: str = "global") -> Iterator[None]:
        self.modes.append(capture_error_mode)
        self.invalidated = False
        self.capturing = (threading.get_ident(), capture_error_mode)
        self.capture_started.set()
        try:
            yield
        finally:
            self.capturing = None
        if self.invalidated:
            raise RuntimeError("CUDA error: operation failed due to a previous error during capture")


class Launching:
    """A model whose forward and ``encode_style`` launch work through ``FakeCapture.launch``.

    ``hold`` (an Event) keeps a forward that runs inside a capture open until it is set or ``hold_for``
    seconds pass, so a test can try to interleave another thread's work with the capture.
    """

    def __init__(self, model: Any, capture: FakeCapture, hold: threading.Event, hold_for: float = 1.0) -> None:
        self.model, self.capture, self.hold, self.hold_for = model, capture, hold, hold_for

    def __call__(self, *inputs: Any) -> Any:
        self.capture.launch()
        if self.capture.capturing is not None:
            self.hold.wait(self.hold_for)
        return self.model(*inputs)

    def encode_style(self, *inputs: Any) -> Any:
        self.capture.launch()
        return self.model.encode_style(*inputs)
