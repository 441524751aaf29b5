"""Soak run: the full pipeline on a looped clip for many minutes, watching memory and errors.

`ipmcam soak --minutes 10` feeds the bundled clip (looped, every frame, in
order: file mode) through the same Pipeline as `live`, writes the output to a
video file and samples resident memory every few seconds. It passes when the
run ends with zero exceptions, one output frame per input frame, and resident
memory after warm-up growing by less than the limit.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ipmcam.engines.factory import create_engine
from ipmcam.measure.frames import LoopedVideo, OnDemandSource
from ipmcam.media import open_video
from ipmcam.realtime.cli import DEMO_CLIP, DEMO_REFERENCE, add_engine_args
from ipmcam.realtime.pipeline import Pipeline, PipelineOptions
from ipmcam.realtime.sinks import FileSink


@dataclass
class SoakResult:
    """What a soak run measured; ``ok`` is the verdict."""

    minutes: float
    frames_in: int = 0
    frames_out: int = 0
    exceptions: list[str] = field(default_factory=list)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)
    warmup_seconds: float = 60.0
    rss_limit_mb: float = 20.0
    engine: str = ""
    fps: float = 0.0

    @property
    def rss_growth_mb(self) -> float:
        after = [mb for t, mb in self.rss_mb if t >= self.warmup_seconds]
        return max(after) - after[0] if len(after) > 1 else 0.0

    @property
    def ok(self) -> bool:
        return not self.exceptions and self.frames_in == self.frames_out > 0 and self.rss_growth_mb < self.rss_limit_mb


def rss_mb() -> float:
    """This process's resident memory (Linux /proc; 0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def soak(args: argparse.Namespace) -> SoakResult:
    result = SoakResult(args.minutes, warmup_seconds=args.warmup, rss_limit_mb=args.rss_limit)
    video = LoopedVideo(DEMO_CLIP, _clip_size(DEMO_CLIP))
    counted = _Counted(video)
    source = OnDemandSource(counted, video.fps)
    engine = create_engine(args.engine, args.backend, args.precision,
                           model_dir=str(args.model_dir) if args.model_dir else None)
    result.engine = engine.name
    sink = FileSink(args.output)
    pipeline = Pipeline(source, engine, [sink], PipelineOptions(max_faces=args.max_faces),
                        reference=args.reference or DEMO_REFERENCE)
    start = time.perf_counter()
    done = threading.Event()

    def sample() -> None:
        while not done.wait(args.sample_every):
            result.rss_mb.append((round(time.perf_counter() - start, 1), round(rss_mb(), 1)))
            if time.perf_counter() - start >= args.minutes * 60:
                pipeline.stop()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stats = pipeline.run()
        result.frames_out = sink.frames
        result.fps = round(stats.fps, 2)
    except Exception as exc:  # noqa: BLE001 - a soak reports every failure instead of dying
        result.exceptions.append(f"{type(exc).__name__}: {exc}")
    finally:
        done.set()
        sampler.join()
    result.frames_in = counted.count
    return result


class _Counted:
    """Counts the frames a frame maker hands out."""

    def __init__(self, make: Any) -> None:
        self.make, self.count = make, 0

    def __call__(self, index: int) -> Any:
        self.count += 1
        return self.make(index)

    def release(self) -> None:
        self.make.release()


def _clip_size(path: Path) -> tuple[int, int]:
    import cv2

    cap = open_video(path)
    size = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    return size


def cmd_soak(args: argparse.Namespace) -> int:
    result = soak(args)
    report = {**asdict(result), "rss_growth_mb": round(result.rss_growth_mb, 1), "ok": result.ok}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(f"soak {result.minutes} min, {result.engine}: {result.frames_out}/{result.frames_in} frames out, "
          f"{result.fps} fps, RSS growth after warm-up {result.rss_growth_mb:.1f} MB, "
          f"{len(result.exceptions)} exceptions -> {'PASS' if result.ok else 'FAIL'}")
    return 0 if result.ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("soak", help="run the pipeline on a looped clip for minutes; check memory and errors")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before memory growth is measured")
    p.add_argument("--rss-limit", type=float, default=20.0, help="allowed RSS growth after warm-up, MB")
    p.add_argument("--sample-every", type=float, default=5.0, help="seconds between memory samples")
    p.add_argument("--output", type=Path, default=Path("out/soak.mp4"))
    p.add_argument("--json", type=Path, help="write the result here")
    add_engine_args(p)
    p.set_defaults(handler=cmd_soak)
