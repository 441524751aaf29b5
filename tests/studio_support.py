"""A running ``ipmcam studio`` for the studio tests: a still clip as the camera, the real server on a free port."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2

from ipmcam.cli import build_parser
from ipmcam.media import video_frames
from ipmcam.resources import DEMO_CLIP
from ipmcam.studio.cli import Studio, open_studio

#: frames of the still clip; the camera reopens it when it ends, so it plays on and on
STILL_FRAMES = 30


def still_clip(path: Path) -> Path:
    """A clip (Motion JPEG, ``.avi``) of the demo's first frame, unchanging: a preview only changes when a setting does.

    Every frame is coded alone and alike, so every frame decodes to the same pixels.
    """
    frame = next(video_frames(DEMO_CLIP, limit=1))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (frame.shape[1], frame.shape[0]))
    for _ in range(STILL_FRAMES):
        writer.write(frame)
    writer.release()
    return path


def wait_for(condition: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds (generous: the CPU is shared)."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def running_studio(camera: Path, *options: str) -> Iterator[Studio]:
    """``ipmcam studio --camera CAMERA --port 0 --engine classic OPTIONS``, its pipeline in a thread."""
    args = build_parser().parse_args(["studio", "--camera", str(camera), "--port", "0", "--engine", "classic",
                                      *options])
    studio = open_studio(args)
    pipeline = studio.live.pipeline
    thread = threading.Thread(target=pipeline.run, kwargs={"on_frame": studio.live.on_frame}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: studio.hub.frames >= 3, what="the first frames")
        yield studio
    finally:
        pipeline.stop()
        thread.join(timeout=30)
        studio.server.stop()
