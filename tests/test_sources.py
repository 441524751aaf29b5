"""Sources: a live camera drops stale frames, a file keeps every frame in order."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from ipmcam.errors import SourceError
from ipmcam.realtime.sources import (
    CameraSource,
    ImageSource,
    PlaybackSource,
    VideoFileSource,
    open_live_source,
    open_source,
    plausible_fps,
)


class FakeCapture:
    """A camera (cv2.VideoCapture's API) that produces numbered frames, then is unplugged for good.

    It remembers what it was asked to ``set`` and reports a mode, like a
    V4L2 device that takes some settings and not others.
    """

    def __init__(self, n: int = 60, interval: float = 0.0, start: int = 0,
                 mode: tuple[int, int, float, str] = (640, 480, 30.0, "YUYV")) -> None:
        self.n, self.interval, self.i = n, interval, start
        self.released = threading.Event()
        self.exhausted = threading.Event()
        self.settings: list[tuple[int, float]] = []
        self.mode = mode

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoCapture's name
        return self.i < self.n

    def set(self, prop: int, value: float) -> bool:
        self.settings.append((prop, value))
        return True

    def get(self, prop: int) -> float:
        width, height, fps, fourcc = self.mode
        return {cv2.CAP_PROP_FRAME_WIDTH: width, cv2.CAP_PROP_FRAME_HEIGHT: height, cv2.CAP_PROP_FPS: fps,
                cv2.CAP_PROP_FOURCC: cv2.VideoWriter_fourcc(*fourcc)}.get(prop, 0.0)

    def read(self):
        if self.i >= self.n:
            self.exhausted.set()
            return False, None
        time.sleep(self.interval)
        frame = np.full((4, 4, 3), self.i % 256, np.uint8)
        self.i += 1
        return True, frame

    def release(self) -> None:
        self.released.set()


def test_camera_drops_stale_frames_and_yields_the_newest() -> None:
    capture = FakeCapture(n=60)
    source = CameraSource(0, capture_factory=lambda: capture, stall_timeout=0.05)
    frames = iter(source)
    first = next(frame for frame in frames if frame is not None)  # a None: the thread had not started yet
    assert capture.exhausted.wait(60)  # the camera delivered all 60 while the consumer held one frame
    newest = next(frames)
    source.close()
    assert newest.index == 59 > first.index  # the newest frame, not the next in line
    assert source.dropped == 60 - 2  # every frame in between was dropped, none queued
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
    deadline = time.monotonic() + 120  # a guard against a hang, not a speed requirement
    for frame in source:
        if frame is None:
            stalls += 1
            if time.monotonic() > deadline:
                break
            continue
        got.append(int(frame.image[0, 0, 0]))
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
    source.close()  # the reader is blocked on a full queue that nobody drains
    source._thread.join(60)
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


# --------------------------------------------------------------------------- real webcams: what to ask for


def _asked(capture: FakeCapture) -> dict[int, float]:
    return dict(capture.settings)


def test_a_webcam_is_asked_for_mjpg_above_vga_and_a_one_frame_buffer(caplog) -> None:
    capture = FakeCapture(mode=(1280, 720, 30.0, "MJPG"))
    with caplog.at_level("INFO", logger="ipmcam"):
        source = CameraSource(0, width=1280, height=720, fps=30, capture_factory=lambda: capture)
    source.close()
    asked = _asked(capture)
    assert asked[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG") and asked[cv2.CAP_PROP_BUFFERSIZE] == 1
    assert (asked[cv2.CAP_PROP_FRAME_WIDTH], asked[cv2.CAP_PROP_FRAME_HEIGHT], asked[cv2.CAP_PROP_FPS]) == (1280, 720, 30)
    order = [prop for prop, _ in capture.settings]
    assert order.index(cv2.CAP_PROP_FOURCC) < order.index(cv2.CAP_PROP_FRAME_WIDTH)  # V4L2 wants the format first
    assert "camera 0: 1280x720 at 30 fps, MJPG" in caplog.text


def test_vga_stays_raw_and_a_camera_that_ignores_the_request_is_reported(caplog) -> None:
    capture = FakeCapture(mode=(640, 480, 30.0, "YUYV"))
    CameraSource(0, width=640, height=480, capture_factory=lambda: capture).close()
    assert cv2.CAP_PROP_FOURCC not in _asked(capture) and _asked(capture)[cv2.CAP_PROP_BUFFERSIZE] == 1
    stubborn = FakeCapture(mode=(640, 480, 10.0, "YUYV"))
    with caplog.at_level("WARNING", logger="ipmcam"):
        CameraSource(2, width=1920, height=1080, fps=30, capture_factory=lambda: stubborn).close()
    assert "camera 2 delivers 640x480 at 10 fps, YUYV, not the 1920x1080 at 30 fps asked for" in caplog.text


def test_a_stream_url_is_not_sent_camera_settings_and_a_nonsense_rate_is_ignored() -> None:
    capture = FakeCapture(mode=(1280, 720, 90000.0, "H264"))  # what some RTSP servers report as a frame rate
    source = CameraSource("rtsp://example.invalid/cam", width=1280, height=720, capture_factory=lambda: capture)
    source.close()
    assert capture.settings == [] and source.fps == 30.0
    assert plausible_fps(29.97, 30.0) == 29.97 and plausible_fps(0.0, 25.0) == 25.0


# --------------------------------------------------------------------------- a video file played like a camera


class SimulatedClock:
    """Time that passes only when the source waits: playback timing without a wall clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float, stop: threading.Event) -> None:
        self.waits.append(seconds)
        self.now += seconds


def _take(source, n: int) -> list:
    frames = []
    for frame in source:  # the consumer takes each frame as soon as it is there
        if frame is not None:
            frames.append(frame)
        if len(frames) == n:
            break
    return frames


def test_a_clip_plays_at_its_own_rate_and_loops_quietly(shared_data, caplog) -> None:
    clock = SimulatedClock()
    source = PlaybackSource(shared_data / "videos" / "d18.mp4", clock=clock, wait=clock.wait)
    frames = []
    deadline = time.monotonic() + 120  # a guard against a hang, not a speed requirement
    with caplog.at_level("INFO", logger="ipmcam"):
        while (not frames or frames[-1].index < 216) and time.monotonic() < deadline:
            frames += _take(source, 1)  # the reader runs on through the end of the 216-frame clip and past it
    source.close()
    assert source.fps == pytest.approx(30.0) and source.loops >= 1
    # Every frame was due at index / fps on the clock, and delivered then, across the loop too.
    for frame in frames:
        assert frame.captured_at == pytest.approx(frame.index / 30.0)
        assert frame.timestamp == pytest.approx(frame.index / 30.0)
    assert frames[-1].index >= 216 and [f.index for f in frames] == sorted(f.index for f in frames)
    assert "reconnect" not in caplog.text and not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_clip_played_once_ends(shared_data) -> None:
    clock = SimulatedClock()
    source = PlaybackSource(shared_data / "videos" / "d18.mp4", loop=False, clock=clock, wait=clock.wait)
    indices = [frame.index for frame in source if frame is not None]
    source.close()
    assert indices == sorted(indices) and indices[-1] == 215 and clock.now == pytest.approx(215 / 30.0)


def test_live_source_dispatch(shared_data, tmp_path) -> None:
    clip = open_live_source(str(shared_data / "videos" / "d18.mp4"), loop=False)
    assert isinstance(clip, PlaybackSource) and clip.live
    clip.close()
    with pytest.raises(SourceError, match="no such camera or file"):
        open_live_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(SourceError, match="use `ipmcam apply` for photos"):
        open_live_source(str(shared_data / "stills" / "d9.jpg"))
