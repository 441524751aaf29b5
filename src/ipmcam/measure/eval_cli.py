"""The `ipmcam eval` command: its options, and where the report, table and grids are written."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ipmcam.measure.eval_report import print_table
from ipmcam.measure.evaluate import DEFAULT_CACHE, DEFAULT_DATA, EvalSettings, evaluate
from ipmcam.measure.webcam_set import FRAMES_PER_CLIP, default_clips


def _csv(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def register(sub: Any) -> None:
    """Add the ``eval`` subcommand to the ipmcam CLI."""
    p = sub.add_parser("eval", help="score the engines on held-out faces and clips → eval.json, grid.png",
                       description="Score each engine on held-out data: colour distance to the reference, identity, "
                                   "PSNR on exact synthetic pairs, untouched background, and flicker on video.")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="development data root (default ../shared/data)")
    p.add_argument("--out", type=Path, default=Path("out/eval"), help="output folder (default out/eval)")
    p.add_argument("--models", default="auto",
                   help="comma-separated from none, classic, ipmnet; auto: all, ipmnet only when weights are installed")
    p.add_argument("--precision", type=_csv, default=("fp32",), help="ipmnet precisions, e.g. fp32,int8")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "torch", "tensorrt"))
    p.add_argument("--config", default="lite", help="model config whose installed weights to use (default lite)")
    p.add_argument("--model-dir", type=Path, help="exported model folder (default weights/<config>)")
    p.add_argument("--sources", type=int, default=6, help="held-out bare faces (0: all)")
    p.add_argument("--references", type=int, default=4, help="held-out made-up references (0: all)")
    p.add_argument("--synthetic", type=int, default=24, help="exact synthetic pairs (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic pairs")
    p.add_argument("--videos", type=_csv, default=EvalSettings.videos,
                   help="clips for flicker under DATA/videos (empty: none)")
    p.add_argument("--video-frames", type=int, default=60, help="frames per clip (0: all)")
    p.add_argument("--video-reference", type=Path, help="reference for the clips (default: the first pair reference)")
    p.add_argument("--webcam-clips", type=_csv, default=default_clips(),
                   help="held-out clips of the webcam set (default: all of them; empty: no webcam set)")
    p.add_argument("--webcam-frames", type=int, default=FRAMES_PER_CLIP, help="frames sampled per webcam clip")
    p.add_argument("--webcam-references", type=int, default=3,
                   help="references for the webcam set: the demo reference, then held-out ones (0: no webcam set)")
    p.add_argument("--faces-cache", type=Path, default=DEFAULT_CACHE, help="aligned face set (built when missing)")
    p.add_argument("--no-identity", action="store_true", help="skip the dlib identity metric")
    p.add_argument("--cell", type=int, default=160, help="grid cell size in pixels")
    p.set_defaults(handler=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    settings = EvalSettings(
        data=args.data, out=args.out, models=args.models, precisions=tuple(args.precision) or ("fp32",),
        backend=args.backend, config=args.config, model_dir=args.model_dir, sources=args.sources,
        references=args.references, synthetic=args.synthetic, seed=args.seed, videos=tuple(args.videos),
        video_frames=args.video_frames, video_reference=args.video_reference, faces_cache=args.faces_cache,
        webcam_clips=tuple(args.webcam_clips), webcam_frames=args.webcam_frames,
        webcam_references=args.webcam_references,
        identity=not args.no_identity, cell=args.cell,
    )
    start = time.perf_counter()
    report = evaluate(settings)
    print_table(report)
    for key, reason in report["skipped"].items():
        print(f"skipped {key}: {reason}")
    for key, note in report["notes"].items():
        print(f"{key}: {note}")
    print(f"{args.out / 'eval.json'}, {args.out / 'table.md'}, {args.out / 'grid.png'}, {args.out / 'grid_webcam.png'} "
          f"({time.perf_counter() - start:.0f} s)")
    return 0
