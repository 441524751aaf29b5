"""What a measured span of ``ipmcam bench`` costs, and how its durations are summarised.

Apart from the runner (``measure.bench``) so that the generator comparison
(``measure.bench_compare``) shares these figures with it without importing
the runner back.
"""
from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np


class ResourceMeter:
    """CPU time, peak resident memory and GPU memory over a measured span of this process."""

    def __init__(self) -> None:
        self.rss_scope = "process"
        self.start()

    def start(self) -> None:
        t = os.times()
        self.cpu0, self.wall0 = t.user + t.system, time.perf_counter()
        self.rss_scope = "run" if _reset_peak_rss() else "process"
        _reset_gpu_peak()

    def cpu_percent(self, wall_end: float | None = None) -> float:
        t = os.times()
        wall = (wall_end or time.perf_counter()) - self.wall0
        return 100.0 * (t.user + t.system - self.cpu0) / wall if wall > 0 else 0.0

    def peak_rss_mb(self) -> float:
        return _peak_rss_mb()

    def gpu_memory_mb(self) -> float | None:
        return _gpu_peak_mb()


def _reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _torch_cuda() -> Any:
    """The torch module when it is already imported and has initialised CUDA, else None (never imports torch)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return torch if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    except Exception:  # noqa: BLE001 - a broken CUDA set-up means "no GPU figure"
        return None


def _reset_gpu_peak() -> None:
    torch = _torch_cuda()
    if torch is not None:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _gpu_peak_mb() -> float | None:
    torch = _torch_cuda()
    if torch is None:
        return None
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def percentiles(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, np.float64)
    if arr.size == 0:
        return {"p50": math.nan, "p95": math.nan, "p99": math.nan, "mean": math.nan, "count": 0}
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(arr.mean()), "count": int(arr.size)}


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None where either figure is missing or NaN or ``b`` is zero (nothing to compare)."""
    return a / b if a is not None and b and not math.isnan(a) and not math.isnan(b) else None
