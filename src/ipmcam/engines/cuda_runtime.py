"""The few CUDA calls the TensorRT backend makes, through cuda-python or pycuda, safe from any thread.

CUDA's notion of "current" is per host thread: ``cudaSetDevice`` sets the
device of the calling thread only, and a driver context pushed in one thread
is not current in another. The backend is built on the main thread and runs
in ``live``'s generator worker, so every call goes through ``activate()``,
which makes this runtime's device (cuda-python) or context (pycuda) current
in the calling thread for the duration of the call:

* cuda-python: ``cudaSetDevice(device)`` in the calling thread (a no-op
  when it is already that device), so a device other than 0 is honoured in
  the worker too;
* pycuda: the device's primary context (the one the CUDA runtime, and so
  TensorRT, uses) pushed on entry and popped on exit. Activations nest; only
  the outermost pushes and pops, so a thread never leaves a context behind.

cuda-python and pycuda are imported only when a runtime is created (they are
optional extras: ``ipmcam[tensorrt]`` brings cuda-python, ``ipmcam[pycuda]``
pycuda).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ContextManager, Protocol

import numpy as np

from ipmcam.errors import EngineError


class CudaRuntime(Protocol):
    """What the TensorRT backend needs; addresses are plain ints. Every call may come from any thread."""

    device_name: str
    capability: tuple[int, int]
    stream_handle: int

    def activate(self) -> ContextManager[None]:
        """Make this runtime's device current in the calling thread until the block ends."""

    def malloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def to_device(self, ptr: int, host: np.ndarray) -> None: ...
    def to_host(self, host: np.ndarray, ptr: int) -> None: ...
    def synchronize(self) -> None: ...
    def close(self) -> None: ...


def _import_cudart() -> Any:
    """``cuda.bindings.runtime`` (cuda-python 12.6 and later), else the older ``cuda.cudart``."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart
    return cudart


class CudaPythonRuntime:
    """CUDA runtime API through cuda-python."""

    def __init__(self, device: int = 0) -> None:
        self.rt = _import_cudart()
        self.device = device
        self.stream: Any = None
        with self.activate():
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

    @contextmanager
    def activate(self) -> Iterator[None]:
        self._call("cudaSetDevice", self.device)
        yield

    def malloc(self, nbytes: int) -> int:
        with self.activate():
            return int(self._call("cudaMalloc", nbytes))

    def free(self, ptr: int) -> None:
        with self.activate():
            self._call("cudaFree", ptr)

    def to_device(self, ptr: int, host: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        with self.activate():
            self._call("cudaMemcpyAsync", ptr, host.ctypes.data, host.nbytes, kind, self.stream)

    def to_host(self, host: np.ndarray, ptr: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        with self.activate():
            self._call("cudaMemcpyAsync", host.ctypes.data, ptr, host.nbytes, kind, self.stream)

    def synchronize(self) -> None:
        with self.activate():
            self._call("cudaStreamSynchronize", self.stream)

    def close(self) -> None:
        if self.stream is not None:
            with self.activate():
                self._call("cudaStreamDestroy", self.stream)
            self.stream = None


class PyCudaRuntime:
    """The same calls through pycuda, on the device's primary context (the one TensorRT uses)."""

    def __init__(self, device: int = 0) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self.cuda = cuda
        dev = cuda.Device(device)
        self.device_name = dev.name()
        self.capability = tuple(dev.compute_capability())
        self.context = dev.retain_primary_context()
        self._depth = threading.local()  # activations open in each thread
        self._allocations: dict[int, Any] = {}
        self.stream: Any = None
        try:
            with self.activate():
                self.stream = cuda.Stream()
        except BaseException:
            self.context.detach()
            raise
        self.stream_handle = int(self.stream.handle)

    @contextmanager
    def activate(self) -> Iterator[None]:
        depth = getattr(self._depth, "n", 0)
        if depth == 0:
            self.context.push()
        self._depth.n = depth + 1
        try:
            yield
        finally:
            self._depth.n = depth
            if depth == 0:
                self.cuda.Context.pop()

    def malloc(self, nbytes: int) -> int:
        with self.activate():
            alloc = self.cuda.mem_alloc(nbytes)
        self._allocations[int(alloc)] = alloc
        return int(alloc)

    def free(self, ptr: int) -> None:
        with self.activate():
            self._allocations.pop(ptr).free()

    def to_device(self, ptr: int, host: np.ndarray) -> None:
        with self.activate():
            self.cuda.memcpy_htod_async(ptr, host, self.stream)

    def to_host(self, host: np.ndarray, ptr: int) -> None:
        with self.activate():
            self.cuda.memcpy_dtoh_async(host, ptr, self.stream)

    def synchronize(self) -> None:
        with self.activate():
            self.stream.synchronize()

    def close(self) -> None:
        """Free what is left, drop the stream and release the primary context (from any thread)."""
        if self.stream is None:
            return
        with self.activate():
            for alloc in self._allocations.values():
                alloc.free()
            self._allocations.clear()
            self.stream = None
        self.context.detach()


def cuda_runtime(device: int = 0) -> CudaRuntime:
    """cuda-python if installed, else pycuda; EngineError naming both when neither is."""
    try:
        return CudaPythonRuntime(device)
    except ImportError:
        pass
    try:
        return PyCudaRuntime(device)
    except ImportError:
        raise EngineError("the TensorRT backend needs cuda-python (pip install 'ipmcam[tensorrt]') "
                          "or pycuda (pip install 'ipmcam[pycuda]')") from None
