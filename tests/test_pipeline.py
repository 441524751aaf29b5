"""The pipeline on real frames: changes stay inside the face, faceless frames pass through."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ipmcam.engines.base import Engine
from ipmcam.face import masks
from ipmcam.face.tracker import FaceTracker
from ipmcam.realtime.pipeline import Pipeline, PipelineOptions
from ipmcam.realtime.sinks import NullSink
from ipmcam.realtime.sources import VideoFileSource
from tests.conftest import clip_frames


class RedLips(Engine):
    """A transparent test engine: paints every mask channel red, counts style calls."""

    name = "red-lips"

    def __init__(self) -> None:
        self.style_calls = 0
        self.run_calls = 0

    def encode_style(self, crop: np.ndarray, region: np.ndarray) -> str:
        self.style_calls += 1
        return "red"

    def run(self, crops, region, style, intensity=1.0):
        self.run_calls += 1
        delta = np.zeros(crops.shape, np.float32)
        delta[..., 2] = 80.0 * intensity * masks.union(region)
        return delta


def _face_hull(frame: np.ndarray, grow: int) -> np.ndarray:
    with FaceTracker(static=True, smooth=False, max_faces=2) as tracker:
        faces = tracker(frame, 0.0)
    hull = np.zeros(frame.shape[:2], np.uint8)
    for face in faces:
        cv2.fillConvexPoly(hull, cv2.convexHull(np.round(face.landmarks).astype(np.int32)), 1)
    return cv2.dilate(hull, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)).astype(bool)


@pytest.mark.parametrize("clip", ["d18.mp4", "d13.mp4"])
def test_pixels_outside_the_dilated_face_are_bit_identical(shared_data, reference_image, clip) -> None:
    engine = RedLips()
    # Frames half a second apart: no smoothing, so the test's own detection is comparable.
    pipeline = Pipeline(None, engine, options=PipelineOptions(smooth=False), reference=reference_image)
    changed_any = False
    for i, frame in enumerate(clip_frames(shared_data, clip, 8, every=15)):
        out, faces = pipeline.process(frame, i / 2.0)
        outside = ~_face_hull(frame, grow=max(frame.shape[:2]) // 25)
        assert np.array_equal(out[outside], frame[outside])
        changed_any |= faces > 0 and not np.array_equal(out, frame)
    pipeline.close()
    assert changed_any
    assert engine.style_calls == 1


def test_frame_without_a_face_is_unchanged(shared_data, reference_image) -> None:
    dog = cv2.imread(str(shared_data / "stills" / "s25.jpg"))
    engine = RedLips()
    pipeline = Pipeline(None, engine, reference=reference_image)
    out, faces = pipeline.process(dog, 0.0)
    pipeline.close()
    assert faces == 0 and np.array_equal(out, dog) and engine.run_calls == 0


def test_intensity_zero_is_bit_identical(shared_data, reference_image) -> None:
    frame = clip_frames(shared_data, "d18.mp4", 1)[0]
    pipeline = Pipeline(None, RedLips(), options=PipelineOptions(intensity=0.0), reference=reference_image)
    out, _ = pipeline.process(frame, 0.0)
    pipeline.close()
    assert np.array_equal(out, frame)


def test_run_publishes_every_file_frame_and_times_every_stage(shared_data, reference_image) -> None:
    source = VideoFileSource(shared_data / "videos" / "d18.mp4")
    sink = NullSink()
    stats = Pipeline(source, RedLips(), [sink], reference=reference_image).run(max_frames=40)
    assert stats.frames == sink.frames == 40 and stats.dropped == 0
    assert stats.frames_with_face == 40
    for stage in ("capture", "landmarks", "align", "generator", "blend", "sink", "latency"):
        assert stats.stages[stage]["count"] == 40
    assert stats.stages["style"]["count"] == 1


def test_resolution_change_mid_stream_keeps_the_output_size(shared_data, reference_image) -> None:
    frames = clip_frames(shared_data, "d18.mp4", 6)
    frames[3:] = [cv2.resize(f, (320, 240)) for f in frames[3:]]

    class ListSource(VideoFileSource):
        def __init__(self) -> None:
            self.fps, self.dropped = 30.0, 0

        def __iter__(self):
            from ipmcam.realtime.sources import Frame

            for i, image in enumerate(frames):
                yield Frame(image, i, i / 30, 0.0)

        def close(self) -> None: ...

    class Keep(NullSink):
        def __init__(self) -> None:
            super().__init__()
            self.shapes: list[tuple[int, ...]] = []

        def write(self, frame: np.ndarray) -> None:
            self.shapes.append(frame.shape)

    sink = Keep()
    Pipeline(ListSource(), RedLips(), [sink], reference=reference_image).run()
    assert sink.shapes == [frames[0].shape] * 6
