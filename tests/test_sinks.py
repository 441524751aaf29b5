"""Sinks: the virtual camera through a registered fake pyvirtualcam backend, files, errors."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import pyvirtualcam

from ipmcam.errors import SinkError
from ipmcam.realtime.sinks import FileSink, NullSink, PreviewSink, VirtualCameraSink


class FakeBackend:
    """Records what pyvirtualcam hands a backend (the real API's constructor keywords)."""

    instances: list["FakeBackend"] = []

    def __init__(self, width: int, height: int, fps: float, fourcc: int, device: str | None = None, **_: object):
        self.width, self.height, self.fps, self.fourcc, self.dev = width, height, fps, fourcc, device
        self.frames: list[np.ndarray] = []
        self.closed = False
        FakeBackend.instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        self.frames.append(frame.copy())

    def close(self) -> None:
        self.closed = True

    def device(self) -> str:
        return self.dev or "fake0"

    def native_fourcc(self) -> None:
        return None


pyvirtualcam.register_backend("fake", FakeBackend)


def test_virtual_camera_receives_frames_size_fps_and_bgr() -> None:
    FakeBackend.instances.clear()
    sink = VirtualCameraSink(device="fake7", backend="fake")
    sink.open(320, 240, 25.0)
    frames = [np.full((240, 320, 3), i, np.uint8) for i in range(5)]
    for frame in frames:
        sink.write(frame)
    sink.close()
    backend = FakeBackend.instances[-1]
    assert (backend.width, backend.height, backend.fps) == (320, 240, 25.0)
    assert backend.fourcc == pyvirtualcam.camera.encode_fourcc(pyvirtualcam.PixelFormat.BGR.value)
    assert backend.dev == "fake7" and backend.closed
    received = [f.reshape(240, 320, 3) for f in backend.frames]  # pyvirtualcam passes frames flattened
    assert [int(f[0, 0, 0]) for f in received] == [0, 1, 2, 3, 4]


def test_wrong_frame_size_is_refused_by_the_real_api() -> None:
    sink = VirtualCameraSink(backend="fake")
    sink.open(320, 240, 30.0)
    with pytest.raises(ValueError):
        sink.write(np.zeros((100, 100, 3), np.uint8))
    sink.close()


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="names a v4l2loopback device path, which only Linux has")


@linux_only
def test_missing_virtual_camera_explains_how_to_create_one(tmp_path) -> None:
    sink = VirtualCameraSink(backend="v4l2loopback", device=str(tmp_path / "video99"))  # a path that is no device
    with pytest.raises(SinkError) as err:
        sink.open(640, 480, 30.0)
    message = str(err.value)
    assert "v4l2loopback" in message and "OBS" in message and "\n" not in message


@linux_only
def test_cli_live_without_virtual_camera_exits_with_one_line(tmp_path) -> None:
    # A device path that is no device, so the answer is the same on a host that has a virtual camera.
    proc = subprocess.run([sys.executable, "-m", "ipmcam", "live", "--virtual-cam", "--device", str(tmp_path / "video99"),
                           "--reference", "x.jpg"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("ipmcam")]
    assert len(lines) == 1 and "modprobe v4l2loopback" in lines[0] and "OBS" in lines[0]
    assert "Traceback" not in proc.stderr


def test_file_sink_writes_a_playable_video(tmp_path) -> None:
    path = tmp_path / "out.mp4"
    sink = FileSink(path)
    sink.open(64, 48, 12.0)
    for i in range(10):
        sink.write(np.full((48, 64, 3), i * 20, np.uint8))
    sink.close()
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (64, 48)


def test_file_sink_refuses_an_unwritable_path_before_any_work(tmp_path) -> None:
    with pytest.raises(SinkError, match="does not exist"):
        FileSink(tmp_path / "no" / "such" / "dir.mp4")
    with pytest.raises(SinkError, match="it is a folder"):
        FileSink(tmp_path)
    with pytest.raises(SinkError, match="unknown file type .xyz"):
        FileSink(tmp_path / "out.xyz")


def test_a_virtual_camera_that_stops_taking_frames_is_a_sink_error() -> None:
    class Removed(FakeBackend):
        def send(self, frame: np.ndarray) -> None:
            raise RuntimeError("write failed: No such device")

    pyvirtualcam.register_backend("removed", Removed)
    sink = VirtualCameraSink(device="fake8", backend="removed")
    sink.open(32, 24, 30.0)
    with pytest.raises(SinkError, match="virtual camera fake8 stopped taking frames"):
        sink.write(np.zeros((24, 32, 3), np.uint8))
    sink.close()
    assert sink.reopenable


def test_null_sink_counts() -> None:
    sink = NullSink()
    for _ in range(3):
        sink.write(np.zeros((2, 2, 3), np.uint8))
    assert sink.frames == 3


@linux_only
def test_a_preview_without_a_display_is_refused_up_front(monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError, match="no display"):  # OpenCV's Qt would abort the process instead
        PreviewSink()
