"""How an evaluation is summarised and shown: per-model means, the table, the JSON and the image grids."""
from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ipmcam.measure.identity import SAME_PERSON
from ipmcam.measure.metrics import REGIONS, OutsideFace


def _mean(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def summarise(key: str, pair_rows: list[dict[str, Any]], synth_rows: list[dict[str, Any]],
              videos: dict[str, dict[str, Any]], outside: OutsideFace, ms: list[float]) -> dict[str, Any]:
    ok = [r for r in pair_rows if "error" not in r]
    summary: dict[str, Any] = {
        "pairs": len(ok),
        "delta_e": {name: _mean(r["delta_e"][name] for r in ok) for name in (*REGIONS, "mean")},
    }
    ids = [r["identity"] for r in ok if "identity" in r]
    if ids:
        summary["identity"] = {"mean": float(np.mean(ids)), "max": float(np.max(ids)),
                               "same_person_rate": float(np.mean([d < SAME_PERSON for d in ids]))}
    if synth_rows:
        summary["synthetic"] = {"pairs": len(synth_rows), "psnr": _mean(r["psnr"] for r in synth_rows),
                                "psnr_face": _mean(r["psnr_face"] for r in synth_rows)}
    summary["outside"] = outside.summary()
    summary["flicker"] = {name: v["models"][key]["flicker"] for name, v in videos.items() if key in v["models"]}
    summary["ms_per_face"] = float(np.median(ms)) if ms else math.nan
    return summary


def jsonable(value: Any, digits: int = 4) -> Any:
    """``value`` with numpy types made plain and floats rounded to ``digits`` (NaN and inf as strings)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, digits) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return round(v, digits)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


#: (header, path into a model's summary) of the summary table, after the model name
COLUMNS = (
    ("ΔE lips", "delta_e.lips"), ("ΔE eyes", "delta_e.eye_shadow"), ("ΔE skin", "delta_e.skin"),
    ("ΔE mean", "delta_e.mean"), ("ID dist", "identity.mean"), ("same ID", "identity.same_person_rate"),
    ("PSNR syn", "synthetic.psnr"), ("PSNR syn face", "synthetic.psnr_face"), ("PSNR outside", "outside.psnr"),
)


def _get(summary: dict[str, Any], path: str) -> Any:
    value: Any = summary
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _fmt(value: Any, path: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    if path.endswith("rate"):
        return f"{100 * value:.0f}%"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the summary table (one row per model), as printed and written to table.md."""
    videos = list(report["videos"])
    header = ["model", *(h for h, _ in COLUMNS), *(f"flicker {v}" for v in videos), "ms/face"]
    rows = []
    for key, summary in report["models"].items():
        cells = [key, *(_fmt(_get(summary, path), path) for _, path in COLUMNS)]
        cells += [_fmt(summary["flicker"].get(v), "flicker") for v in videos]
        cells.append(_fmt(summary.get("ms_per_face"), "ms"))
        rows.append(cells)
    return header, rows


def markdown_table(report: dict[str, Any]) -> str:
    header, rows = table_rows(report)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def print_table(report: dict[str, Any]) -> None:
    """A rich table when the terminal is wide enough for it, else the markdown table."""
    from rich.console import Console
    from rich.table import Table

    header, rows = table_rows(report)
    console = Console()
    widths = [max(len(c) for c in column) for column in zip(header, *rows)]
    if sum(widths) + 3 * len(widths) + 1 > console.width:
        print(markdown_table(report), end="")
        return
    table = Table(title="ipmcam eval: ΔE2000 to the reference ↓, identity distance ↓, PSNR ↑, flicker ↓")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
    for r in rows:
        table.add_row(*r)
    console.print(table)


def _label(cell: np.ndarray, text: str) -> np.ndarray:
    cv2.putText(cell, text, (4, cell.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(cell, text, (4, cell.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return cell


def grid_image(columns: list[str], rows: list[list[np.ndarray | None]], labels: list[str], cell: int) -> np.ndarray:
    """Header row of column names, then one row of crops per entry (None: a grey cell)."""
    head = np.full((28, cell * len(columns), 3), 255, np.uint8)
    for i, name in enumerate(columns):
        cv2.putText(head, name, (i * cell + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    body = []
    for images, label in zip(rows, labels):
        cells = []
        for image in images:
            if image is None:
                cells.append(np.full((cell, cell, 3), 128, np.uint8))
            else:
                cells.append(cv2.resize(image, (cell, cell), interpolation=cv2.INTER_AREA))
        _label(cells[0], label)
        body.append(np.hstack(cells))
    return np.vstack([head, *body])
