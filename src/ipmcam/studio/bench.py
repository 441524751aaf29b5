"""``ipmcam studio-bench``: what the studio's stream costs the live filter, measured.

- JPEG encoding, per frame, at 640x480 and 1280x720: wall and CPU time
  (the encoding thread's own) and bytes, on the demo clip's frames.
- The MJPEG path's added latency: from the pipeline publishing a frame to a
  client holding all of its JPEG, over HTTP on loopback through uvicorn,
  with the pipeline paced at the clip's rate the way a camera paces it.
- The pipeline's fps at 640x480 with nobody watching and with one browser
  (a headless chromium showing /overlay) watching: runs of the whole clip,
  alternated, compared by their medians; once as fast as it goes, once
  paced like a 30 fps camera.

Frames are the demo clip letterboxed to each size, played from a
Motion-JPEG copy (every frame, in order) written once to a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ipmcam.errors import UserError
from ipmcam.media import video_frames
from ipmcam.realtime.cli import add_engine_args, make_pipeline
from ipmcam.realtime.sinks import Sink
from ipmcam.realtime.sources import VideoFileSource
from ipmcam.resources import DEMO_CLIP, DEMO_REFERENCE
from ipmcam.studio.app import create_app
from ipmcam.studio.hub import FrameHub, encode_jpeg
from ipmcam.studio.remote import RemoteControls
from ipmcam.studio.server import StudioServer, bind

SIZES = ((640, 480), (1280, 720))
#: headless in a container: no sandbox, no GPU, nothing that phones home; 800x600 is an OBS Browser Source's default
CHROMIUM_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=800,600")
WARMUP = 20  #: frames of each run left out of its rate (tracker and engine warming up)


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit (width, height), centred on black."""
    width, height = size
    scale = min(width / image.shape[1], height / image.shape[0])
    w, h = round(image.shape[1] * scale), round(image.shape[0] * scale)
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    left, top = (width - w) // 2, (height - h) // 2
    return cv2.copyMakeBorder(image, top, height - h - top, left, width - w - left, cv2.BORDER_CONSTANT)


def sized_clip(folder: Path, size: tuple[int, int]) -> Path:
    """The demo clip letterboxed to ``size``, as a Motion-JPEG file (quick to decode, same cost in every run)."""
    path = folder / f"demo_{size[0]}x{size[1]}.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    for frame in video_frames(DEMO_CLIP):
        writer.write(letterbox(frame, size))
    writer.release()
    return path


def percentiles(values: Iterable[float]) -> dict[str, float]:
    arr = np.asarray(list(values), np.float64)
    p50, p95 = np.percentile(arr, [50, 95])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "mean": round(float(arr.mean()), 2),
            "count": int(arr.size)}


def encode_cost(clip: Path) -> dict[str, Any]:
    """Wall and CPU ms and bytes of ``encode_jpeg`` on every frame of ``clip``."""
    wall, cpu, sizes = [], [], []
    for frame in video_frames(clip):
        t0, c0 = time.perf_counter(), time.thread_time()
        data = encode_jpeg(frame)
        cpu.append((time.thread_time() - c0) * 1000.0)
        wall.append((time.perf_counter() - t0) * 1000.0)
        sizes.append(len(data))
    return {"wall_ms": percentiles(wall), "cpu_ms": percentiles(cpu), "kbytes": round(float(np.mean(sizes)) / 1024, 1)}


class PublishTimes(Sink):
    """Notes when each frame is published (it sits just before the hub, so frame n here is the hub's frame n)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def write(self, frame: np.ndarray) -> None:
        self.times.append(time.perf_counter())


def iter_parts(chunks: Iterable[bytes]) -> Iterator[tuple[dict[str, str], bytes]]:
    """The parts of a multipart/x-mixed-replace body as (headers, payload), as the chunks arrive."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\r\n\r\n" in buffer:
            head, rest = buffer.split(b"\r\n\r\n", 1)
            headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:])
            size = int(headers["Content-Length"])
            if len(rest) < size + 2:
                break
            yield headers, rest[:size]
            buffer = rest[size + 2:]


@dataclass
class Run:
    """One pipeline run on a clip with the studio serving it."""

    fps: float
    frames: int
    encoded: int
    latency_ms: list[float]
    engine: str
    cpu_ms_per_frame: float  #: this process (pipeline, server, encoding): CPU time over the run / frames
    browser_cpu_ms_per_frame: float | None  #: the browser's processes, start to end, / frames


def run_studio(args: argparse.Namespace, clip: Path, watcher: str, paced: bool) -> Run:
    """The clip through the pipeline into the studio, watched by nobody, a ``client`` or a ``browser``."""
    hub, times = FrameHub(), PublishTimes()
    pipeline = make_pipeline(args, VideoFileSource(clip), [times, hub])
    sock = bind("127.0.0.1", 0)
    server = StudioServer(create_app(RemoteControls(pipeline, hub, "bench"), hub), sock)
    server.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    received: dict[int, float] = {}
    browser = client = None
    if watcher == "browser":
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            raise UserError("the browser run needs chromium (Debian: apt-get install -y chromium)")
        browser = subprocess.Popen([chromium, *CHROMIUM_ARGS, url + "overlay"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    elif watcher == "client":
        def read() -> None:
            with urllib.request.urlopen(url + "stream.mjpg", timeout=60) as response:  # noqa: S310 - our loopback
                for headers, _ in iter_parts(iter(lambda: response.read1(65536), b"")):
                    received[int(headers["X-Frame"])] = time.perf_counter()

        client = threading.Thread(target=read, daemon=True, name="ipmcam-bench-client")
        client.start()
    try:
        if watcher != "none":
            deadline = time.monotonic() + 60
            while hub.viewers == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            if hub.viewers == 0:
                raise UserError(f"the {watcher} did not open the stream within a minute")
        start, cpu = time.perf_counter(), time.process_time()

        def pace(n: int) -> None:  # a camera delivers at its rate: wait for frame n's time
            if paced:
                time.sleep(max(start + n / 30.0 - time.perf_counter(), 0.0))

        pipeline.run(on_frame=pace)
        cpu = time.process_time() - cpu
    finally:
        server.stop()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        if browser is not None:
            browser.terminate()
            browser.wait(timeout=30)
        if client is not None:
            client.join(timeout=10)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # counts a child's CPU once it has been waited for
    browser_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    steady = times.times[WARMUP:]
    fps = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    latency = [(at - times.times[n - 1]) * 1000.0 for n, at in received.items() if n > WARMUP]
    frames = max(len(times.times), 1)
    return Run(round(fps, 2), len(times.times), hub.encoded, latency, pipeline.engine.name,
               round(cpu * 1000.0 / frames, 2),
               None if browser is None else round(browser_cpu * 1000.0 / frames, 2))


def compare(runs: dict[str, list[Run]]) -> dict[str, Any]:
    """Runs with nobody and with a browser watching, side by side."""
    fps = {w: statistics.median(r.fps for r in rs) for w, rs in runs.items()}
    return {
        "fps_nobody_watching": [r.fps for r in runs["none"]],
        "fps_browser_watching": [r.fps for r in runs["browser"]],
        "frames_encoded_per_published": [round(r.encoded / max(r.frames, 1), 2) for r in runs["browser"]],
        "process_cpu_ms_per_frame_nobody": [r.cpu_ms_per_frame for r in runs["none"]],
        "process_cpu_ms_per_frame_browser": [r.cpu_ms_per_frame for r in runs["browser"]],
        "browser_cpu_ms_per_frame": [r.browser_cpu_ms_per_frame for r in runs["browser"]],
        "median_fps_nobody": fps["none"], "median_fps_browser": fps["browser"],
        "fps_change_percent": round(100.0 * (fps["browser"] - fps["none"]) / fps["none"], 1),
    }


#: the two throughput cases: as fast as the pipeline goes, and paced like a 30 fps camera
CASES = {"throughput_640x480": False, "camera_30fps_640x480": True}


def studio_bench(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ipmcam-studio-bench-") as tmp:
        clips = {size: sized_clip(Path(tmp), size) for size in SIZES}
        report: dict[str, Any] = {"encode": {f"{w}x{h}": encode_cost(clip) for (w, h), clip in clips.items()}}
        paced = run_studio(args, clips[SIZES[0]], "client", paced=True)
        report["mjpeg_latency_ms"] = {"640x480": percentiles(paced.latency_ms)}
        runs: dict[str, dict[str, list[Run]]] = {case: {"none": [], "browser": []} for case in CASES}
        for _ in range(args.repeats):  # alternated, so a change in the machine's load hits both alike
            for case, pace in CASES.items():
                for watcher, done in runs[case].items():
                    done.append(run_studio(args, clips[SIZES[0]], watcher, paced=pace))
    report["engine"] = paced.engine
    report["load_average_1min"] = {"before": round(load_before[0], 1), "after": round(os.getloadavg()[0], 1)}
    report.update({case: compare(case_runs) for case, case_runs in runs.items()})
    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"engine {report['engine']}; load average before {report['load_average_1min']['before']}, "
          f"after {report['load_average_1min']['after']}")
    print("JPEG encode per frame (quality 80):")
    for size, row in report["encode"].items():
        print(f"  {size:>9}: wall p50 {row['wall_ms']['p50']:.2f} ms, CPU p50 {row['cpu_ms']['p50']:.2f} ms, "
              f"{row['kbytes']:.0f} KB")
    lat = report["mjpeg_latency_ms"]["640x480"]
    print(f"MJPEG path, publish -> client has the frame (640x480, 30 fps): p50 {lat['p50']:.1f} ms, "
          f"p95 {lat['p95']:.1f} ms ({lat['count']} frames)")
    for case in CASES:
        t = report[case]
        print(f"{case}: fps nobody watching {t['fps_nobody_watching']} (median {t['median_fps_nobody']}), "
              f"one browser {t['fps_browser_watching']} (median {t['median_fps_browser']}): "
              f"{t['fps_change_percent']:+.1f}%")
        print(f"  CPU ms per frame, this process: nobody watching {t['process_cpu_ms_per_frame_nobody']}, "
              f"one browser {t['process_cpu_ms_per_frame_browser']}; the browser itself "
              f"{t['browser_cpu_ms_per_frame']}")


def cmd_studio_bench(args: argparse.Namespace) -> int:
    args.reference = args.reference or DEMO_REFERENCE
    args.async_inference = not args.sync
    report = studio_bench(args)
    print_report(report)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def register(sub: Any) -> None:
    """Add the ``studio-bench`` subcommand."""
    p = sub.add_parser("studio-bench", help="what the studio's stream costs: JPEG encoding, MJPEG latency, fps "
                                            "with and without a browser watching",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--repeats", type=int, default=3, help="throughput runs per case, alternated (default 3)")
    p.add_argument("--sync", action="store_true", help="run the generator in the video thread (as `live --sync`)")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    add_engine_args(p)
    p.set_defaults(handler=cmd_studio_bench)
