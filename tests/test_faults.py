"""Fault injection: odd frames, failing sources, bad references and outputs, signals.

Real frames from ../shared/data go through a source that can be told to
fail; the checks are on the frames that come out and on exit codes.
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from ipmcam.realtime.pipeline import Pipeline, PipelineOptions
from ipmcam.realtime.sinks import NullSink
from ipmcam.realtime.sources import Frame, Source
from ipmcam.resources import DEMO_REFERENCE
from tests.conftest import clip_frames
from tests.test_pipeline import RedLips, _face_hull

REPO = Path(__file__).resolve().parents[1]


class Recorder(NullSink):
    """Keeps every frame it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[np.ndarray] = []

    def write(self, frame: np.ndarray) -> None:
        super().write(frame)
        self.kept.append(frame.copy())


class FlakySource(Source):
    """Real frames, with faults injected at chosen indices: ``{index: fault}``.

    Faults: "stall" (yields None, as a live camera does), "garbage" (a frame of
    the wrong kind), "resize" (this and later frames at half size), "noise"
    (a valid image with no face).
    """

    live = True

    def __init__(self, frames: list[np.ndarray], faults: dict[int, str]) -> None:
        self.frames, self.faults, self.fps = frames, faults, 30.0
        self.closed = False

    def __iter__(self) -> Iterator[Frame | None]:
        half = False
        for i, image in enumerate(self.frames):
            fault = self.faults.get(i)
            if fault == "stall":
                yield None
                continue
            if fault == "resize":
                half = True
            if half:
                image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2))
            if fault == "garbage":
                image = np.zeros((0, 0), np.uint8) if i % 2 else "not a frame"
            if fault == "noise":
                image = np.random.default_rng(i).integers(0, 256, image.shape, dtype=np.uint8)
            yield Frame(image, i, i / self.fps, time.perf_counter())

    def close(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def clip(shared_data) -> list[np.ndarray]:
    return clip_frames(shared_data, "d18.mp4", 24)


def _run(frames, faults, reference_image, **options) -> tuple[Recorder, object, FlakySource]:
    source = FlakySource(frames, faults)
    sink = Recorder()
    stats = Pipeline(source, RedLips(), [sink], PipelineOptions(**options), reference=reference_image).run()
    return sink, stats, source


def test_stalls_and_garbage_repeat_the_last_good_frame(clip, reference_image) -> None:
    faults = {5: "stall", 6: "stall", 9: "garbage", 10: "garbage", 14: "noise"}
    sink, stats, source = _run(clip, faults, reference_image, fade_seconds=0.0)
    assert len(sink.kept) == len(clip)  # one output per input slot: nothing lost, nothing extra
    assert np.array_equal(sink.kept[5], sink.kept[4]) and np.array_equal(sink.kept[6], sink.kept[4])
    assert np.array_equal(sink.kept[9], sink.kept[8])
    assert stats.skipped == 2 and stats.repeated == 4 and source.closed
    # The noise frame has no face: it passes through unchanged.
    noise = np.random.default_rng(14).integers(0, 256, clip[14].shape, dtype=np.uint8)
    assert np.array_equal(sink.kept[14], noise)


def test_stall_turns_black_after_the_timeout(clip, reference_image) -> None:
    faults = {i: "stall" for i in range(3, 8)}
    sink, _, _ = _run(clip[:8], faults, reference_image, blackout_after=0.0)
    assert sink.kept[3].max() == 0 and sink.kept[2].max() > 0


def test_resolution_change_keeps_the_published_size(clip, reference_image) -> None:
    sink, stats, _ = _run(clip[:12], {6: "resize"}, reference_image)
    assert {f.shape for f in sink.kept} == {clip[0].shape}
    assert stats.frames_with_face == 12


def test_face_fades_in_after_the_start_and_out_when_lost(clip, reference_image) -> None:
    frames = clip[:4] + [np.random.default_rng(0).integers(0, 256, clip[0].shape, dtype=np.uint8)] * 8 + clip[4:10]
    sink, _, _ = _run(frames, {}, reference_image, fade_seconds=0.1)
    change = [int(np.abs(o.astype(int) - f.astype(int)).sum()) for o, f in zip(sink.kept, frames)]
    assert change[1] > 0  # the stream starts at full strength
    assert 0 < change[4] < change[3]  # the lost face fades out over a few frames...
    assert change[8] == 0  # ...then nothing is drawn
    assert 0 < change[12] < change[14]  # and it fades back in when it returns


def test_time_running_backwards_starts_a_new_stream(clip, reference_image) -> None:
    """A source restarted or swapped numbers its frames afresh: the old face must not be drawn on the new frame."""
    before = clip[0]
    after = np.ascontiguousarray(np.roll(clip[0], before.shape[1] // 4, axis=1))  # the face moved a face away
    pipeline = Pipeline(None, RedLips(), options=PipelineOptions(fade_seconds=0.5, smooth=False),
                        reference=reference_image)
    pipeline.process(before, 5.0)
    out, faces = pipeline.process(after, 0.0)
    pipeline.close()
    assert faces == 1
    outside = ~_face_hull(after, grow=20)
    assert np.array_equal(out[outside], after[outside])  # nothing at the old face's place
    assert np.abs(out.astype(int) - after.astype(int)).sum() > 0  # the new face at full strength at once


def test_several_faces_and_a_face_at_the_edge(clip, reference_image) -> None:
    pair = np.hstack([clip[0], clip[10]])
    edge = np.ascontiguousarray(clip[0][:, 200:])  # the face's right third is outside the frame
    engine = RedLips()
    pipeline = Pipeline(None, engine, options=PipelineOptions(max_faces=2, smooth=False), reference=reference_image)
    out, faces = pipeline.process(pair, 0.0)
    assert faces == 2
    outside = ~_face_hull(pair, grow=20)
    assert np.array_equal(out[outside], pair[outside])
    out, faces = pipeline.process(edge, 1.0)
    assert faces == 1
    outside = ~_face_hull(edge, grow=20)
    assert np.array_equal(out[outside], edge[outside])
    pipeline.close()


def test_tiny_face_passes_through(clip, reference_image) -> None:
    canvas = np.zeros((720, 1280, 3), np.uint8)
    canvas[300:348, 600:648] = cv2.resize(clip[0], (48, 48))
    pipeline = Pipeline(None, RedLips(), reference=reference_image)
    out, faces = pipeline.process(canvas, 0.0)
    pipeline.close()
    assert faces == 0 and np.array_equal(out, canvas)


def test_hot_swap_to_a_bad_reference_keeps_the_current_one(clip, reference_image, shared_data) -> None:
    engine = RedLips()
    source = FlakySource(clip[:6], {})
    pipeline = Pipeline(source, engine, [NullSink()], reference=reference_image)
    pipeline.request_reference(shared_data / "stills" / "s25.jpg")  # a dog: refused, logged
    stats = pipeline.run()
    assert stats.frames == 6 and engine.style_calls == 1 and pipeline.has_reference


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ipmcam", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("ipmcam: error:")]
    assert len(lines) == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == lines, proc.stderr  # and nothing else: no library chatter
    return lines[0]


def test_bad_references_are_one_line_errors(tmp_path, shared_data, clip) -> None:
    still = str(shared_data / "stills" / "d9.jpg")
    out = str(tmp_path / "o.png")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    two = tmp_path / "two.png"
    cv2.imwrite(str(two), np.hstack([clip[0], clip[10]]))
    cases = {
        str(tmp_path / "missing.jpg"): "file not found",
        str(text): "not a readable image",
        str(shared_data / "stills" / "s25.jpg"): "no face found",
        str(two): "2 faces found",
    }
    for reference, expected in cases.items():
        line = _one_line_error(_cli("apply", still, out, "--reference", reference, "--engine", "classic"))
        assert expected in line, line


def test_unwritable_output_fails_before_processing(tmp_path, shared_data) -> None:
    line = _one_line_error(_cli("apply", str(shared_data / "videos" / "d18.mp4"), str(tmp_path / "no" / "x.mp4"),
                                "--reference", str(DEMO_REFERENCE)))
    assert "does not exist" in line


def test_truncated_video_ends_cleanly_with_a_valid_output(tmp_path, shared_data) -> None:
    data = (shared_data / "videos" / "d18.mp4").read_bytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(data[: len(data) * 2 // 5])
    out = tmp_path / "out.mp4"
    proc = _cli("apply", str(broken), str(out), "--reference", str(DEMO_REFERENCE),
                "--engine", "classic")
    if proc.returncode == 2:  # the container index was cut off: refused up front, in one line
        assert "not a readable video" in _one_line_error(proc)
        return
    assert proc.returncode == 0, proc.stderr
    cap = cv2.VideoCapture(str(out))
    written = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, _ = cap.read()
    assert ok and 0 < written < 216


def test_refusals_come_first_and_say_what_to_do(tmp_path, shared_data) -> None:
    clip, still, ref = str(shared_data / "videos" / "d18.mp4"), str(shared_data / "stills" / "d9.jpg"), str(DEMO_REFERENCE)
    cases = [
        (["apply", clip, str(tmp_path), "-r", ref], "it is a folder"),
        (["apply", clip, str(tmp_path / "out.png"), "-r", ref], "add --frame N"),
        (["apply", still, str(tmp_path / "out.png"), "-r", ref, "--frame", "2"], "--frame N is for a video input"),
        (["apply", clip, str(tmp_path / "out.dat"), "-r", ref], "unknown file type .dat"),
        (["apply", still, str(tmp_path / "o.png"), "-r", ref, "--intensity", "7"], "--intensity: must be within 0..1"),
        (["apply", still, str(tmp_path / "o.png"), "-r", ref, "--strength", "lips=1.5"], "within 0..1"),
        (["apply", still, str(tmp_path / "o.png"), "-r", ref, "--max-faces", "0"], "--max-faces: must be at least 1"),
        (["apply", still, str(tmp_path / "o.png"), "-r", ref, "--output-size", "0x480"], "must be above 0"),
        (["apply", still, str(tmp_path / "o.png"), "-r", ref, "--output-fps", "-5"], "--output-fps: must be above 0"),
        (["live", "--fps", "0", "--preview", "-r", ref], "--fps: must be above 0"),
        (["live", "--output", str(tmp_path / "rec.png"), "-r", ref], "--output records a video"),
    ]
    for args, expected in cases:
        assert expected in _one_line_error(_cli(*args)), args
    assert not list(tmp_path.iterdir())  # nothing was written


def test_one_frame_of_a_video_to_an_image_on_request(tmp_path, shared_data) -> None:
    out = tmp_path / "frame.png"
    proc = _cli("apply", str(shared_data / "videos" / "d18.mp4"), str(out), "-r", str(DEMO_REFERENCE),
                "--engine", "classic", "--frame", "5")
    assert proc.returncode == 0, proc.stderr
    original = clip_frames(shared_data, "d18.mp4", 6)[5]
    made_up = cv2.imread(str(out))
    assert made_up.shape == original.shape and not np.array_equal(made_up, original)


def _written_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    return sum(1 for _ in iter(lambda: capture.read()[0], False))


def _file_size_limit(limit: int):
    """For a child process: files it writes may not grow past ``limit`` bytes (EFBIG instead of a signal)."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_write_that_fails_mid_video_stops_the_run_and_keeps_what_was_written(tmp_path, shared_data) -> None:
    out = tmp_path / "out.mp4"
    proc = subprocess.run([sys.executable, "-m", "ipmcam", "apply", str(shared_data / "videos" / "d18.mp4"), str(out),
                           "-r", str(DEMO_REFERENCE), "--engine", "classic"], capture_output=True, text=True,
                          timeout=240, cwd=REPO, preexec_fn=_file_size_limit(400_000))
    line = _one_line_error(proc)
    assert "File too large; stopped after" in line and proc.stdout == ""
    kept = int(line.rsplit(" ", 1)[1])
    assert 0 < kept < 216 and _written_frames(out) == kept  # the file is finished: what it says it kept plays


def test_a_full_disk_is_an_error_not_a_short_video(tmp_path, shared_data) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("this system has no /dev/full")
    out = tmp_path / "out.mp4"
    out.symlink_to("/dev/full")  # every write: No space left on device
    proc = _cli("apply", str(shared_data / "videos" / "d18.mp4"), str(out), "-r", str(DEMO_REFERENCE),
                "--engine", "classic")
    assert "No space left on device" in _one_line_error(proc)


def test_sigterm_finalises_the_output(tmp_path, shared_data) -> None:
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "ipmcam", "apply", str(shared_data / "videos" / "d6.mp4"),
                             str(out), "--reference", str(DEMO_REFERENCE), "--engine", "classic"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or out.stat().st_size < 50_000):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGTERM)
    code = proc.wait(timeout=120)  # stops after the current frame; how fast is the benchmark's business
    assert code == 128 + signal.SIGTERM
    cap = cv2.VideoCapture(str(out))
    assert cap.read()[0] and 0 < int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) < 1008
