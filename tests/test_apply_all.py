"""`ipmcam apply` on every clip and still of the development data ends with exit code 0."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from ipmcam.resources import DEMO_REFERENCE

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
MEDIA = sorted((SHARED / "videos").glob("*.mp4")) + sorted((SHARED / "stills").glob("*.jpg"))


@pytest.mark.slow
@pytest.mark.parametrize("path", MEDIA, ids=[p.name for p in MEDIA])
def test_apply_completes(path: Path, tmp_path: Path) -> None:
    out = tmp_path / (path.stem + (".mp4" if path.suffix == ".mp4" else ".png"))
    proc = subprocess.run([sys.executable, "-m", "ipmcam", "apply", str(path), str(out), "--reference",
                           str(DEMO_REFERENCE), "--engine", "classic"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    if path.suffix == ".mp4":
        src, dst = cv2.VideoCapture(str(path)), cv2.VideoCapture(str(out))
        assert dst.get(cv2.CAP_PROP_FRAME_COUNT) == src.get(cv2.CAP_PROP_FRAME_COUNT)
        assert dst.get(cv2.CAP_PROP_FRAME_WIDTH) == src.get(cv2.CAP_PROP_FRAME_WIDTH)
    else:
        assert cv2.imread(str(out)).shape == cv2.imread(str(path)).shape
