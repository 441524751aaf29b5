"""The soak runner on a short run: it counts frames, samples memory and gives a verdict."""
from __future__ import annotations

import argparse
from pathlib import Path

from ipmcam.measure.soak import SoakResult, soak


def test_short_soak_keeps_every_frame(tmp_path: Path) -> None:
    args = argparse.Namespace(minutes=0.2, warmup=3.0, rss_limit=200.0, sample_every=1.0,
                              output=tmp_path / "soak.mp4", json=None, engine="classic", backend="auto",
                              precision="fp32", model_dir=None, reference=None, max_faces=1)
    result = soak(args)
    assert result.exceptions == []
    assert result.frames_in == result.frames_out > 0
    assert len(result.rss_mb) >= 5 and all(mb > 50 for _, mb in result.rss_mb)
    assert result.ok


def test_verdict_fails_on_growth_lost_frames_or_errors() -> None:
    grows = SoakResult(1.0, 10, 10, rss_mb=[(0, 100), (61, 100), (120, 130)])
    assert grows.rss_growth_mb == 30 and not grows.ok
    assert not SoakResult(1.0, 10, 9, rss_mb=[(61, 100), (70, 100)]).ok
    assert not SoakResult(1.0, 10, 10, exceptions=["RuntimeError: x"]).ok
    assert SoakResult(1.0, 10, 10, rss_mb=[(61, 100), (70, 105)]).ok
