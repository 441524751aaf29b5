"""Per-stage timing of the pipeline: the numbers behind `ipmcam bench` and the stats overlay."""
from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

#: The stages a frame goes through, in order.
STAGES = ("capture", "landmarks", "align", "style", "generator", "blend", "sink")


class StageClock:
    """Keeps the last ``window`` durations (ms) of every stage and of end-to-end latency."""

    def __init__(self, window: int = 10_000) -> None:
        self.window = window
        self.samples: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=self.window))
        self.enabled = True

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record(name, (time.perf_counter() - start) * 1000.0)

    def record(self, name: str, ms: float) -> None:
        if self.enabled:
            self.samples[name].append(ms)

    def reset(self) -> None:
        """Forget everything so far (end of warm-up)."""
        self.samples.clear()

    def summary(self) -> dict[str, dict[str, float]]:
        """p50/p95/p99/mean (ms) and count for every stage seen."""
        out = {}
        for name, values in self.samples.items():
            arr = np.fromiter(values, dtype=np.float64)
            if arr.size == 0:
                continue
            p50, p95, p99 = np.percentile(arr, [50, 95, 99])
            out[name] = {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(arr.mean()),
                         "count": int(arr.size)}
        return out
