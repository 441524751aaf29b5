"""``make gpu-check``: the GPU path proven in one command, on a machine with an NVIDIA GPU and torch.

    python -m ipmcam.measure.gpu_check [--json docs/bench/gpu.json] [--doc docs/benchmarks.md] [--budget 420]
    python -m ipmcam.measure.gpu_check --write-reference    # on a CPU machine: the stored CPU outputs

1. Parity: every backend and precision that can run here (TensorRT fp32,
   fp16, int8; torch on CUDA fp32, fp16; onnxruntime's CUDA provider) against
   the CPU outputs stored in the package (``measure.gpu_reference``). What
   cannot run is listed with the reason.
2. The generator alone: each configuration that passed, at batch 1, 2, 4, 8.
3. The pipeline, through ``ipmcam bench``'s runner: the fastest configuration
   that passed at 640x480, 1280x720 and 1920x1080, synchronous and
   asynchronous (needs opencv and mediapipe; skipped with the reason without).

Writes ``docs/bench/gpu.json`` (docs/bench_schema.json, mode "gpu-check";
validated when jsonschema is installed) and the GPU section of
docs/benchmarks.md, between its ``gpu-check`` markers. It runs on the
machine's own python, with nothing to install: it needs torch with CUDA,
numpy, onnx and opencv (which the torch backend imports); onnxruntime,
TensorRT, mediapipe, safetensors and jsonschema are used where they are, and
what cannot run for want of one is listed with the reason. Without
a CUDA GPU it prints one line, "no CUDA GPU: ...", and exits with status 2;
a parity failure, or no configuration able to run at all, exits with 1. A
step that would start after ``--budget`` seconds is skipped, and the report
says so.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from ipmcam.engines.fallback import first_line
from ipmcam.engines.loader import backend_unavailable, default_model_dir, load
from ipmcam.errors import EngineError
from ipmcam.ipmnet.weights import GENERATOR_FILES, Manifest, read_manifest
from ipmcam.measure.bench_report import SCHEMA_ID, STAGE_LABELS, generator_table, jsonable, pipeline_tables, write_json
from ipmcam.measure.gpu_reference import (
    REFERENCE_FILE,
    TOLERANCES,
    compare,
    load_reference,
    make_reference,
    save_reference,
    stale,
)
from ipmcam.resources import DEMO_CLIP, DEMO_REFERENCE

try:  # the timings use ipmcam bench's runner, which needs opencv; a bare GPU machine may lack it
    from ipmcam.face.reference import read_reference, reference_crop
    from ipmcam.measure import bench
    from ipmcam.measure.machine import machine, versions
    BENCH_MISSING: str | None = None
except ImportError as exc:
    bench = None  # type: ignore[assignment]
    BENCH_MISSING = f"ipmcam bench cannot run here ({first_line(exc)})"

log = logging.getLogger("ipmcam")

COMBOS = (("tensorrt", "fp16"), ("tensorrt", "fp32"), ("tensorrt", "int8"), ("torch", "fp16"), ("torch", "fp32"),
          ("onnxruntime", "fp16"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"))
BATCHES = (1, 2, 4, 8)
SIZES = ((640, 480), (1280, 720), (1920, 1080))
BEGIN, END = "<!-- gpu-check:begin -->", "<!-- gpu-check:end -->"


def cuda_problem() -> str | None:
    """Why this machine cannot run the check (no torch, or torch sees no CUDA device), or None."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False)"
    return None


def why_not(backend: str, precision: str, manifest: Manifest) -> str | None:
    """Why ``backend`` at ``precision`` cannot run on this machine, or None."""
    if reason := backend_unavailable(backend):
        return reason
    if backend == "torch" and precision == "int8":
        return "the torch backend runs fp32 and fp16 only"
    if backend == "onnxruntime":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "this onnxruntime has no CUDA provider (onnxruntime-gpu is not installed)"
    if not manifest.has(GENERATOR_FILES[precision]):
        return f"the model has no {GENERATOR_FILES[precision]}"
    return None


class Check:
    """One run of the check: the report being filled in, the time budget, and how much to measure."""

    #: generator timing: batch sizes, calls per batch (at most ``seconds_per_batch``), warm-up calls
    batches, calls, warmup, seconds_per_batch = BATCHES, 200, 20, 4.0
    #: pipeline: frame sizes, warm-up and measured frames per run (at most ``seconds_per_run``)
    sizes, pipeline_warmup, frames, seconds_per_run = SIZES, 20, 300, 8.0

    def __init__(self, model_dir: Path, budget: float) -> None:
        self.model_dir = model_dir
        self.manifest = read_manifest(model_dir)
        self.started = time.monotonic()
        self.budget = budget
        self.parity: list[dict[str, Any]] = []
        self.generator: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.ratios: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def skip(self, backend: str | None, precision: str | None, reason: str) -> None:
        self.skipped.append({"engine": "ipmnet", "backend": backend, "precision": precision, "reason": reason})
        log.info("skipped %s %s: %s", backend or "", precision or "", reason)

    def out_of_time(self) -> bool:
        return time.monotonic() - self.started > self.budget

    def parity_and_speed(self) -> None:
        ref = load_reference()
        if reason := stale(ref, self.manifest):
            for backend, precision in COMBOS:
                self.skip(backend, precision, reason)
            return
        for backend, precision in COMBOS:
            reason = why_not(backend, precision, self.manifest)
            if reason is None and self.out_of_time():
                reason = f"the {self.budget:g} s budget was spent before this step"
            if reason:
                self.skip(backend, precision, reason)
                continue
            log.info("parity: %s %s", backend, precision)
            try:
                engine = load(self.model_dir, backend=backend, precision=precision)
            except (EngineError, ImportError) as exc:  # ImportError: e.g. the torch backend without opencv
                self.skip(backend, precision, first_line(exc))
                continue
            try:
                result = {"engine": "ipmnet", "backend": backend, "precision": precision, "engine_name": engine.name,
                          **gpu_reference_compare(engine, ref, precision)}
                self.parity.append(result)
                if result["passed"]:
                    self.time_generator(engine, backend, precision, ref)
            finally:
                engine.close()

    def time_generator(self, engine: Any, backend: str, precision: str, ref: Any) -> None:
        if bench is None:
            self.notes.append(f"generator timing skipped: {BENCH_MISSING}")
            return
        settings = bench.BenchSettings(generator_only=True, batches=self.batches, calls=self.calls,
                                       warmup=self.warmup, time_limit=self.seconds_per_batch)
        crops, masks = ref.batch(max(self.batches))
        spec = bench.EngineSpec("ipmnet", backend, precision)
        self.generator += bench.run_generator(engine, spec, settings, crops, masks, (ref.ref_crop, ref.ref_masks),
                                              self.notes)

    def fastest(self) -> tuple[str, str] | None:
        """The (backend, precision) with the lowest batch-1 p50, among those that passed."""
        ones = [g for g in self.generator if g["batch"] == 1]
        best = min(ones, key=lambda g: g["ms_per_call"]["p50"], default=None)
        return None if best is None else (best["backend"], best["precision"])

    def pipeline(self) -> None:
        best = self.fastest()
        missing = BENCH_MISSING or (None if importlib.util.find_spec("mediapipe") else "mediapipe is not installed")
        for async_inference in (False, True):
            mode = "async" if async_inference else "sync"
            if best is None or missing or self.out_of_time():
                reason = ("no GPU configuration passed parity" if best is None else missing or
                          f"the {self.budget:g} s budget was spent before this step")
                self.notes.append(f"pipeline ({mode}) skipped: {reason}")
                continue
            settings = bench.BenchSettings(sizes=self.sizes, engines=("ipmnet",), backend=best[0],
                                           precisions=(best[1],), model_dir=self.model_dir, frames=self.frames,
                                           warmup=self.pipeline_warmup,
                                           time_limit=self.seconds_per_run, async_inference=async_inference)
            log.info("pipeline: %s %s, %s", *best, mode)
            report = bench.bench(settings)
            self.runs += report["runs"]
            self.ratios += report["ratios"]
            self.skipped += report["skipped"]
            self.notes += report["notes"]

    def report(self) -> dict[str, Any]:
        tried = sorted({b for b, _ in COMBOS})
        return {
            "schema": SCHEMA_ID,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "mode": "gpu-check",
            "machine": machine() if bench is not None else bare_machine(),
            "versions": versions(("tensorrt", "cuda-python", "pycuda")) if bench is not None else bare_versions(),
            "settings": {"mode": "gpu-check", "source": "video", "engines": ["ipmnet"], "backend": "all",
                         "backends": tried, "precisions": sorted({p for _, p in COMBOS}), "warmup": 20,
                         "model_dir": str(self.model_dir), "config": self.manifest.config_name,
                         "sizes": [f"{w}x{h}" for w, h in self.sizes], "batches": list(self.batches),
                         "reference": str(REFERENCE_FILE.name)},
            "stage_labels": dict(STAGE_LABELS),
            "runs": self.runs,
            "ratios": self.ratios,
            "generator": self.generator,
            "parity": self.parity,
            "skipped": self.skipped,
            "notes": self.notes,
            "seconds": time.monotonic() - self.started,
        }


def gpu_reference_compare(engine: Any, ref: Any, precision: str) -> dict[str, Any]:
    """``gpu_reference.compare``, with a run-time failure recorded as a failed check instead of ending the run."""
    try:
        return compare(engine, ref, precision)
    except Exception as exc:  # noqa: BLE001 - a backend that breaks on the GPU is exactly what this reports
        return {"error": first_line(exc), "tolerance": TOLERANCES[precision], "passed": False}


def bare_machine() -> dict[str, Any]:
    """The machine, for a report made without opencv (``measure.machine`` needs it)."""
    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "cores_usable": None,
            "os": platform.platform(), "python": platform.python_version(),
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}


def bare_versions() -> dict[str, str | None]:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    names = {"numpy": "numpy", "opencv": "opencv-python", "mediapipe": "mediapipe", "onnxruntime": "onnxruntime",
             "torch": "torch", "tensorrt": "tensorrt", "onnx": "onnx"}
    return {key: version(dist) for key, dist in names.items()}


# --------------------------------------------------------------------------- the report, written


def validate(report: dict[str, Any], schema_path: Path) -> str:
    """"valid", or why the report could not be checked / is not valid against the schema."""
    try:
        import jsonschema
    except ImportError:
        return "not validated here (jsonschema is not installed)"
    try:
        jsonschema.validate(jsonable(report), json.loads(schema_path.read_text()))
    except jsonschema.ValidationError as exc:
        return f"INVALID: {exc.message} at {'/'.join(map(str, exc.absolute_path))}"
    return "valid"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |",
            *("| " + " | ".join(r) + " |" for r in rows)]


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def markdown(report: dict[str, Any], json_path: str) -> str:
    """The GPU section of docs/benchmarks.md for ``report``."""
    m, v = report["machine"], report["versions"]
    lines = [BEGIN, "## GPU (`make gpu-check`)", "",
             f"Machine: {', '.join(m['gpus']) or 'no GPU name'}; {m['cpu']}, {m['cores']} cores; Python "
             f"{m['python']}, torch {v.get('torch')}, TensorRT {v.get('tensorrt') or 'not installed'}, onnxruntime "
             f"{v.get('onnxruntime') or 'not installed'}. Measured {report['created']} with `make gpu-check` "
             f"({report['seconds']:.0f} s). Raw results: `{json_path}`.", "",
             "Parity with the CPU reference (onnxruntime fp32, stored in the package), deltas in pixel levels:", ""]
    rows = [[p["backend"], p["precision"], p.get("engine_name", ""), _num(p.get("max_abs_px"), ".3f"),
             _num(p.get("max_abs_px_batch1"), ".3f"), _num(p.get("psnr_makeup_db"), ".1f"),
             _num(p.get("style_max_abs"), ".4f"), str(p.get("background_exact", "–")),
             ", ".join(f"{k} {v}" for k, v in p["tolerance"].items()),
             "pass" if p["passed"] else f"**FAIL** {p.get('error', '')}".strip()] for p in report["parity"]]
    lines += _table(["backend", "precision", "engine", "max abs", "batch 1", "makeup PSNR dB", "style max abs",
                     "background exact", "tolerance", "result"], rows)
    if report["generator"]:
        lines += ["", "Generator alone (real crops at 256x256):", ""]
        lines += _table(*generator_table(report))
    for flag, mode in ((False, "synchronous"), (True, "asynchronous (`--async`, what `live` does)")):
        runs = {"runs": [r for r in report["runs"] if r["async_inference"] == flag], "ratios": []}
        for title, header, rows, _ in pipeline_tables(runs):
            lines += ["", f"Pipeline, {title}, {mode}:", ""] + _table(header, rows)
    if report["skipped"]:
        lines += ["", "Not run here:", ""]
        lines += [f"- {s['backend']} {s['precision'] or ''}: {s['reason']}" for s in report["skipped"]]
    if report["notes"]:
        lines += ["", *(f"- {n}" for n in report["notes"])]
    return "\n".join(lines + [END])


def update_doc(doc: Path, section: str) -> None:
    """Replace the text between the gpu-check markers of ``doc`` (appended when it has none)."""
    text = doc.read_text()
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    doc.write_text(text)


# --------------------------------------------------------------------------- command


def write_reference(model_dir: Path, count: int = 2) -> Path:
    """The CPU reference: ``count`` crops of the demo clip and the demo reference, through onnxruntime fp32."""
    if bench is None:
        raise SystemExit(f"ipmcam: error: {BENCH_MISSING}")
    crops, masks = bench.real_crops(DEMO_CLIP, count, stride=37)
    ref_crop, ref_masks = reference_crop(read_reference(DEMO_REFERENCE), "the demo reference")
    engine = load(model_dir, backend="onnxruntime", precision="fp32")
    try:
        save_reference(make_reference(engine, read_manifest(model_dir), crops, masks, ref_crop, ref_masks))
    finally:
        engine.close()
    return REFERENCE_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ipmcam.measure.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=default_model_dir("lite"))
    parser.add_argument("--json", type=Path, default=Path("docs/bench/gpu.json"))
    parser.add_argument("--doc", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--schema", type=Path, default=Path("docs/bench_schema.json"))
    parser.add_argument("--budget", type=float, default=420.0, help="seconds after which no new step starts")
    parser.add_argument("--write-reference", action="store_true", help="make the stored CPU reference (CPU)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="gpu-check: %(message)s")
    if args.write_reference:
        print(f"wrote {write_reference(args.model_dir)}")
        return 0
    if problem := cuda_problem():
        print(f"no CUDA GPU: {problem}", file=sys.stderr)
        return 2
    check = Check(args.model_dir, args.budget)
    check.parity_and_speed()
    check.pipeline()
    report = check.report()
    report["notes"].append(f"schema check: {validate(report, args.schema)}")
    write_json(report, args.json)
    if args.doc.is_file():
        update_doc(args.doc, markdown(jsonable(report), str(args.json)))
    failed = [f"{p['backend']} {p['precision']}" for p in report["parity"] if not p["passed"]]
    print(f"gpu-check: {len(report['parity'])} configurations checked, {len(failed)} failed"
          f"{' (' + ', '.join(failed) + ')' if failed else ''}; wrote {args.json}")
    return 1 if failed or not report["parity"] else 0  # nothing that could run is no pass either


if __name__ == "__main__":
    sys.exit(main())
