"""Per-stage timing of the pipeline: the numbers behind `ipmcam bench` and the stats overlay."""
from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np

#: The stages a frame goes through, in order.
STAGES = ("capture", "landmarks", "align", "style", "generator", "blend", "sink")
#: Per-frame stages in pipeline order, with the label shown in tables and charts.
FRAME_STAGES: tuple[tuple[str, str], ...] = (
    ("capture", "capture / decode"),
    ("landmarks", "landmarks"),
    ("align", "align + masks"),
    ("generator", "generator"),
    ("blend", "inverse warp + blend"),
    ("sink", "sink"),
)
#: Stages that run once per reference, not per frame.
ONCE_STAGES: tuple[tuple[str, str], ...] = (("style", "style encode (once)"),)
#: The generator's own time in the asynchronous worker thread (off the frame's path).
WORKER_STAGE = "generator_worker"
LATENCY = "latency"
STAGE_LABELS: dict[str, str] = dict(FRAME_STAGES + ((WORKER_STAGE, "generator (async worker)"),) + ONCE_STAGES
                                    + ((LATENCY, "end-to-end latency"),))


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


def ordered_stages(names: Sequence[str]) -> list[str]:
    """Stage names in pipeline order (unknown ones sorted after them), end-to-end latency last."""
    known = [n for n, _ in FRAME_STAGES] + [WORKER_STAGE] + [n for n, _ in ONCE_STAGES]
    rest = sorted(n for n in names if n not in known and n != LATENCY)
    out = [n for n in known if n in names] + rest
    return out + ([LATENCY] if LATENCY in names else [])


def format_stages(summary: Mapping[str, Mapping[str, float]]) -> list[str]:
    """One line per stage of a ``StageClock.summary()``, in pipeline order, latency last.

    >>> format_stages({"landmarks": {"p50": 8.6, "p95": 11.72}, "blend": {"p50": 1.0, "p95": 2.0}})
    ['landmarks  p50 8.6 ms  p95 11.7 ms', 'blend      p50 1.0 ms  p95 2.0 ms']

    Stages missing a p50 or p95 are left out; names are padded to line up.
    """
    names = [n for n in ordered_stages(list(summary)) if "p50" in summary[n] and "p95" in summary[n]]
    width = max((len(n) for n in names), default=0)
    return [f"{n:<{width}}  p50 {summary[n]['p50']:.1f} ms  p95 {summary[n]['p95']:.1f} ms" for n in names]
