"""The live application's commands (`live`, `apply`, `demo`): thin layers over ``realtime.pipeline.Pipeline``."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ipmcam.engines.factory import create_engine
from ipmcam.errors import UserError
from ipmcam.media import IMAGE_SUFFIXES, video_frames
from ipmcam.realtime.controls import Controller
from ipmcam.realtime.mixing import parse_strengths
from ipmcam.realtime.pipeline import Pipeline, PipelineOptions
from ipmcam.realtime.presets import ReferencePlan, plan_references
from ipmcam.realtime.sinks import FileSink, PreviewSink, Sink, VirtualCameraSink
from ipmcam.realtime.sources import Source, VideoFileSource, open_live_source, open_source
from ipmcam.realtime.stages import format_stages
from ipmcam.resources import DEMO_CLIP, DEMO_REFERENCE

log = logging.getLogger("ipmcam")


#: The engine used when none is named: the shipped ipmnet model where its weights and a runtime are
#: there (it wins the evaluation, docs/eval.md), else classic, which needs neither.
DEFAULT_ENGINE = "auto"

def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"width and height must be above 0, got {text!r}")
    return w, h


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value:  # NaN passes every comparison below
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    return value


def _unit(text: str) -> float:
    """A value within 0..1 (intensity)."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {text}")
    return value


def _rate(text: str) -> float:
    """A frame rate above 0."""
    value = _number(text)
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _count(text: str) -> int:
    """A whole number of at least 1 (faces)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _every(text: str) -> int:
    """A whole number of at least 0 (0: off)."""
    return 0 if text.strip() == "0" else _count(text)


def _strengths(text: str) -> dict[str, float]:
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
    g.add_argument("--intensity", type=_unit, default=1.0, help="0..1: 0 leaves the face unchanged, 1 copies fully")
    g.add_argument("--max-faces", type=_count, default=1, help="how many faces to make up per frame (1 or more)")
    o = p.add_argument_group("output")
    o.add_argument("--mirror", action="store_true", help="flip left-right (selfie view)")
    o.add_argument("--output-size", type=_size, metavar="WxH", help="publish at this size (default: the input's)")
    o.add_argument("--output-fps", type=_rate, metavar="FPS", help="publish at this rate (default: the input's)")


def add_live_args(live: argparse.ArgumentParser) -> None:
    """Every option of ``live`` (camera, outputs, makeup); ``studio`` takes them all too."""
    live.add_argument("--camera", "-c", default="0",
                      help="camera index (see `ipmcam cameras`), stream URL or video file (default 0)")
    live.add_argument("--once", action="store_true",
                      help="with a video file as --camera: play it once, then stop (default: loop it)")
    live.add_argument("--virtual-cam", action="store_true", help="publish to a virtual camera (OBS, Zoom, Meet...)")
    live.add_argument("--device", help="virtual camera device, e.g. /dev/video10 (default: first found)")
    live.add_argument("--preview", action="store_true", help="show a preview window (Esc or q quits)")
    live.add_argument("--output", "-o", type=Path, help="also record to this video file (.mp4, .mkv, ...)")
    live.add_argument("--size", type=_size, help="camera capture size, e.g. 1280x720")
    live.add_argument("--fps", type=_rate, help="camera frame rate to ask for")
    live.add_argument("--sync", dest="async_inference", action="store_false",
                      help="run the generator in the video thread (default: beside it, so output keeps camera rate)")
    live.add_argument("--stats-every", type=_every, default=0, metavar="N",
                      help="log per-stage timings every N frames (the preview's t key shows them too)")
    live.add_argument("--screenshots", type=Path, default=Path("screenshots"),
                      help="folder for screenshots taken with the s key (default ./screenshots)")
    add_engine_args(live)


def register(sub: Any) -> None:
    """Add ``live``, ``apply`` and ``demo``: the live application's own commands."""
    live = sub.add_parser("live", help="webcam (or stream URL) in, virtual camera / window / file out")
    add_live_args(live)
    live.set_defaults(handler=cmd_live)

    apply = sub.add_parser("apply", help="a video or image file in, a made-up file out")
    apply.add_argument("input", type=Path)
    apply.add_argument("output", type=Path)
    apply.add_argument("--frame", type=_every, metavar="N",
                       help="for a video input and an image output: save frame N (0 is the first) made up")
    add_engine_args(apply)
    apply.set_defaults(handler=cmd_apply)

    demo = sub.add_parser("demo", help="the bundled clip and reference → out/demo.mp4 and a before/after PNG")
    demo.add_argument("--out", type=Path, default=Path("out"), help="output folder (default ./out)")
    add_engine_args(demo)
    demo.set_defaults(handler=cmd_demo)


def make_pipeline(args: argparse.Namespace, source: Any, sinks: list[Any], plan: Any = None,
                  live: bool = False) -> Any:
    """A pipeline from the shared makeup options (see ``add_engine_args``).

    ``plan`` (``realtime.presets.plan_references``) is worked out from the
    reference options when not given. A ``live`` run outlives a failing
    output and publishes at the source's rate by the clock (frames repeated
    when processing falls behind), so a recording lasts as long as the run.
    """
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
                              output_fps=getattr(args, "output_fps", None) or (source.fps if live else None),
                              async_inference=getattr(args, "async_inference", False), keep_going=live)
    try:
        return Pipeline(source, engine, sinks, options, reference=plan.initial)
    except BaseException:
        if source is not None:
            source.close()
        raise


def run_pipeline(pipeline: Any, total: int | None, desc: str, on_frame: Any = None) -> tuple[Any, int]:
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


def _apply_source(args: argparse.Namespace) -> Source:
    """The input of ``apply``, refused before any work when the output cannot hold what it gives."""
    if not args.input.is_file():
        raise UserError(f"cannot read {args.input}: file not found")
    video_in = args.input.suffix.lower() not in IMAGE_SUFFIXES
    image_out = args.output.suffix.lower() in IMAGE_SUFFIXES
    if video_in and image_out and args.frame is None:
        raise UserError(f"{args.input} is a video and {args.output} an image, which holds one frame: write a video "
                        f"(e.g. {args.output.with_suffix('.mp4')}), or add --frame N to save frame N")
    if args.frame is not None and not (video_in and image_out):
        raise UserError("--frame N is for a video input and an image output")
    if args.frame is None:
        return open_source(str(args.input))
    source = VideoFileSource(args.input, start=args.frame, limit=1)
    if source.frame_count == 0:
        source.close()
        raise UserError(f"{args.input} has no frame {args.frame}")
    return source


def cmd_apply(args: argparse.Namespace) -> int:
    sink = FileSink(args.output)
    source = _apply_source(args)
    pipeline = make_pipeline(args, source, [sink])
    stats, code = run_pipeline(pipeline, getattr(source, "frame_count", 1) or None, args.input.name)
    print(f"{args.output}: {stats.frames} frames, faces in {stats.frames_with_face}, {stats.fps:.1f} fps")
    return code


@dataclass
class LiveRun:
    """A live pipeline ready to run, with what to call after each of its frames."""

    pipeline: Pipeline
    plan: ReferencePlan
    callbacks: list[Callable[[int], None]]

    def on_frame(self, n: int) -> None:
        for callback in self.callbacks:
            callback(n)


def start_live(args: argparse.Namespace, outputs: Sequence[Sink] = ()) -> LiveRun:
    """The camera, the sinks the options ask for plus ``outputs``, the preview's hotkeys, the stats log."""
    if args.output is not None and args.output.suffix.lower() in IMAGE_SUFFIXES:
        raise UserError(f"--output records a video: give a video file (e.g. {args.output.with_suffix('.mp4')}); "
                        "the s key of --preview saves single frames")
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
    sinks.extend(outputs)
    if not sinks:
        raise UserError("choose an output: --virtual-cam, --preview and/or --output FILE")
    plan = plan_references(args, with_presets=preview is not None)  # a bad reference fails before the camera opens
    width, height = args.size or (None, None)
    source = open_live_source(str(args.camera), width=width, height=height, fps=args.fps, loop=not args.once)
    pipeline = make_pipeline(args, source, sinks, plan, live=True)
    controller = None
    if preview is not None:
        controller = Controller(pipeline, preview, plan.cycle, screenshots=args.screenshots)
    callbacks = [c for c in (controller.on_frame if controller else None, _stats_logger(pipeline, args.stats_every))
                 if c is not None]
    return LiveRun(pipeline, plan, callbacks)


def cmd_live(args: argparse.Namespace) -> int:
    live = start_live(args)
    stats, code = run_pipeline(live.pipeline, None, "live", live.on_frame)
    print(f"{stats.frames} frames, {stats.fps:.1f} fps, {stats.dropped} stale camera frames dropped")
    lost = live.pipeline.outputs.still_lost()
    for line in lost:
        print(f"ipmcam: error: {line}", file=sys.stderr)
    return code or (1 if lost else 0)


def _stats_logger(pipeline: Any, every: int) -> Any:
    """A per-frame callback printing the stage timings every ``every`` frames (None when 0)."""
    if every <= 0:
        return None
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
    args.out.mkdir(parents=True, exist_ok=True)
    args.reference = args.reference or DEMO_REFERENCE
    source = VideoFileSource(DEMO_CLIP)
    middle = max(source.frame_count // 2, 0)
    grab = _GrabSink(middle)
    video = args.out / "demo.mp4"
    pipeline = make_pipeline(args, source, [FileSink(video), grab])
    stats, code = run_pipeline(pipeline, source.frame_count, "demo")
    before = next(video_frames(DEMO_CLIP, start=middle, limit=1), None)
    picture = args.out / "demo_before_after.png"
    if before is not None and grab.frame is not None:
        cv2.imwrite(str(picture), np.hstack([before, grab.frame]))
    print(f"{video}: {stats.frames} frames, {stats.fps:.1f} fps ({pipeline.engine.name}); before/after: {picture}")
    return code
