"""Asynchronous inference: a slow generator does not slow the video, and the look stays on the face."""
from __future__ import annotations

import threading

import numpy as np

from ipmcam.realtime.pipeline import Pipeline, PipelineOptions
from ipmcam.realtime.sinks import NullSink
from tests.conftest import clip_frames
from tests.test_faults import FlakySource, Recorder
from tests.test_pipeline import RedLips, _face_hull


class StuckRedLips(RedLips):
    """The transparent test engine; after its first batch, each call waits until ``gate`` opens (a heavy model)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def run(self, crops, region, style, intensity=1.0):
        if self.run_calls > 0:
            assert self.gate.wait(120)
        return super().run(crops, region, style, intensity)


def test_slow_generator_runs_beside_the_video(shared_data, reference_image) -> None:
    frames = clip_frames(shared_data, "d18.mp4", 30)
    engine = StuckRedLips()
    sink = Recorder()
    pipeline = Pipeline(FlakySource(frames, {}), engine, [sink], PipelineOptions(async_inference=True),
                        reference=reference_image)
    generator = pipeline._async

    def on_frame(n: int) -> None:
        if n == 20:  # twenty frames went out while the generator's second call was stuck: open it
            engine.gate.set()

    stats = pipeline.run(on_frame=on_frame)
    assert stats.frames == len(sink.kept) == 30 and engine.gate.is_set()
    # Batches that came in while the generator was busy were replaced by newer ones, not queued.
    assert engine.run_calls < 30 and generator.skipped >= 15
    # Every frame got makeup (the first one waited for its delta), and only on the face.
    for out, frame in zip(sink.kept, frames):
        assert not np.array_equal(out, frame)
        outside = ~_face_hull(frame, grow=max(frame.shape[:2]) // 25)
        assert np.array_equal(out[outside], frame[outside])


def test_async_and_sync_agree_for_a_still_face(shared_data, reference_image) -> None:
    frame = clip_frames(shared_data, "d18.mp4", 1)[0]
    outputs = []
    for mode in (False, True):
        sink = Recorder()
        Pipeline(FlakySource([frame] * 3, {}), RedLips(), [sink], PipelineOptions(async_inference=mode, smooth=False),
                 reference=reference_image).run()
        outputs.append(sink.kept[-1])
    diff = np.abs(outputs[0].astype(int) - outputs[1].astype(int))
    # A reused delta was made from a neighbouring frame's landmarks (mediapipe refines them even on
    # a repeated image), so edges may differ by a pixel's worth of feathering; the bulk agrees.
    assert diff.mean() < 0.5 and (diff > 0).mean() < 0.05


def test_engine_errors_reach_the_pipeline(shared_data, reference_image) -> None:
    class Broken(RedLips):
        def run(self, *a, **k):
            raise RuntimeError("device lost")

    import pytest

    pipeline = Pipeline(FlakySource(clip_frames(shared_data, "d18.mp4", 3), {}), Broken(), [NullSink()],
                        PipelineOptions(async_inference=True), reference=reference_image)
    with pytest.raises(RuntimeError, match="device lost"):
        pipeline.run()
