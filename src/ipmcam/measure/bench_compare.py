"""Timing engines side by side for `ipmcam bench --generator-only --baseline-model-dir`, and their ratios.

A new model's generator cost is worth stating only next to the previously
shipped model's, and only if both saw the same machine. Timed one after the
other, a model measured while another job (a training run, a browser) held
a core looks slower than it is, and a ratio of two such runs says more about
the machine than about the models. So the engines' calls alternate, A, B,
A, B, ...: a change of load lands on both within a call, and the ratio of
their medians stays fair on a busy machine. With one engine ``alternate``
is the plain timing loop, so the single-model benchmark and the comparison
share it.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ipmcam.measure.bench_meter import ResourceMeter, ratio

#: what pairs a main row with its baseline row: the same configuration at the same batch size
PAIR_KEYS = ("engine", "backend", "precision", "engine_name", "batch")


def alternate(calls: Sequence[Callable[[], object]], count: int, warmup: int,
              time_limit: float) -> tuple[list[list[float]], ResourceMeter]:
    """Run ``calls`` in turn, ``warmup`` rounds forgotten, then ``count`` measured rounds.

    A measured round calls each once, in order, and keeps each one's duration
    (ms). ``time_limit`` (s, 0: none) ends the measured rounds early so a
    slow engine still finishes; whole rounds only, so every call has as many
    durations as the others. The meter covers the measured rounds of all
    the calls together.
    """
    for _ in range(warmup):
        for call in calls:
            call()
    meter = ResourceMeter()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(count):
        for call, spent in zip(calls, times):
            start = time.perf_counter()
            call()
            spent.append((time.perf_counter() - start) * 1000.0)
        if time_limit > 0 and time.perf_counter() - meter.wall0 >= time_limit:
            break
    return times, meter


def generator_ratios(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration and batch size timed beside a baseline: main ms per face over baseline's, p50 and mean.

    Below 1 the main model is cheaper. Rows without a ``model`` mark (timed
    alone) have no partner and give no ratio.
    """
    baselines = {tuple(r[k] for k in PAIR_KEYS): r for r in rows if r.get("model") == "baseline"}
    out = []
    for row in rows:
        base = baselines.get(tuple(row[k] for k in PAIR_KEYS)) if row.get("model") == "main" else None
        if base is None:
            continue
        out.append({
            **{k: row[k] for k in PAIR_KEYS},
            "model_dir": row["model_dir"], "baseline_model_dir": base["model_dir"],
            "p50": ratio(row["ms_per_face"]["p50"], base["ms_per_face"]["p50"]),
            "mean": ratio(row["ms_per_face"]["mean"], base["ms_per_face"]["mean"]),
        })
    return out
