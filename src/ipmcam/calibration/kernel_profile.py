"""Where the generator's time goes, fp32 against INT8, and the most INT8 could save.

INT8 makes the convolutions faster and nothing else: the preprocessing, the
region painting, the decoder's instance norms and the composition run in
float in both graphs, and the INT8 graph adds quantize/dequantize nodes
around the convolutions. So the end-to-end speed-up is bounded by how much
of the fp32 time is convolution. This module reads that from
onnxruntime's profiler events (``report.kernel_times`` records them), per
class of operator:

* ``conv``: Conv and QLinearConv kernels (the fp32 graph's activations are
  fused into its convolutions);
* ``layout``: the reorders around fp32's blocked convolutions and the
  transposes around INT8's channels-last ones;
* ``quantize``: QuantizeLinear and DequantizeLinear;
* ``other``: everything else.

``ceiling``: the speed-up if INT8 changed nothing but the convolution
kernels (no quantize/dequantize, the rest as fast as fp32's):
``fp32 total / (fp32 total - fp32 conv + int8 conv)``. It says how far
quantizing the convolutions can take the graph on this CPU, and so whether
the float work around them is what to shrink. An estimate, not a bound:
kernel times leave out the time between kernels (dispatch, waking the
worker threads), so they add up to less than the wall time (the report's
latency section has that), and what INT8 runs besides the convolutions
(the Relu lookups, ``quantize.int8_relus``) can be cheaper than its float
counterpart.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping

import numpy as np

CONV_OPS = frozenset({"Conv", "QLinearConv", "FusedConv"})
LAYOUT_OPS = frozenset({"Transpose", "ReorderInput", "ReorderOutput"})
QUANTIZE_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
KERNEL_SUFFIX = "_kernel_time"


def op_class(op_type: str) -> str:
    """The class (conv, layout, quantize, other) an operator's kernel time is counted in."""
    if op_type in CONV_OPS:
        return "conv"
    if op_type in LAYOUT_OPS:
        return "layout"
    if op_type in QUANTIZE_OPS:
        return "quantize"
    return "other"


def kernel_ms_per_run(events: Iterable[Mapping[str, Any]], skip_runs: int) -> dict[str, float]:
    """Mean kernel milliseconds per run and operator class, from onnxruntime profiler events.

    The first ``skip_runs`` runs (warm-up) are left out: a kernel counts if it
    starts inside one of the later ``model_run`` spans.
    """
    events = list(events)
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[skip_runs:]
    if not runs:
        raise ValueError(f"the profile holds no run after the first {skip_runs}")
    starts = np.array([start for start, _ in runs])
    ends = np.array([end for _, end in runs])
    totals: Counter[str] = Counter()
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith(KERNEL_SUFFIX):
            continue
        i = int(np.searchsorted(starts, e["ts"], side="right")) - 1
        if i >= 0 and e["ts"] <= ends[i]:
            totals[op_class(e["args"]["op_name"])] += e["dur"]
    return {name: round(totals[name] / 1e3 / len(runs), 3) for name in ("conv", "layout", "quantize", "other")}


def speedups(fp32: Mapping[str, float], int8: Mapping[str, float]) -> dict[str, float]:
    """Kernel-time speed-ups of INT8 over fp32: convolutions alone, all kernels, and the ceiling."""
    total32, total8 = sum(fp32.values()), sum(int8.values())
    return {
        "conv_speedup": round(fp32["conv"] / int8["conv"], 3),
        "kernel_speedup": round(total32 / total8, 3),
        "ceiling": round(total32 / (total32 - fp32["conv"] + int8["conv"]), 3),
        "conv_share_fp32": round(fp32["conv"] / total32, 3),
    }


def summary(events: Mapping[str, Iterable[Mapping[str, Any]]], runs: int, skip_runs: int) -> dict[str, Any]:
    """Kernel time per operator class of the fp32 and int8 graphs, from each one's profiler ``events``
    (the first ``skip_runs`` runs are warm-up), and the speed-ups ``speedups`` derives from them."""
    kernels = {name: kernel_ms_per_run(graph_events, skip_runs) for name, graph_events in events.items()}
    return {"kernel_ms": kernels, "runs": runs, **speedups(kernels["fp32"], kernels["int8"])}
