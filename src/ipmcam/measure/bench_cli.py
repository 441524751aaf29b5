"""The `ipmcam bench` command: its options and how its report is printed and saved."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ipmcam.errors import UserError
from ipmcam.measure.bench import BenchSettings, bench
from ipmcam.measure.bench_report import (
    print_report,
    write_json,
    write_plot,
)
from ipmcam.realtime.sinks import check_writable
from ipmcam.resources import DEMO_CLIP, DEMO_REFERENCE


def _csv(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    out = []
    for item in _csv(text):
        try:
            w, h = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT[,WIDTHxHEIGHT...], got {item!r}") from None
        if w < 16 or h < 16:
            raise argparse.ArgumentTypeError(f"frame size {item} is too small")
        out.append((w, h))
    if not out:
        raise argparse.ArgumentTypeError("expected at least one size")
    return tuple(out)


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in _csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("batch sizes must be 1 or more")
    return values


def register(sub: Any) -> None:
    """Add the ``bench`` subcommand to the ipmcam CLI."""
    p = sub.add_parser(
        "bench", help="time every pipeline stage per engine, backend and frame size → table, JSON, chart",
        description="Run the real pipeline (as `live` does, into a null sink) on the bundled clip or a synthetic "
                    "moving face and report what every stage costs: p50/p95/p99/mean ms, latency, throughput, "
                    "dropped frames, CPU and memory. --generator-only times the generator alone per batch size.")
    src = p.add_argument_group("frames")
    src.add_argument("--source", choices=("video", "synthetic"), default="video",
                     help="video: the clip (looped); synthetic: the reference photo moving over a plain background")
    src.add_argument("--video", type=Path, default=DEMO_CLIP, help="clip to play (default: the bundled demo clip)")
    src.add_argument("--size", type=_sizes, default=BenchSettings.sizes,
                     help="frame sizes as a camera delivers them (default 640x480,1280x720,1920x1080)")
    src.add_argument("--fit", choices=("scale", "pad"), default="scale",
                     help="how the clip fills a frame: scale (letterbox) or pad (keep its pixels, only shrink)")
    src.add_argument("--frames", type=int, default=200, help="measured frames per run (default 200)")
    src.add_argument("--warmup", type=int, help="frames (generator: calls) run first and not measured "
                                                "(default 20; generator 3)")
    src.add_argument("--time-limit", type=float, default=20.0,
                     help="stop a run (generator: a batch size) after this many measured seconds even if --frames "
                          "(--calls) is not reached (default 20; 0: no limit)")
    src.add_argument("--fps", type=float, default=0.0,
                     help="0 (default): each frame made on demand, full speed; N: a simulated N-fps camera "
                          "(newest frame wins, stale frames dropped and counted)")
    eng = p.add_argument_group("engines")
    eng.add_argument("--engine", type=_csv, default=("classic", "ipmnet"),
                     help="comma-separated (default classic,ipmnet)")
    eng.add_argument("--backend", default="auto",
                     help="ipmnet backend: auto (the one `live` would pick), all (each one that can run here), "
                          "or comma-separated from onnxruntime, torch, tensorrt")
    eng.add_argument("--precision", type=_csv, default=("fp32",), help="ipmnet precisions, e.g. fp32,int8")
    eng.add_argument("--model-dir", type=Path, help="exported ipmnet model (default weights/<config>)")
    eng.add_argument("--config", default="lite", help="model config whose installed weights to use (default lite)")
    eng.add_argument("--reference", "-r", type=Path, default=DEMO_REFERENCE,
                     help="reference photo (default: the bundled one)")
    eng.add_argument("--intensity", type=float, default=1.0)
    eng.add_argument("--max-faces", type=int, default=1)
    eng.add_argument("--async", dest="async_inference", action="store_true",
                     help="run the generator asynchronously (PipelineOptions.async_inference)")
    gen = p.add_argument_group("generator only")
    gen.add_argument("--generator-only", action="store_true",
                     help="time engine.run alone on real aligned crops, per batch size")
    gen.add_argument("--batch", type=_ints, default=(1, 2, 4, 8), help="batch sizes (default 1,2,4,8)")
    gen.add_argument("--calls", type=int, default=30, help="measured calls per batch size (default 30)")
    gen.add_argument("--baseline-model-dir", type=Path, metavar="DIR",
                     help="also time this exported model (e.g. the previously shipped one) on the same backend and "
                          "precision, calls alternating with the main model's, and report main/baseline ms per face")
    out = p.add_argument_group("output")
    out.add_argument("--json", type=Path, help="write every figure, the settings and the machine to this file")
    out.add_argument("--plot", type=Path, help="write a bar chart (PNG) of the stage costs")
    p.set_defaults(handler=cmd_bench)


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    if args.frames < 1 or args.calls < 1:
        raise UserError("--frames and --calls must be 1 or more")
    if args.warmup is not None and args.warmup < 0:
        raise UserError("--warmup cannot be negative")
    return BenchSettings(
        source=args.source, video=args.video, reference=args.reference, sizes=tuple(args.size), fit=args.fit,
        engines=tuple(args.engine), backend=args.backend, precisions=tuple(args.precision) or ("fp32",),
        model_dir=args.model_dir, config=args.config, frames=args.frames, warmup=args.warmup,
        time_limit=args.time_limit, fps=args.fps,
        max_faces=args.max_faces, intensity=args.intensity, async_inference=args.async_inference,
        generator_only=args.generator_only, batches=tuple(args.batch), calls=args.calls,
        baseline_model_dir=args.baseline_model_dir,
    )


def cmd_bench(args: argparse.Namespace) -> int:
    from rich.console import Console

    settings = settings_from_args(args)
    for path in (args.json, args.plot):
        if path is not None:
            check_writable(path)
    err = Console(stderr=True)
    report = bench(settings, progress=lambda text: err.print(f"bench: {text}", highlight=False))
    print_report(report)
    written = []
    if args.json:
        write_json(report, args.json)
        written.append(str(args.json))
    if args.plot:
        write_plot(report, args.plot)
        written.append(str(args.plot))
    if written:
        print(f"wrote {', '.join(written)} ({report['seconds']:.0f} s)")
    if not report["runs"] and not report["generator"]:
        print("ipmcam: error: nothing could be benchmarked (see the skipped list)", file=sys.stderr)
        return 1
    return 0
