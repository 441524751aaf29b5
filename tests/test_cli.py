"""The command line end to end: the demo, apply on real files, lips that move towards the reference."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from ipmcam.face.masks import LIPS
from ipmcam.face.reference import reference_crop
from ipmcam.ipmnet.color import delta_e2000, robust_colour, to_lab
from ipmcam.resources import DEMO_CLIP, DEMO_REFERENCE

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ipmcam", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def test_demo_writes_a_video_like_its_input_and_a_before_after(tmp_path) -> None:
    proc = _cli("demo", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "fps" in proc.stdout
    src, out = cv2.VideoCapture(str(DEMO_CLIP)), cv2.VideoCapture(str(tmp_path / "demo.mp4"))
    for prop in (cv2.CAP_PROP_FRAME_COUNT, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS):
        assert out.get(prop) == src.get(prop)
    picture = cv2.imread(str(tmp_path / "demo_before_after.png"))
    h, w = int(src.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(src.get(cv2.CAP_PROP_FRAME_WIDTH))
    assert picture.shape == (h, 2 * w, 3)
    assert not np.array_equal(picture[:, :w], picture[:, w:])


def _lips(image: np.ndarray) -> np.ndarray:
    crop, masks = reference_crop(image)
    return robust_colour(to_lab(crop), masks[LIPS])


def test_apply_moves_lips_towards_a_strong_reference(tmp_path, shared_data) -> None:
    reference = shared_data / "faces" / "makeup" / "vFG112.png"  # deep red lipstick
    ref_lips = _lips(cv2.imread(str(reference)))
    assert np.hypot(*ref_lips[1:]) > 30
    for name in ("d9.jpg", "d8.jpg"):
        out = tmp_path / f"{name}.png"
        proc = _cli("apply", str(shared_data / "stills" / name), str(out), "--reference", str(reference),
                    "--engine", "classic")
        assert proc.returncode == 0, proc.stderr
        before = delta_e2000(_lips(cv2.imread(str(shared_data / "stills" / name))), ref_lips)
        after = delta_e2000(_lips(cv2.imread(str(out))), ref_lips)
        assert after < 0.7 * before, (name, before, after)


def test_apply_to_a_still_without_a_face_copies_it_exactly(tmp_path, shared_data) -> None:
    out = tmp_path / "dog.png"
    proc = _cli("apply", str(shared_data / "stills" / "s25.jpg"), str(out), "--reference",
                str(DEMO_REFERENCE), "--engine", "classic")
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(cv2.imread(str(out)), cv2.imread(str(shared_data / "stills" / "s25.jpg")))


def test_live_from_a_clip_loops_quietly_records_logs_stages_and_stops_on_sigterm(tmp_path) -> None:
    import os
    import signal
    import threading

    clip_frames_count = int(cv2.VideoCapture(str(DEMO_CLIP)).get(cv2.CAP_PROP_FRAME_COUNT))
    out = tmp_path / "live.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "ipmcam", "live", "--camera", str(DEMO_CLIP),
                             "--output", str(out), "--stats-every", "10", "--engine", "classic",
                             "--reference", str(DEMO_REFERENCE)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    past_the_end = threading.Event()

    def read_stderr() -> None:
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("frame ") and int(line.split()[1].rstrip(":")) > clip_frames_count:
                past_the_end.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    looped = past_the_end.wait(300)  # more frames processed than the clip has: it played on from the start
    os.kill(proc.pid, signal.SIGTERM)
    stdout = proc.stdout.read()
    proc.wait(60)
    reader.join(60)
    stderr = "".join(lines)
    assert looped, stderr[-2000:]
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "frame 10:" in stderr and "landmarks" in stderr and "generator" in stderr
    assert "reconnect" not in stderr and "stopped delivering" not in stderr  # the end of the file is no outage
    assert "frames" in stdout
    assert cv2.VideoCapture(str(out)).read()[0]


def test_a_normal_apply_prints_only_its_own_lines(tmp_path, shared_data) -> None:
    """Quiet by default: no mediapipe / TFLite / absl start-up lines; --verbose brings them back."""
    args = ["apply", str(shared_data / "stills" / "d9.jpg"), str(tmp_path / "out.png"), "--reference",
            str(DEMO_REFERENCE)]
    proc = _cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.splitlines() == [proc.stdout.strip()] and proc.stdout.startswith(str(tmp_path / "out.png"))
    verbose = _cli("--verbose", *args)
    assert verbose.returncode == 0 and "ipmcam: engine:" in verbose.stderr
    assert any(not line.startswith("ipmcam") for line in verbose.stderr.splitlines())  # the libraries' own lines
