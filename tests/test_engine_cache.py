"""TensorRT engine cache: keys, atomic writes, corruption detection. Pure Python, no GPU needed."""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import pytest

from ipmcam.engines import engine_cache
from ipmcam.engines.engine_cache import EngineCache, EngineKey, atomic_write, default_cache_dir

KEY = EngineKey(
    onnx_sha256="ab" * 32,
    trt_version="10.7.0",
    gpu_name="NVIDIA H100 80GB HBM3",
    compute_capability=(9, 0),
    precision="fp16",
    shapes=(("image", ((1, 3, 256, 256), (1, 3, 256, 256), (4, 3, 256, 256))),),
)


@pytest.mark.parametrize(
    "change",
    [
        {"onnx_sha256": "cd" * 32},
        {"trt_version": "10.8.0"},
        {"gpu_name": "NVIDIA GeForce RTX 4090"},
        {"compute_capability": (8, 9)},
        {"precision": "typed"},
        {"shapes": (("image", ((1, 3, 256, 256), (2, 3, 256, 256), (4, 3, 256, 256))),)},
    ],
)
def test_key_changes_with_each_component(change) -> None:
    assert dataclasses.replace(KEY, **change).digest() != KEY.digest()
    assert dataclasses.replace(KEY).digest() == KEY.digest()


def test_cache_dir_honours_env_and_platform(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("IPMCAM_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("IPMCAM_CACHE_DIR")
    monkeypatch.setattr(engine_cache.sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "ipmcam" / "engines"
    monkeypatch.setattr(engine_cache.sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert default_cache_dir() == tmp_path / "local" / "ipmcam" / "engines"
    monkeypatch.setattr(engine_cache.sys, "platform", "darwin")
    assert default_cache_dir() == Path.home() / "Library" / "Caches" / "ipmcam" / "engines"


def test_round_trip_and_stale_key_misses(tmp_path) -> None:
    cache = EngineCache(tmp_path)
    assert cache.load(KEY) is None
    cache.store(KEY, b"plan-bytes")
    assert cache.load(KEY) == b"plan-bytes"
    assert cache.load(dataclasses.replace(KEY, trt_version="11.0.0")) is None


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    target = tmp_path / "x.engine"
    atomic_write(target, b"old complete engine")

    def crash(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"new engine that never lands")
    assert target.read_bytes() == b"old complete engine"
    assert [p.name for p in tmp_path.iterdir()] == ["x.engine"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupt_entry_is_deleted_and_rebuilt(tmp_path, caplog, damage) -> None:
    cache = EngineCache(tmp_path)
    path = cache.store(KEY, b"\x01" * 1000)
    blob = path.read_bytes()
    path.write_bytes(
        {"truncate": blob[:-100], "flip": blob[:-1] + b"\x02", "garbage": b"not an engine"}[damage]
    )
    builds: list[int] = []

    def build() -> bytes:
        builds.append(1)
        return b"\x03" * 500

    with caplog.at_level(logging.WARNING, logger="ipmcam"):
        assert cache.get_or_build(KEY, build) == b"\x03" * 500
    assert builds == [1]
    assert "corrupt or truncated" in caplog.text
    assert cache.load(KEY) == b"\x03" * 500
    assert cache.get_or_build(KEY, build) == b"\x03" * 500
    assert builds == [1]  # second call is a cache hit


def test_timing_cache_round_trip(tmp_path) -> None:
    cache = EngineCache(tmp_path)
    assert cache.load_timing_cache("10.7.0", "gpu") == b""
    cache.store_timing_cache("10.7.0", "gpu", b"timings")
    assert cache.load_timing_cache("10.7.0", "gpu") == b"timings"
    assert cache.load_timing_cache("10.8.0", "gpu") == b""
