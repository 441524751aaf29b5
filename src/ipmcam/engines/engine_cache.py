"""On-disk cache of built TensorRT engines (and the builder's timing cache).

Building an engine takes minutes; loading one takes milliseconds. An engine
is only valid for the exact ONNX graph, TensorRT version, GPU, precision and
batch profile it was built for, so all of these go into the key: a change in
any of them misses the cache and triggers a build, and stale entries are
simply never read again.

Entries are written atomically (temp file in the same folder, fsync,
``os.replace``) so a crash mid-write never leaves a half file under the
real name, and each carries a header with the payload's length and sha256,
so a file truncated or damaged later is detected, deleted and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger("ipmcam")

MAGIC = b"IPMCAM-ENGINE\x01"
_HEADER = struct.Struct(f"<{len(MAGIC)}sQ32s")  # magic, payload length, payload sha256


def default_cache_dir() -> Path:
    """$IPMCAM_CACHE_DIR, else the platform's user cache folder + ipmcam/engines."""
    override = os.environ.get("IPMCAM_CACHE_DIR")
    if override:
        return Path(override)
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache")
    return base / "ipmcam" / "engines"


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized TensorRT engine depends on.

    ``shapes`` maps each input name to its (min, opt, max) shapes of the
    optimisation profile.
    """

    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    precision: str
    shapes: tuple[tuple[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]], ...]

    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file, or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def pack(payload: bytes) -> bytes:
    return _HEADER.pack(MAGIC, len(payload), hashlib.sha256(payload).digest()) + payload


def unpack(blob: bytes) -> bytes | None:
    """The payload of a packed entry, or None if the header, length or checksum is wrong."""
    if len(blob) < _HEADER.size:
        return None
    magic, length, digest = _HEADER.unpack_from(blob)
    payload = blob[_HEADER.size :]
    if magic != MAGIC or length != len(payload) or hashlib.sha256(payload).digest() != digest:
        return None
    return payload


class EngineCache:
    """Serialized engines by key under ``root`` (default: ``default_cache_dir()``)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, key: EngineKey) -> Path:
        return self.root / f"{key.digest()}.engine"

    def load(self, key: EngineKey) -> bytes | None:
        """The cached engine for ``key``; None on a miss or when the entry is corrupt (then it is deleted)."""
        path = self.path(key)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        payload = unpack(blob)
        if payload is None:
            log.warning("cached TensorRT engine %s is corrupt or truncated; deleting it and rebuilding", path)
            path.unlink(missing_ok=True)
        return payload

    def store(self, key: EngineKey, payload: bytes) -> Path:
        path = self.path(key)
        atomic_write(path, pack(payload))
        return path

    def get_or_build(self, key: EngineKey, build: Callable[[], bytes]) -> bytes:
        """The cached engine, or ``build()``'s result, stored for next time."""
        payload = self.load(key)
        if payload is not None:
            log.info("TensorRT engine from cache %s", self.path(key))
            return payload
        log.info("building TensorRT engine (%s, cached at %s)", key.precision, self.path(key))
        payload = build()
        self.store(key, payload)
        return payload

    def timing_cache_path(self, trt_version: str, gpu_name: str) -> Path:
        """Builder timing cache, shared by all engines built with one TensorRT on one GPU."""
        tag = hashlib.sha256(f"{trt_version}|{gpu_name}".encode()).hexdigest()[:16]
        return self.root / f"timing-{tag}.cache"

    def load_timing_cache(self, trt_version: str, gpu_name: str) -> bytes:
        """Saved timing cache bytes, or b"" (TensorRT's "start empty") if absent or damaged."""
        try:
            return unpack(self.timing_cache_path(trt_version, gpu_name).read_bytes()) or b""
        except FileNotFoundError:
            return b""

    def store_timing_cache(self, trt_version: str, gpu_name: str, data: bytes) -> None:
        atomic_write(self.timing_cache_path(trt_version, gpu_name), pack(data))
