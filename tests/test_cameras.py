"""`ipmcam cameras`: V4L2 modes grouped per format and size, devices that cannot be asked, the command itself."""
from __future__ import annotations

import subprocess
import sys
from collections import namedtuple
from fractions import Fraction
from pathlib import Path

import pytest

from ipmcam.realtime import cameras
from ipmcam.realtime.cameras import Camera, Mode, format_cameras, group_modes

FrameType = namedtuple("FrameType", "type pixel_format width height min_fps max_fps step_fps")  # linuxpy's shape


class Fmt:
    """A pixel format as linuxpy names it."""

    def __init__(self, name: str) -> None:
        self.name = name


def test_modes_are_grouped_per_format_and_size_fast_ones_first() -> None:
    mjpg, yuyv = Fmt("MJPEG"), Fmt("YUYV")
    frame_types = [FrameType(1, yuyv, 1280, 720, Fraction(10), Fraction(10), 0),
                   FrameType(1, yuyv, 640, 480, Fraction(30), Fraction(30), 0),
                   FrameType(1, mjpg, 1280, 720, Fraction(30), Fraction(30), 0),
                   FrameType(1, mjpg, 1280, 720, Fraction(15), Fraction(15), 0)]
    modes = group_modes(frame_types)
    assert [m.describe() for m in modes] == ["MJPEG 1280x720  30, 15 fps", "YUYV  1280x720  10 fps",
                                             "YUYV  640x480  30 fps"]


def test_the_listing_names_each_camera_and_its_modes() -> None:
    text = format_cameras([Camera(0, "Integrated Camera (uvcvideo)", [Mode("MJPEG", 1280, 720, [30.0])]),
                           Camera(10, "ipmcam (v4l2 loopback)", virtual=True)])
    assert text.splitlines() == ["0  Integrated Camera (uvcvideo)", "    MJPEG 1280x720  30 fps",
                                 "10  ipmcam (v4l2 loopback)  (a virtual camera: ipmcam can publish to it with "
                                 "--virtual-cam --device)"]
    assert format_cameras([]) == "no cameras found\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="V4L2 devices are Linux's")
def test_a_device_node_that_is_no_camera_is_listed_as_such(tmp_path) -> None:
    (tmp_path / "video3").symlink_to("/dev/null")  # a character device that answers no V4L2 question
    listed = cameras.v4l2_cameras(str(tmp_path))
    assert [c.index for c in listed] == [3] and "cannot be queried" in listed[0].name and not listed[0].modes


def test_the_command_runs_on_any_machine() -> None:
    proc = subprocess.run([sys.executable, "-m", "ipmcam", "cameras"], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout == "no cameras found\n" or proc.stdout[0].isdigit()
