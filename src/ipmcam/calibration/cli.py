"""``ipmcam calibrate``: build a calibration set, quantize the generator to INT8, report quality and speed.

    ipmcam calibrate build-set [--model-dir DIR] [--out .cache/calibration/calibration.npz]
    ipmcam calibrate build-set --held-out            # the evaluation set the report uses
    ipmcam calibrate quantize  [--model-dir DIR] [--set PATH] [--method percentile]
    ipmcam calibrate report    [--model-dir DIR] [--out report.json]

Imports stay light here (argparse only); the work is imported by the handlers.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from ipmcam.calibration.dataset import BuildSettings, build_set, default_references, default_sources
from ipmcam.calibration.quantize import REPORT_FILE, QuantizeSettings, quantize
from ipmcam.calibration.report import ReportSettings, build_report, format_report
from ipmcam.engines.calibration_set import load_set
from ipmcam.engines.loader import default_model_dir
from ipmcam.errors import UserError
from ipmcam.resources import CACHE_DIR

log = logging.getLogger("ipmcam")

CACHE = CACHE_DIR / "calibration"
DEFAULT_SET = CACHE / "calibration.npz"
DEFAULT_HELD_OUT = CACHE / "held-out.npz"


def _model_dir(args: argparse.Namespace) -> Path:
    return Path(args.model_dir) if args.model_dir else default_model_dir(args.config)


def _user_error(exc: Exception) -> Exception:
    return UserError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def cmd_build_set(args: argparse.Namespace) -> int:
    data = Path(args.data) if args.data else None
    sources = args.source or (default_sources(data) if data else default_sources())
    references = args.reference or (default_references(data) if data else default_references())
    settings = BuildSettings(
        every=args.every, max_per_video=args.max_per_video, max_photos=args.max_photos,
        max_references=args.max_references, reference_frames=args.reference_frames,
        dedup_threshold=args.dedup_threshold, dedup_hash_distance=args.dedup_hash_distance,
        max_faces=args.max_faces, split="held-out" if args.held_out else "calibration",
    )
    out = Path(args.out) if args.out else (DEFAULT_HELD_OUT if args.held_out else DEFAULT_SET)
    try:
        calib = build_set([Path(s) for s in sources], [Path(r) for r in references], _model_dir(args), settings)
    except (FileNotFoundError, ValueError) as exc:
        raise _user_error(exc) from None
    if len(calib) == 0:
        raise _user_error(ValueError("no faces found in the sources; nothing to save"))
    manifest = calib.save(out)
    dropped = sum(s["duplicates"] for s in calib.manifest["sources"])
    print(f"{out}: {len(calib)} crops ({dropped} near-duplicates dropped) from {len(calib.manifest['sources'])} "
          f"sources, {len(calib.styles)} reference styles; manifest {manifest}")
    return 0


def _load_set(path: Path) -> Any:
    try:
        return load_set(path)
    except (FileNotFoundError, ValueError) as exc:
        raise _user_error(exc) from None


def cmd_quantize(args: argparse.Namespace) -> int:
    try:
        settings = QuantizeSettings(
            method=args.method, activation_type=args.activation_type, per_channel=args.per_channel,
            reduce_range=args.reduce_range, percentile=args.percentile, samples=args.samples, batch=args.batch,
            float_output_conv=args.float_output_conv, float_input_conv=args.float_input_conv,
            quantize_resize=not args.float_resize, convs=args.convs, extra_exclude=tuple(args.exclude or ()),
            int8_relus=not args.float_relus,
        )
    except ValueError as exc:
        raise _user_error(exc) from None
    model_dir = _model_dir(args)
    info = quantize(model_dir, _load_set(Path(args.set)), settings, register=not args.no_register)
    check = info["check_on_calibration_crops"]
    print(f"{info['output']}: {len(info['quantized_nodes'])} nodes quantized ({settings.method}, "
          f"{settings.activation_type} activations), {len(info['float_nodes'])} kept float; on "
          f"{check['crops']} calibration crops PSNR {check['psnr_db']} dB (makeup region "
          f"{check['psnr_masked_db']} dB), background exact: {check['background_exact']}; "
          f"report {model_dir / REPORT_FILE}")
    if not info["tensorrt_compatible"]:
        print("note: uint8 activations are onnxruntime-only; TensorRT needs --activation-type int8")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    model_dir = _model_dir(args)
    held_path = Path(args.held_out_set)
    if held_path.is_file():
        held = _load_set(held_path)
    else:
        log.warning("no held-out set at %s; building it (held-out identities of the development data)", held_path)
        try:
            held = build_set(default_sources(), default_references(), model_dir, BuildSettings(split="held-out"))
        except (FileNotFoundError, ValueError) as exc:
            raise _user_error(exc) from None
        held.save(held_path)
    settings = ReportSettings(runs=args.runs, warmup=args.warmup, batches=tuple(args.batch),
                              threads=tuple(args.threads), max_crops=args.max_crops, profile=args.profile)
    try:
        report = build_report(model_dir, held, settings)
    except ValueError as exc:
        raise _user_error(exc) from None
    out = Path(args.out) if args.out else model_dir / "int8_report.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    print(f"report: {out}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", type=Path, help="exported model folder (default: the installed lite model)")
    p.add_argument("--config", default="lite", choices=("lite", "full"), help="model config when --model-dir is not given")


def register(sub: Any) -> None:
    """Add ``calibrate`` and its sub-subcommands to the ``ipmcam`` parser."""
    cal = sub.add_parser("calibrate", help="INT8 calibration: build-set, quantize, report",
                         description="INT8 post-training quantization of the generator.")
    steps = cal.add_subparsers(dest="calibrate_command", required=True)

    b = steps.add_parser("build-set", help="aligned face crops + masks + reference styles from videos and photos")
    _common(b)
    b.add_argument("--source", action="append", type=Path,
                   help="video, photo or folder (repeatable; default: ../shared/data videos/ and faces/)")
    b.add_argument("--reference", action="append", type=Path,
                   help="makeup photo, video or folder whose style codes go in the set (repeatable)")
    b.add_argument("--data", type=Path, help="development data folder for the defaults (default ../shared/data)")
    b.add_argument("--out", type=Path, help=f"set to write (.npz; default {DEFAULT_SET}, or {DEFAULT_HELD_OUT} with --held-out)")
    b.add_argument("--every", type=int, default=5, help="take every n-th video frame (default 5)")
    b.add_argument("--max-per-video", type=int, default=24, help="frames taken per video (default 24)")
    b.add_argument("--max-photos", type=int, default=0, help="photos per folder, 0 = all")
    b.add_argument("--max-references", type=int, default=16, help="reference styles kept (default 16)")
    b.add_argument("--reference-frames", type=int, default=8, help="frames taken per reference video (default 8)")
    b.add_argument("--dedup-threshold", type=float, default=2.0,
                   help="drop a frame whose 64x64 grey thumbnail differs from the last kept one of its source "
                        "by less than this mean (grey levels; default 2)")
    b.add_argument("--dedup-hash-distance", type=int, default=0,
                   help="also drop crops whose difference hash is within this many bits of a kept one (default 0)")
    b.add_argument("--max-faces", type=int, default=1, help="faces taken per image (largest first)")
    b.add_argument("--held-out", action="store_true", help="build the evaluation set: held-out identities only")
    b.set_defaults(handler=cmd_build_set)

    q = steps.add_parser("quantize", help="static QDQ INT8 quantization -> generator.int8.onnx")
    _common(q)
    q.add_argument("--set", type=Path, default=DEFAULT_SET, help=f"calibration set (default {DEFAULT_SET})")
    q.add_argument("--method", default="percentile", choices=("entropy", "percentile", "minmax"),
                   help="activation range calibration (default percentile)")
    q.add_argument("--percentile", type=float, default=99.999, help="for --method percentile")
    q.add_argument("--activation-type", default="int8", choices=("int8", "uint8"),
                   help="int8: symmetric, runs on onnxruntime and TensorRT (default); uint8: onnxruntime only")
    q.add_argument("--convs", default="all", choices=("all", "pointwise"),
                   help="quantize all learned convolutions (default) or only 1x1 ones")
    q.add_argument("--no-per-channel", dest="per_channel", action="store_false", help="per-tensor weight scales")
    q.add_argument("--reduce-range", action="store_true", help="7-bit weights (older x86 without VNNI)")
    q.add_argument("--samples", type=int, default=64, help="calibration crops fed (default 64)")
    q.add_argument("--batch", type=int, default=4, help="crops per calibration batch")
    q.add_argument("--float-output-conv", action="store_true", help="keep the decoder's output convolution float")
    q.add_argument("--float-input-conv", action="store_true", help="keep the identity encoder's first convolution float")
    q.add_argument("--float-resize", action="store_true", help="keep the upsampling float")
    q.add_argument("--float-relus", action="store_true",
                   help="run the Relus between quantized convolutions in float (dequantize, Relu, quantize) "
                        "instead of as int8 lookups")
    q.add_argument("--exclude", action="append", help="another node name to keep float (repeatable)")
    q.add_argument("--no-register", action="store_true", help="do not add generator.int8.onnx to manifest.json")
    q.set_defaults(handler=cmd_quantize)

    r = steps.add_parser("report", help="INT8 vs fp32: PSNR, lip colour, latency on this CPU")
    _common(r)
    r.add_argument("--held-out-set", type=Path, default=DEFAULT_HELD_OUT,
                   help=f"evaluation set (built there if missing; default {DEFAULT_HELD_OUT})")
    r.add_argument("--runs", type=int, default=30, help="timed runs per model (default 30)")
    r.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    r.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes to time (default 1)")
    r.add_argument("--threads", type=int, nargs="+", default=[0], help="intra-op threads to time (0: physical cores)")
    r.add_argument("--max-crops", type=int, default=64, help="held-out crops compared (default 64)")
    r.add_argument("--profile", action="store_true",
                   help="also time the kernels per operator class (onnxruntime profiler) and the speed-up INT8 "
                        "could reach at most on this CPU")
    r.add_argument("--out", type=Path, help="report JSON (default MODEL_DIR/int8_report.json)")
    r.set_defaults(handler=cmd_report)
