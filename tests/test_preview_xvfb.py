"""The real preview window, on a virtual X screen: the frame is shown, the help overlay is drawn on it.

A private Xvfb server is started for the test; a child process (so the GUI
toolkit binds to that display) opens the real ``PreviewSink``, shows a frame
plainly and then with the help overlay, and the test grabs the screen with
``xwd`` after each. The grabbed window must hold the frame, and, with the
overlay, exactly what ``controls.draw_help`` draws on it.

Needs ``Xvfb`` and ``xwd`` (Debian: ``apt-get install -y xvfb x11-apps``);
skipped without them.
"""
from __future__ import annotations

import os
import select
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from ipmcam.realtime import controls
from ipmcam.resources import DEMO_CLIP

REPO = Path(__file__).resolve().parents[1]
XVFB, XWD = shutil.which("Xvfb"), shutil.which("xwd")

pytestmark = pytest.mark.skipif(
    XVFB is None or XWD is None,
    reason="needs Xvfb and xwd for the preview-window screenshot test (apt-get install -y xvfb x11-apps)",
)

CHILD = r"""
import sys, cv2
from ipmcam.realtime import controls
from ipmcam.realtime.sinks import PreviewSink

frame = cv2.imread(sys.argv[1])
sink = PreviewSink(title="ipmcam", show_fps=False)
sink.open(frame.shape[1], frame.shape[0], 30.0)
for mode in sys.stdin:
    mode = mode.strip()
    if mode == "quit":
        break
    sink.overlay = controls.draw_help if mode == "help" else None
    for _ in range(25):  # a few frames, so the window is mapped and painted
        sink.write(frame)
        cv2.waitKey(20)
    print(mode, flush=True)
sink.close()
"""


def parse_xwd(data: bytes) -> np.ndarray:
    """An xwd dump (24/32-bit TrueColor, as Xvfb makes) as a BGR uint8 image."""
    fields = struct.unpack(">25I", data[:100])
    header_size, width, height, byte_order, bits_per_pixel, bytes_per_line = (
        fields[0], fields[4], fields[5], fields[7], fields[11], fields[12])
    ncolors = fields[19]
    if bits_per_pixel not in (24, 32):
        raise ValueError(f"expected a 24- or 32-bit screen, got {bits_per_pixel} bits per pixel")
    n = bits_per_pixel // 8
    start = header_size + 12 * ncolors
    rows = np.frombuffer(data, np.uint8, count=bytes_per_line * height, offset=start).reshape(height, bytes_per_line)
    pixels = rows[:, : n * width].reshape(height, width, n)
    if byte_order == 1:  # MSB first: (X) R G B
        pixels = pixels[..., ::-1]
    return np.ascontiguousarray(pixels[..., :3])  # B G R


@pytest.fixture(scope="module")
def display():
    proc = subprocess.Popen([XVFB, "-displayfd", "1", "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    number = proc.stdout.readline().strip() if ready else b""
    if not number:
        proc.kill()
        pytest.skip("Xvfb did not start")
    yield f":{number.decode()}"
    proc.terminate()
    proc.wait(5)


def _grab(display: str) -> np.ndarray:
    data = subprocess.run([XWD, "-root", "-silent", "-display", display], capture_output=True, check=True,
                          timeout=20).stdout
    return parse_xwd(data)


def _find(screen: np.ndarray, frame: np.ndarray) -> tuple[int, int, float]:
    """Where ``frame`` sits on the screen (top-left x, y) and how well it matches (0..1)."""
    scores = cv2.matchTemplate(screen, frame, cv2.TM_CCOEFF_NORMED)
    _, best, _, (x, y) = cv2.minMaxLoc(scores)
    return x, y, best


def _ask(child: subprocess.Popen, mode: str) -> None:
    child.stdin.write(f"{mode}\n")
    child.stdin.flush()
    ready, _, _ = select.select([child.stdout], [], [], 60)
    line = child.stdout.readline().strip() if ready else ""
    assert line == mode, f"preview child did not answer {mode!r}: {child.stderr.read() if child.poll() is not None else ''}"


def _shown(child: subprocess.Popen, display: str, mode: str, painted: Callable[[np.ndarray], bool]) -> np.ndarray:
    """The screen once the window shows ``mode``: the child repaints until ``painted`` holds (a loaded
    machine maps and paints a new window late), at most 30 rounds of 25 frames."""
    for _ in range(30):
        _ask(child, mode)
        screen = _grab(display)
        if painted(screen):
            break
    return screen


def test_preview_window_shows_the_frame_and_the_help_overlay(display, tmp_path) -> None:
    capture = cv2.VideoCapture(str(DEMO_CLIP))
    frame = capture.read()[1][:360, :480].copy()
    capture.release()
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), frame)
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=REPO, env=env, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        plain = _shown(child, display, "plain", lambda screen: _find(screen, frame)[2] > 0.98)
        expected = controls.draw_help(frame.copy())
        helped = _shown(child, display, "help", lambda screen: _find(screen, expected)[2] > 0.98)
        child.stdin.write("quit\n")
        child.stdin.flush()
        child.wait(20)
    finally:
        if child.poll() is None:
            child.kill()
    cv2.imwrite(str(tmp_path / "screen_plain.png"), plain)
    cv2.imwrite(str(tmp_path / "screen_help.png"), helped)

    assert plain.std() > 5, "the screen is blank: no window was drawn"
    x, y, score = _find(plain, frame)
    assert score > 0.98, f"the frame is not on the screen (best match {score:.3f})"
    h, w = frame.shape[:2]
    shown = plain[y:y + h, x:x + w]
    assert np.abs(shown.astype(int) - frame.astype(int)).mean() < 2.0

    box = np.any(expected != frame, axis=-1)
    assert box.mean() > 0.05
    window = helped[y:y + h, x:x + w].astype(int)
    assert np.abs(window - expected.astype(int)).mean() < 2.0  # what the window shows is the overlay code's frame
    assert np.abs(window - frame.astype(int))[box].mean() > 20  # and the overlay really is on screen
    assert np.abs(window - frame.astype(int))[~box].mean() < 2.0  # nothing else moved
