"""`ipmcam cameras`: the cameras this machine has and, where the OS says, the modes each one offers.

On Linux the V4L2 devices are asked directly (through linuxpy): their names,
drivers and every pixel format, size and frame rate they list, so a user can
pick a ``--size`` and ``--fps`` the camera really has (MJPG modes are the fast
ones above 640x480). Elsewhere OpenCV can only try indices, so each camera
that opens is listed with the mode it starts in.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from ipmcam.realtime.sources import delivered_mode

#: indices tried where the OS cannot list its cameras
PROBED_INDICES = range(8)


@dataclass
class Mode:
    """One pixel format at one size, with the frame rates offered there."""

    fourcc: str
    width: int
    height: int
    rates: list[float] = field(default_factory=list)

    def describe(self) -> str:
        rates = ", ".join(f"{r:g}" for r in sorted(set(self.rates), reverse=True) if r > 0)
        return f"{self.fourcc:<5} {self.width}x{self.height}" + (f"  {rates} fps" if rates else "")


@dataclass
class Camera:
    """A camera: what to pass to ``--camera``, its name, and its modes (empty where the OS does not say)."""

    index: int | str
    name: str
    modes: list[Mode] = field(default_factory=list)
    virtual: bool = False


def group_modes(frame_types: Iterable[Any]) -> list[Mode]:
    """linuxpy's frame types (pixel_format, width, height, min_fps, max_fps) as one Mode per format and size."""
    modes: dict[tuple[str, int, int], Mode] = {}
    for ft in frame_types:
        fourcc = getattr(ft.pixel_format, "name", str(ft.pixel_format))
        mode = modes.setdefault((fourcc, ft.width, ft.height), Mode(fourcc, ft.width, ft.height))
        mode.rates += [float(ft.max_fps), float(ft.min_fps)] if ft.min_fps != ft.max_fps else [float(ft.max_fps)]
    return sorted(modes.values(), key=lambda m: (m.fourcc != "MJPEG", -m.width * m.height, m.fourcc))


def _index(path: Path) -> int | str:
    match = re.fullmatch(r"video(\d+)", path.name)
    return int(match.group(1)) if match else str(path)


def v4l2_cameras(dev: str = "/dev") -> list[Camera]:
    """The V4L2 capture devices and their modes (Linux)."""
    from linuxpy.video.device import Capability, Device, iter_video_files  # Linux only: imported where used

    cameras = []
    for path in sorted(iter_video_files(dev), key=lambda p: (len(p.name), p.name)):
        try:
            with Device(path) as device:
                info = device.info
                if Capability.VIDEO_CAPTURE not in info.device_capabilities:
                    continue  # an output-only node, or the metadata node a UVC camera has beside its video one
                cameras.append(Camera(_index(path), f"{info.card} ({info.driver})", group_modes(info.frame_types),
                                      virtual=info.driver == "v4l2 loopback"))
        except OSError as exc:  # busy, vanished since the listing, or not a V4L2 device at all
            cameras.append(Camera(_index(path), f"{path} (cannot be queried: {exc.strerror or exc})"))
    return cameras


def probed_cameras() -> list[Camera]:
    """Cameras found by opening indices with OpenCV (where the OS gives no list): each with its starting mode."""
    cameras = []
    for index in PROBED_INDICES:
        capture = cv2.VideoCapture(index)
        try:
            if capture.isOpened():
                width, height, fps, fourcc = delivered_mode(capture)
                cameras.append(Camera(index, f"camera {index}", [Mode(fourcc, width, height, [fps])]))
        finally:
            capture.release()
    return cameras


def list_cameras() -> list[Camera]:
    return v4l2_cameras() if sys.platform.startswith("linux") else probed_cameras()


def format_cameras(cameras: list[Camera]) -> str:
    if not cameras:
        return "no cameras found\n"
    lines = []
    for camera in cameras:
        note = "  (a virtual camera: ipmcam can publish to it with --virtual-cam --device)" if camera.virtual else ""
        lines.append(f"{camera.index}  {camera.name}{note}")
        lines += [f"    {mode.describe()}" for mode in camera.modes]
    return "\n".join(lines) + "\n"


def cmd_cameras(args: argparse.Namespace) -> int:
    sys.stdout.write(format_cameras(list_cameras()))
    return 0


def register(sub: Any) -> None:
    """Add the ``cameras`` subcommand."""
    p = sub.add_parser("cameras", help="list the cameras (and, on Linux, their formats, sizes and frame rates)",
                       description="Cameras to pass to `ipmcam live --camera N`. MJPG modes are the fast ones above "
                                   "640x480; `live` asks for MJPG there by itself.")
    p.set_defaults(handler=cmd_cameras)
