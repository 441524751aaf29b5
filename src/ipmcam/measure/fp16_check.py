"""Does the fp16 generator lose anything visible against fp32? Measured on CPU, on held-out faces.

    python -m ipmcam.measure.fp16_check [--model-dir DIR] [--held-out-set .cache/calibration/held-out.npz]
                                        [--json docs/bench/fp16_cpu.json]

``generator.fp16.onnx`` (the learned networks in half precision, the
preprocessing and composition in fp32) and ``generator.onnx`` both run in
onnxruntime on the CPU on the held-out calibration set (identities never
trained on, each crop made up with a held-out reference; built by
``ipmcam calibrate build-set --held-out`` when missing), and their outputs
are compared as the INT8 report compares INT8 (``calibration.report``):
PSNR over the makeup region, lips CIEDE2000 between the two outputs, and
whether pixels outside the masks stay exact. Targets: 45 dB or more, a lips
ΔE2000 of 1 or less, background exact. Exit status 0 when all are met.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ipmcam.calibration.cli import DEFAULT_HELD_OUT
from ipmcam.calibration.dataset import BuildSettings, build_set, default_references, default_sources
from ipmcam.calibration.report import quality, session
from ipmcam.engines.calibration_set import load_set
from ipmcam.engines.loader import default_model_dir
from ipmcam.ipmnet.weights import GENERATOR_FILES, read_manifest

#: what "nothing visible" means for fp16 against fp32
TARGETS = {"psnr_makeup_region_db": 45.0, "lips_delta_e_fp16_vs_fp32": 1.0}


def held_out_set(path: Path, model_dir: Path) -> Any:
    """The held-out set at ``path``, built (and saved there) when absent."""
    if path.is_file():
        return load_set(path)
    held = build_set(default_sources(), default_references(), model_dir, BuildSettings(split="held-out"))
    held.save(path)
    return held


def fp16_report(model_dir: Path, held_out: Any, max_crops: int = 128) -> dict[str, Any]:
    """Quality of generator.fp16.onnx against generator.onnx on ``held_out``, with the targets."""
    manifest = read_manifest(model_dir)
    files = [GENERATOR_FILES["fp32"], GENERATOR_FILES["fp16"]]
    manifest.verify(files)
    held_out = held_out.with_styles_for(model_dir)
    fp32, fp16 = (session(manifest.path(name), 0) for name in files)
    q = quality(fp32, fp16, held_out, max_crops, label="fp16")
    checks = {
        "psnr_makeup_region_db": q["psnr_makeup_region_db"] >= TARGETS["psnr_makeup_region_db"],
        "lips_delta_e_fp16_vs_fp32": q["lips_delta_e_fp16_vs_fp32"] <= TARGETS["lips_delta_e_fp16_vs_fp32"],
        "background_exact": q["background_exact"],
    }
    return {"model_dir": str(model_dir), "sha256": {name: manifest.files[name]["sha256"] for name in files},
            "held_out_set": {k: held_out.manifest.get(k) for k in ("sha256", "counts", "split")},
            "quality": q, "targets": TARGETS, "met": checks, "all_met": all(checks.values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ipmcam.measure.fp16_check", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=default_model_dir("lite"))
    parser.add_argument("--held-out-set", type=Path, default=DEFAULT_HELD_OUT)
    parser.add_argument("--max-crops", type=int, default=128)
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    report = fp16_report(args.model_dir, held_out_set(args.held_out_set, args.model_dir), args.max_crops)
    q = report["quality"]
    print(f"fp16 against fp32 on {q['crops']} held-out crops: makeup-region PSNR {q['psnr_makeup_region_db']} dB "
          f"(worst crop {q['psnr_worst_crop_makeup_region_db']} dB), max |err| {q['max_abs_error']} levels, "
          f"lips dE2000 {q['lips_delta_e_fp16_vs_fp32']}, background exact: {q['background_exact']}; "
          f"targets {'met' if report['all_met'] else 'NOT met'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["all_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
