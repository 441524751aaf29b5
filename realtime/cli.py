"""The `ipmcam` command line: a thin layer over realtime.pipeline.Pipeline."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.base import EngineError
from realtime.errors import UserError

log = logging.getLogger("ipmcam")

REPO = Path(__file__).resolve().parents[1]
DEMO_CLIP = REPO / "assets" / "demo.mp4"
DEMO_REFERENCE = REPO / "assets" / "reference.jpg"

#: The engine used when none is named: the shipped ipmnet model where its weights and a runtime are
#: there (it wins the evaluation, docs/eval.md), else classic, which needs neither.
DEFAULT_ENGINE = "auto"

#: Modules that add subcommands: each has ``register(subparsers)``, which adds its
#: parser(s) with ``set_defaults(handler=...)``. They must import light (no torch).
EXTENSIONS: tuple[str, ...] = (
    "ipmnet.evaluate",
    "calibration.cli",
    "realtime.bench",
    "realtime.soak",
    "realtime.presets",
    "realtime.config",
)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def _strengths(text: str) -> dict[str, float]:
    from realtime.mixing import parse_strengths

    return parse_strengths(text)


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """The makeup options every processing command shares."""
    p.add_argument("--config", type=Path, help="TOML file of settings (flags win); see `ipmcam config --print`")
    g = p.add_argument_group("makeup")
    g.add_argument("--reference", "-r", type=Path,
                   help="photo of a face wearing the makeup to copy, a folder of them (n/p cycle), or a preset name")
    g.add_argument("--preset", help="a built-in look instead of a photo (list: `ipmcam presets`)")
    g.add_argument("--remove", action="store_true", help="take makeup off: copy the bare preset")
    g.add_argument("--lips", help="photo or preset whose lips to copy (per-region mixing)")
    g.add_argument("--eyes", help="photo or preset whose eye shadow to copy")
    g.add_argument("--skin", help="photo or preset whose skin, blush and foundation to copy")
    g.add_argument("--strength", type=_strengths, metavar="REGION=S,...",
                   help="per-region strength 0..1, e.g. lips=1,eyes=0.5,skin=0.3 (regions: lips, eyes, skin)")
    g.add_argument("--engine", default=DEFAULT_ENGINE, choices=("auto", "ipmnet", "classic"),
                   help="auto (default): ipmnet when its weights and a runtime are installed, else classic; "
                        "ipmnet: the neural generator; classic: per-region colour transfer")
    g.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "torch", "tensorrt"))
    g.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"))
    g.add_argument("--model-dir", type=Path, help="folder with generator.onnx, style_encoder.onnx, manifest.json")
    g.add_argument("--intensity", type=float, default=1.0, help="0 leaves the face unchanged, 1 copies fully")
    g.add_argument("--max-faces", type=int, default=1, help="how many faces to make up per frame")
    o = p.add_argument_group("output")
    o.add_argument("--mirror", action="store_true", help="flip left-right (selfie view)")
    o.add_argument("--output-size", type=_size, metavar="WxH", help="publish at this size (default: the input's)")
    o.add_argument("--output-fps", type=float, metavar="FPS", help="publish at this rate (default: the input's)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ipmcam", description="Real-time makeup transfer for webcams and videos.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    live = sub.add_parser("live", help="webcam (or stream URL) in, virtual camera / window / file out")
    live.add_argument("--camera", "-c", default="0", help="camera index or stream URL (default 0)")
    live.add_argument("--virtual-cam", action="store_true", help="publish to a virtual camera (OBS, Zoom, Meet...)")
    live.add_argument("--device", help="virtual camera device, e.g. /dev/video10 (default: first found)")
    live.add_argument("--preview", action="store_true", help="show a preview window (Esc or q quits)")
    live.add_argument("--output", "-o", type=Path, help="also record to this video file")
    live.add_argument("--size", type=_size, help="camera capture size, e.g. 1280x720")
    live.add_argument("--fps", type=float, help="camera frame rate to ask for")
    live.add_argument("--sync", dest="async_inference", action="store_false",
                      help="run the generator in the video thread (default: beside it, so output keeps camera rate)")
    live.add_argument("--stats-every", type=int, default=0, metavar="N",
                      help="log per-stage timings every N frames (the preview's t key shows them too)")
    live.add_argument("--screenshots", type=Path, default=Path("screenshots"),
                      help="folder for screenshots taken with the s key (default ./screenshots)")
    add_engine_args(live)
    live.set_defaults(handler=cmd_live)

    apply = sub.add_parser("apply", help="a video or image file in, a made-up file out")
    apply.add_argument("input", type=Path)
    apply.add_argument("output", type=Path)
    add_engine_args(apply)
    apply.set_defaults(handler=cmd_apply)

    demo = sub.add_parser("demo", help="the bundled clip and reference → out/demo.mp4 and a before/after PNG")
    demo.add_argument("--out", type=Path, default=Path("out"), help="output folder (default ./out)")
    add_engine_args(demo)
    demo.set_defaults(handler=cmd_demo)
    for module in EXTENSIONS:
        importlib.import_module(module).register(sub)
    return parser


def make_pipeline(args: argparse.Namespace, source: Any, sinks: list[Any], plan: Any = None) -> Any:
    """A pipeline from the shared makeup options (see ``add_engine_args``).

    ``plan`` (``realtime.presets.plan_references``) is worked out from the
    reference options when not given.
    """
    from engines.factory import create_engine
    from realtime.pipeline import Pipeline, PipelineOptions
    from realtime.presets import plan_references

    try:
        plan = plan or plan_references(args, with_presets=False)
    except BaseException:
        if source is not None:
            source.close()
        raise
    engine = create_engine(args.engine, args.backend, args.precision,
                           model_dir=str(args.model_dir) if args.model_dir else None)
    log.info("engine: %s", engine.name)
    options = PipelineOptions(max_faces=args.max_faces, intensity=args.intensity,
                              strengths=getattr(args, "strength", None), mirror=getattr(args, "mirror", False),
                              output_size=getattr(args, "output_size", None),
                              output_fps=getattr(args, "output_fps", None),
                              async_inference=getattr(args, "async_inference", False))
    try:
        return Pipeline(source, engine, sinks, options, reference=plan.initial)
    except BaseException:
        if source is not None:
            source.close()
        raise


def _run(pipeline: Any, total: int | None, desc: str, on_frame: Any = None) -> tuple[Any, int]:
    """Run with a progress bar; returns the stats and the exit code.

    Ctrl-C or SIGTERM stops after the current frame, with every sink closed
    (a video being written is finalised); the exit code is then 128 + the
    signal number. A second Ctrl-C interrupts at once.
    """
    from tqdm import tqdm

    received: list[int] = []

    def on_signal(signum: int, _: object) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        pipeline.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    def step(n: int) -> None:
        bar.update(1)
        if on_frame is not None:
            on_frame(n)

    with tqdm(total=total, desc=desc, unit="frame", disable=None, leave=False) as bar:
        stats = pipeline.run(on_frame=step)
    return stats, 128 + received[0] if received else 0


def cmd_apply(args: argparse.Namespace) -> int:
    from realtime.sinks import FileSink
    from realtime.sources import open_source

    sink = FileSink(args.output)
    source = open_source(str(args.input)) if args.input.is_file() else None
    if source is None:
        raise UserError(f"cannot read {args.input}: file not found")
    pipeline = make_pipeline(args, source, [sink])
    stats, code = _run(pipeline, getattr(source, "frame_count", 1) or None, args.input.name)
    print(f"{args.output}: {stats.frames} frames, faces in {stats.frames_with_face}, {stats.fps:.1f} fps")
    return code


def cmd_live(args: argparse.Namespace) -> int:
    from realtime.sinks import FileSink, PreviewSink, VirtualCameraSink
    from realtime.sources import CameraSource

    sinks: list[Any] = [FileSink(args.output)] if args.output else []
    if args.virtual_cam:
        vcam = VirtualCameraSink(device=args.device)
        # Probe the device before the camera: a missing virtual camera is the commonest set-up error.
        vcam.open(*(args.size or (640, 480)), args.fps or 30.0)
        vcam.close()
        sinks.append(vcam)
    preview = PreviewSink() if args.preview else None
    if preview is not None:
        sinks.append(preview)
    if not sinks:
        raise UserError("choose an output: --virtual-cam, --preview and/or --output FILE")
    from realtime.presets import plan_references

    plan = plan_references(args, with_presets=preview is not None)  # a bad reference fails before the camera opens
    width, height = args.size or (None, None)
    camera = str(args.camera)
    source = CameraSource(int(camera) if camera.isdigit() else camera, width=width, height=height, fps=args.fps)
    pipeline = make_pipeline(args, source, sinks, plan)
    controller = None
    if preview is not None:
        from realtime.controls import Controller

        controller = Controller(pipeline, preview, plan.cycle, screenshots=args.screenshots)
    callbacks = [c for c in (controller.on_frame if controller else None, _stats_logger(pipeline, args.stats_every))
                 if c is not None]
    stats, code = _run(pipeline, None, "live", lambda n: [c(n) for c in callbacks])
    print(f"{stats.frames} frames, {stats.fps:.1f} fps, {stats.dropped} stale camera frames dropped")
    return code


def _stats_logger(pipeline: Any, every: int) -> Any:
    """A per-frame callback printing the stage timings every ``every`` frames (None when 0)."""
    if every <= 0:
        return None
    from realtime.bench_report import format_stages

    def print_stages(n: int) -> None:
        if n % every == 0:
            print(f"frame {n}:", *format_stages(pipeline.clock.summary()), sep="\n  ", file=sys.stderr)

    return print_stages


class _GrabSink:
    """Keeps one output frame (by index) for the before/after picture."""

    def __init__(self, index: int) -> None:
        self.index, self.seen, self.frame = index, 0, None
        self.wants_stop = False

    def open(self, width: int, height: int, fps: float) -> None: ...

    def write(self, frame: np.ndarray) -> None:
        if self.seen == self.index:
            self.frame = frame.copy()
        self.seen += 1

    def close(self) -> None: ...


def cmd_demo(args: argparse.Namespace) -> int:
    from realtime.sinks import FileSink
    from realtime.sources import VideoFileSource, video_frames

    args.out.mkdir(parents=True, exist_ok=True)
    args.reference = args.reference or DEMO_REFERENCE
    source = VideoFileSource(DEMO_CLIP)
    middle = max(source.frame_count // 2, 0)
    grab = _GrabSink(middle)
    video = args.out / "demo.mp4"
    pipeline = make_pipeline(args, source, [FileSink(video), grab])
    stats, code = _run(pipeline, source.frame_count, "demo")
    before = next(video_frames(DEMO_CLIP, start=middle, limit=1), None)
    picture = args.out / "demo_before_after.png"
    if before is not None and grab.frame is not None:
        cv2.imwrite(str(picture), np.hstack([before, grab.frame]))
    print(f"{video}: {stats.frames} frames, {stats.fps:.1f} fps ({pipeline.engine.name}); before/after: {picture}")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    from realtime.config import parse_args

    parser = build_parser()
    try:
        args = parse_args(parser, argv)  # the config file's settings, then the flags
    except UserError as exc:
        print(f"ipmcam: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="ipmcam: %(message)s")
    try:
        return args.handler(args)
    except (UserError, EngineError) as exc:
        print(f"ipmcam: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """Console-script entry: run, then leave without the interpreter's slow teardown.

    Every file and device is closed by ``main``; skipping the native
    libraries' global destructors is what lets Ctrl-C or SIGTERM end the
    process well within a second.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
