"""What `ipmcam bench` prints and writes: the terminal tables, the JSON report and the bar charts.

Everything here works on the plain report dictionary built by
``measure.bench`` (the layout ``docs/bench_schema.json`` describes), so a
saved JSON can be re-rendered. ``format_stages`` is the one-line-per-stage
text of the live stats overlay lives with the stage names in
``realtime.stages``. Imports stay light: rich and
matplotlib are loaded only when a table or a chart is made.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ipmcam.realtime.stages import FRAME_STAGES, ONCE_STAGES, STAGE_LABELS, WORKER_STAGE, ordered_stages

SCHEMA_ID = "ipmcam-bench/1"

#: Stages whose cost could grow with the frame size; their large/small size ratio is highlighted.
SIZE_STAGES: tuple[str, ...] = ("align", "blend")

#: One colour per stage in the charts (stable across runs, so charts compare at a glance).
_COLOURS = {"capture": "#9e9e9e", "landmarks": "#1f77b4", "align": "#ff7f0e", "generator": "#d62728",
            "blend": "#2ca02c", "sink": "#8c564b", "other": "#e0e0e0"}


# --------------------------------------------------------------------------- JSON


def jsonable(value: Any, digits: int = 4) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN/inf to null, floats rounded, paths to strings."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, digits) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, digits)
    return value


def write_json(report: Mapping[str, Any], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(report), indent=1, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- tables


def config_label(run: Mapping[str, Any]) -> str:
    """"classic", or "ipmnet/onnxruntime fp32" (the engine's own name and its precision).

    A generator row of the ``--baseline-model-dir`` model says so ("... baseline"), so that it is
    neither mistaken for nor grouped with the main model's row of the same configuration.
    """
    name = str(run.get("engine_name") or run["engine"])
    precision = run.get("precision")
    label = f"{name} {precision}" if precision and precision not in name else name
    return f"{label} baseline" if run.get("model") == "baseline" else label


def _ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _pp(stats: Mapping[str, float] | None) -> str:
    """"p50 / p95" of a stage summary, in ms."""
    if not stats:
        return "–"
    return f"{_ms(stats.get('p50'))} / {_ms(stats.get('p95'))}"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"×{value:.2f}"


def pipeline_tables(report: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]], str]]:
    """(title, header, rows, caption) per engine configuration: stages down, frame sizes across."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for run in report.get("runs", []):
        groups.setdefault(config_label(run), []).append(run)
    ratios = {config_label(r): r for r in report.get("ratios", [])}
    out = []
    for label, runs in groups.items():
        ratio = ratios.get(label)
        header = ["stage (ms p50 / p95)", *(r["size_label"] for r in runs)]
        if ratio:
            header.append(f"{ratio['to']} / {ratio['from']}")
        present = ordered_stages(sorted({n for r in runs for n in r["stages"]}))
        rows: list[list[str]] = []
        for name in present:
            cells = [STAGE_LABELS.get(name, name)]
            for r in runs:
                stats = r["stages"].get(name)
                cells.append(_ms(stats["mean"]) if name == "style" and stats else _pp(stats))
            if ratio:
                cells.append(_ratio(ratio["stages"].get(name)) if name != "style" else "")
            rows.append(cells)
        extra = [
            ("end-to-end latency", lambda r: _pp(r.get("latency")), "latency"),
            ("throughput (fps)", lambda r: f"{r['throughput_fps']:.1f}", "throughput"),
            ("frames out / dropped", lambda r: f"{r['frames_out']} / {r['frames_dropped']}", None),
            ("frames with a face", lambda r: f"{r['frames_with_face']}", None),
            *([("generator calls (async)", lambda r: f"{r['generator_calls']}", None)]
              if any(r.get("async_inference") for r in runs) else []),
            ("CPU % (100 = one core)", lambda r: f"{r['cpu_percent']:.0f}", None),
            ("peak RSS (MB)", lambda r: f"{r['peak_rss_mb']:.0f}", None),
            ("GPU memory (MB)", lambda r: "–" if r.get("gpu_memory_mb") is None else f"{r['gpu_memory_mb']:.0f}",
             None),
        ]
        for title, cell, key in extra:
            cells = [title, *(cell(r) for r in runs)]
            if ratio:
                cells.append(_ratio(ratio.get(key)) if key == "latency" else
                             (_ratio(ratio.get("throughput")) if key == "throughput" else ""))
            rows.append(cells)
        caption = ""
        if ratio:
            caption = (f"{ratio['to']} / {ratio['from']}: frame area ×{ratio['frame_area']:.2f}, "
                       f"face area ×{ratio['face_area']:.2f}" if ratio.get("face_area") is not None else
                       f"{ratio['to']} / {ratio['from']}: frame area ×{ratio['frame_area']:.2f}")
        out.append((label, header, rows, caption))
    return out


def generator_table(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["engine", "batch", "ms/call p50", "p95", "ms/face p50", "p95", "faces/s", "CPU %", "GPU MB"]
    rows = []
    for g in report.get("generator", []):
        rows.append([config_label(g), str(g["batch"]), _ms(g["ms_per_call"]["p50"]), _ms(g["ms_per_call"]["p95"]),
                     _ms(g["ms_per_face"]["p50"]), _ms(g["ms_per_face"]["p95"]), f"{g['faces_per_second']:.1f}",
                     f"{g['cpu_percent']:.0f}",
                     "–" if g.get("gpu_memory_mb") is None else f"{g['gpu_memory_mb']:.0f}"])
    return header, rows


def generator_ratio_table(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]], str]:
    """Main model over baseline, ms per face, per configuration and batch size; the two directories as caption."""
    header = ["engine", "batch", "main / baseline p50", "mean"]
    ratios = report.get("generator_ratios", [])
    rows = [[config_label(r), str(r["batch"]), _ratio(r["p50"]), _ratio(r["mean"])] for r in ratios]
    dirs = sorted({(r["model_dir"], r["baseline_model_dir"]) for r in ratios})
    caption = ("; ".join(f"main {main}, baseline {base}" for main, base in dirs)
               + " (calls alternating; below ×1 the main model is cheaper)")
    return header, rows, caption


def _rich_table(title: str, header: list[str], rows: list[list[str]], caption: str = "") -> Any:
    from rich.table import Table

    table = Table(title=title, caption=caption or None, title_justify="left", caption_justify="left")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=i > 0)
    for r in rows:
        table.add_row(*r)
    return table


def print_report(report: Mapping[str, Any], console: Any = None) -> None:
    """The tables, then what was skipped and any notes."""
    from rich.console import Console

    if console is None:
        console = Console()
        if not console.is_terminal:  # piped or captured: no width to honour, so no wrapping
            console = Console(width=240)
    for title, header, rows, caption in pipeline_tables(report):
        console.print(_rich_table(title, header, rows, caption))
    if report.get("generator"):
        header, rows = generator_table(report)
        console.print(_rich_table("generator only (real aligned crops)", header, rows))
    if report.get("generator_ratios"):
        header, rows, caption = generator_ratio_table(report)
        console.print(_rich_table("generator: main model / baseline model, ms per face", header, rows, caption))
    for skip in report.get("skipped", []):
        what = "/".join(str(v) for v in (skip["engine"], skip.get("backend"), skip.get("precision")) if v)
        console.print(f"skipped {what}: {skip['reason']}", highlight=False, soft_wrap=True)
    for note in report.get("notes", []):
        console.print(f"note: {note}", highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- charts


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global backend, no display needed

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def plot_pipeline(report: Mapping[str, Any], path: Path) -> None:
    """Stacked bars of mean ms per frame stage, one bar per engine configuration and frame size.

    The pale segment on top ("other") is the rest of the frame time,
    1000 / throughput minus the timed stages: the pipeline's own bookkeeping.
    """
    runs = list(report.get("runs", []))
    fig = _figure(max(6.0, 1.5 * len(runs) + 2.5), 5.0)
    ax = fig.add_subplot()
    labels = [f"{config_label(r).replace(' ', chr(10))}\n{r['size_label']}" for r in runs]
    x = list(range(len(runs)))
    bottom = [0.0] * len(runs)
    stages = [n for n, _ in FRAME_STAGES] + sorted({n for r in runs for n in r["stages"]}
                                                    - {n for n, _ in FRAME_STAGES + ONCE_STAGES} - {WORKER_STAGE})
    for name in stages:
        values = [(r["stages"].get(name) or {}).get("mean") or 0.0 for r in runs]
        if not any(values):
            continue
        ax.bar(x, values, bottom=bottom, label=STAGE_LABELS.get(name, name), color=_COLOURS.get(name))
        bottom = [b + v for b, v in zip(bottom, values)]
    other = [max(1000.0 / r["throughput_fps"] - b, 0.0) if r["throughput_fps"] else 0.0 for r, b in zip(runs, bottom)]
    if any(v > 0.05 for v in other):
        ax.bar(x, other, bottom=bottom, label="other (1000/fps − stages)", color=_COLOURS["other"])
    for xi, r, b, o in zip(x, runs, bottom, other):
        ax.annotate(f"{r['throughput_fps']:.1f} fps", (xi, b + o), ha="center", va="bottom", fontsize=8,
                    xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("ms per frame (mean)")
    ax.set_title("ipmcam bench: where a frame's time goes")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    fig.savefig(str(path))


def plot_generator(report: Mapping[str, Any], path: Path) -> None:
    """Grouped bars: median ms per face for each engine configuration at each batch size (p95 whiskers)."""
    rows = list(report.get("generator", []))
    configs = list(dict.fromkeys(config_label(g) for g in rows))
    batches = sorted({g["batch"] for g in rows})
    fig = _figure(max(6.0, 0.9 * len(batches) * max(len(configs), 1) + 3.0), 4.5)
    ax = fig.add_subplot()
    width = 0.8 / max(len(configs), 1)
    for k, label in enumerate(configs):
        mine = {g["batch"]: g for g in rows if config_label(g) == label}
        xs = [i + (k - (len(configs) - 1) / 2) * width for i, b in enumerate(batches) if b in mine]
        p50 = [mine[b]["ms_per_face"]["p50"] for b in batches if b in mine]
        p95 = [mine[b]["ms_per_face"]["p95"] for b in batches if b in mine]
        ax.bar(xs, p50, width, label=label, yerr=[[0] * len(p50), [max(b - a, 0) for a, b in zip(p50, p95)]],
               capsize=3)
    ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    ax.set_ylabel("ms per face (median, p95 whisker)")
    ax.set_title("ipmcam bench: generator only")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    fig.savefig(str(path))


def write_plot(report: Mapping[str, Any], path: Path) -> None:
    """The chart for whatever the report holds: pipeline runs, or the generator micro-benchmark."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if report.get("runs"):
        plot_pipeline(report, path)
    else:
        plot_generator(report, path)
