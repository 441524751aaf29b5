"""No silent loss: a failed write stops a file run with what it kept; a live stream outlives a failing output."""
from __future__ import annotations

import errno
import logging

import cv2
import numpy as np
import pytest

from ipmcam.errors import SinkError
from ipmcam.realtime import video_file
from ipmcam.realtime.outputs import Outputs
from ipmcam.realtime.pipeline import Pipeline, PipelineOptions
from ipmcam.realtime.sinks import FileSink, NullSink
from ipmcam.realtime.sources import Frame
from tests.conftest import clip_frames
from tests.test_faults import FlakySource, Recorder
from tests.test_pipeline import RedLips


class Unplugged(Recorder):
    """A virtual camera whose device vanishes at frame ``fail_at`` and refuses ``refusals`` reopens."""

    name = "virtual camera fake"
    reopenable = True

    def __init__(self, fail_at: int, refusals: int) -> None:
        super().__init__()
        self.fail_at, self.refusals, self.opens, self.gone = fail_at, refusals, 0, False

    def open(self, width: int, height: int, fps: float) -> None:
        self.opens += 1
        if self.gone:
            if self.refusals > 0:
                self.refusals -= 1
                raise SinkError("no device")
            self.gone = False

    def write(self, frame: np.ndarray) -> None:
        if self.frames == self.fail_at and self.opens == 1:
            self.gone = True
            raise SinkError(f"{self.name} stopped taking frames (No such device)")
        super().write(frame)


@pytest.fixture(scope="module")
def clip(shared_data) -> list[np.ndarray]:
    return clip_frames(shared_data, "d18.mp4", 12)


def _frames(n: int) -> list[np.ndarray]:
    return [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(n)]


def test_a_writer_that_fails_after_n_frames_finishes_the_file_and_says_what_it_kept(tmp_path, monkeypatch) -> None:
    real_write = video_file.VideoWriter.write
    written = []

    def fails_after_six(self, frame):
        if len(written) == 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(1)
        real_write(self, frame)

    monkeypatch.setattr(video_file.VideoWriter, "write", fails_after_six)
    path = tmp_path / "out.mp4"
    sink = FileSink(path)
    sink.open(64, 48, 10.0)
    with pytest.raises(SinkError) as err:
        for frame in _frames(10):
            sink.write(frame)
    sink.close()  # already finished: closing again is harmless
    kept = video_file.count_frames(path)
    assert f"No space left on device; stopped after 6 frames, of which the file keeps {kept}" in str(err.value)
    assert 0 < kept <= 6
    capture = cv2.VideoCapture(str(path))
    assert sum(1 for _ in iter(lambda: capture.read()[0], False)) == kept  # what it kept plays


def test_a_file_run_stops_at_the_first_failed_write(clip, reference_image) -> None:
    class FailsAtFour(Recorder):
        def write(self, frame: np.ndarray) -> None:
            if self.frames == 4:
                raise SinkError("cannot write out.mp4: No space left on device")
            super().write(frame)

    failing, other = FailsAtFour(), Recorder()
    source = FlakySource(clip, {})
    pipeline = Pipeline(source, RedLips(), [failing, other], reference=reference_image)
    with pytest.raises(SinkError, match="No space left"):
        pipeline.run()
    assert failing.frames == 4 and len(other.kept) <= 5 and source.closed


def test_a_live_stream_outlives_a_vanished_virtual_camera(clip, reference_image, caplog) -> None:
    vcam, recording = Unplugged(fail_at=3, refusals=2), Recorder()
    pipeline = Pipeline(FlakySource(clip, {}), RedLips(), [vcam, recording], PipelineOptions(keep_going=True),
                        reference=reference_image)
    pipeline.outputs.first_retry = 0.0  # retry on every frame: the schedule itself is checked below
    with caplog.at_level(logging.WARNING, logger="ipmcam"):
        stats = pipeline.run()
    assert stats.frames == len(recording.kept) == len(clip)  # the other output never missed a frame
    assert vcam.opens == 4 and len(vcam.kept) == len(clip) - 3  # lost at frame 3, refused 4 and 5, back at 6
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "stopped taking frames" in warnings[0] and warnings[1].endswith("is back")
    assert pipeline.outputs.still_lost() == []


def test_reopening_backs_off() -> None:
    now = [0.0]
    vcam = Unplugged(fail_at=0, refusals=10)
    outputs = Outputs([vcam, NullSink()], keep_going=True, first_retry=0.5, max_retry=2.0, clock=lambda: now[0])
    outputs.open(64, 48, 30.0)
    tried_at = []
    for step in range(40):  # 4 s of frames at 10 fps
        now[0] = step / 10
        opens = vcam.opens
        outputs.write(_frames(1)[0])
        if vcam.opens > opens:
            tried_at.append(now[0])
    assert tried_at == pytest.approx([0.5, 1.5, 3.5])  # waits of 0.5, 1, 2 (the cap), ...
    assert outputs.still_lost() == [f"{vcam.name} did not come back"]


def test_a_failed_recording_is_dropped_and_reported(tmp_path, caplog) -> None:
    class Full(NullSink):
        name = "rec.mp4"

        def write(self, frame: np.ndarray) -> None:
            raise SinkError("cannot write rec.mp4: No space left on device; stopped after 9 frames, of which the "
                            "file keeps 9")

    screen = Recorder()
    outputs = Outputs([Full(), screen], keep_going=True)
    outputs.open(64, 48, 30.0)
    with caplog.at_level(logging.WARNING, logger="ipmcam"):
        for frame in _frames(3):
            outputs.write(frame)
    assert len(screen.kept) == 3
    assert len(caplog.records) == 1 and "the stream goes on" in caplog.records[0].getMessage()
    assert outputs.still_lost() and "keeps 9" in outputs.still_lost()[0]
    with pytest.raises(SinkError, match="keeps 9"):  # nothing left to feed: the run ends, with that error
        Outputs([Full()], keep_going=True).write(_frames(1)[0])


def test_a_live_recording_lasts_as_long_as_the_run(clip, reference_image) -> None:
    """Frames that came late (slow processing, a stall) are repeated so the recording keeps the clock's time."""
    captured_at = [0.0, 0.1, 0.5, 0.6, 1.25]  # seconds on the capture clock: gaps where processing fell behind

    class Late(FlakySource):
        def __iter__(self):
            for index, when in enumerate(captured_at):
                yield Frame(self.frames[index], index, index / self.fps, when)

    sink = Recorder()
    source = Late(clip, {})
    source.fps = 10.0
    Pipeline(source, RedLips(), [sink], PipelineOptions(output_fps=source.fps, keep_going=True),
             reference=reference_image).run()
    assert len(sink.kept) == 13  # 0.0 .. 1.2 s at 10 fps: as long as the run, whatever was processed
