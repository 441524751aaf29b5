"""Sources: a live camera drops stale frames, a file keeps every frame in order."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ipmcam.errors import SourceError
from ipmcam.realtime.sources import CameraSource, ImageSource, VideoFileSource, open_source


class FakeCapture:
    """A camera that produces numbered frames at a fixed rate, then is unplugged for good."""

    def __init__(self, n: int = 60, interval: float = 0.005, start: int = 0) -> None:
        self.n, self.interval, self.i = n, interval, start
        self.released = threading.Event()

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoCapture's name
        return self.i < self.n

    def set(self, *_: object) -> bool:
        return True

    def get(self, _: int) -> float:
        return 200.0

    def read(self):
        if self.i >= self.n:
            return False, None
        time.sleep(self.interval)
        frame = np.full((4, 4, 3), self.i % 256, np.uint8)
        self.i += 1
        return True, frame

    def release(self) -> None:
        self.released.set()


def test_camera_drops_stale_frames_and_yields_the_newest() -> None:
    capture = FakeCapture(n=60, interval=0.004)
    source = CameraSource(0, capture_factory=lambda: capture, stall_timeout=0.05)
    seen = []
    for frame in source:
        if frame is None:  # the camera is gone: the stream stalls instead of ending
            break
        seen.append(frame.index)
        time.sleep(0.02)  # a slow consumer: 5x slower than the camera
    source.close()
    assert seen == sorted(seen)
    assert len(seen) < 30
    assert source.dropped >= 60 - len(seen) - 1
    assert seen[-1] >= 55  # the newest frames still arrive
    assert capture.released.is_set()


def test_unplugged_camera_stalls_then_reconnects() -> None:
    plugged = [FakeCapture(n=5, interval=0.002), FakeCapture(n=10, interval=0.002, start=5)]
    attempts = []

    def factory():
        attempts.append(1)
        # Two failed tries while unplugged, then the second device comes back.
        if len(attempts) in (2, 3):
            return FakeCapture(n=0)
        return plugged.pop(0)

    source = CameraSource(0, capture_factory=factory, stall_timeout=0.05)
    got, stalls = [], 0
    for frame in source:
        if frame is None:
            stalls += 1
            if stalls > 100:
                break
            continue
        got.append(int(frame.image[0, 0, 0]))
        time.sleep(0.005)
        if got[-1] == 9:
            break
    source.close()
    assert stalls >= 1 and source.reconnects == 1
    assert got[-1] == 9 and got == sorted(got)


def test_camera_that_cannot_open_is_a_clear_error() -> None:
    class Closed(FakeCapture):
        def isOpened(self) -> bool:  # noqa: N802
            return False

    with pytest.raises(SourceError, match="cannot open camera 3"):
        CameraSource(3, capture_factory=Closed)


def test_video_file_yields_every_frame_in_order(shared_data) -> None:
    source = VideoFileSource(shared_data / "videos" / "d18.mp4")
    indices = [f.index for f in source]
    source.close()
    assert indices == list(range(source.frame_count))
    assert source.frame_count == 216 and source.fps == pytest.approx(30.0)


def test_closing_a_file_source_mid_way_ends_the_reader(shared_data) -> None:
    source = VideoFileSource(shared_data / "videos" / "d6.mp4", queue_size=2)
    frames = iter(source)
    next(frames)
    start = time.perf_counter()
    source.close()
    assert time.perf_counter() - start < 1.0
    assert not source._thread.is_alive()


def test_open_source_dispatch_and_errors(shared_data, tmp_path) -> None:
    assert isinstance(open_source(str(shared_data / "stills" / "d9.jpg")), ImageSource)
    with pytest.raises(SourceError, match="file not found"):
        open_source(str(tmp_path / "missing.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    with pytest.raises(SourceError, match="not a readable video"):
        open_source(str(junk))
    bad_image = tmp_path / "x.png"
    bad_image.write_bytes(b"nope")
    with pytest.raises(SourceError, match="not an image"):
        open_source(str(bad_image))
