"""Hotkeys, overlays, the live controller on a running pipeline, config files, mirror and output rate."""
from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest

from ipmcam.cli import build_parser, main
from ipmcam.errors import UserError
from ipmcam.realtime import config, controls
from ipmcam.realtime.controls import Controller, ControlState, apply
from ipmcam.realtime.pipeline import Pipeline, PipelineOptions
from ipmcam.realtime.sinks import NullSink
from tests.conftest import clip_frames
from tests.test_faults import FlakySource, Recorder
from tests.test_pipeline import RedLips

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- pure: keys, state, overlays


def test_every_hotkey_maps_to_its_action() -> None:
    for key in controls.HOTKEYS:
        for code in key.codes:
            assert controls.action_for_key(code) == key.action
            assert controls.action_for_key(code | 0x100) == key.action  # waitKey's high bits are ignored
    assert controls.action_for_key(ord("z")) is None and controls.action_for_key(-1) is None
    codes = [c for k in controls.HOTKEYS for c in k.codes]
    assert len(codes) == len(set(codes))


def test_state_transitions() -> None:
    s = ControlState(intensity=0.95, references=3)
    assert apply(s, "intensity_up").intensity == 1.0
    s = ControlState(intensity=0.05)
    assert apply(s, "intensity_down").intensity == 0.0
    down = ControlState()
    for _ in range(10):
        down = apply(down, "intensity_down")
    assert down.intensity == 0.0  # no float drift below zero
    s = ControlState(references=3)
    assert apply(s, "previous_reference").reference == 2
    assert apply(apply(apply(s, "next_reference"), "next_reference"), "next_reference").reference == 0
    for field, action in (("split", "split"), ("effect", "toggle_effect"), ("help", "help"), ("stats", "stats")):
        assert getattr(apply(s, action), field) != getattr(s, field)
        assert getattr(apply(apply(s, action), action), field) == getattr(s, field)
    assert apply(s, "quit").quit and apply(s, None) == s


def test_overlays_draw_inside_their_boxes() -> None:
    frame = np.full((480, 640, 3), 128, np.uint8)
    helped = controls.draw_help(frame.copy())
    changed = np.any(helped != frame, axis=-1)
    ys, xs = np.nonzero(changed)
    assert changed.mean() > 0.05 and xs.max() < 400 and ys.min() > 0
    summary = {name: {"p50": float(i + 1)} for i, name in enumerate(("capture", "landmarks", "generator", "latency"))}
    lines = controls.stats_lines(summary, fps=29.5, state=ControlState(intensity=0.6), reference="natural")
    assert lines[0].startswith("capture") and any("29.5 fps" in ln for ln in lines)
    assert any("0.6" in ln for ln in lines) and lines[-1] == "look: natural"
    stats = controls.draw_stats(frame.copy(), lines)
    xs = np.nonzero(np.any(stats != frame, axis=-1))[1]
    assert xs.min() > 320  # top right
    msg = controls.draw_message(frame.copy(), "intensity 0.5")
    ys = np.nonzero(np.any(msg != frame, axis=-1))[0]
    assert ys.min() > 240  # bottom


def test_readme_documents_every_hotkey() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Hotkeys"):]
    for key in controls.HOTKEYS:
        for label in key.labels:
            assert f"`{label}`" in section, label


# --------------------------------------------------------------------------- the controller on a pipeline


class ScriptedPreview(Recorder):
    """A preview sink without a window: keys are pressed at chosen output frames."""

    def __init__(self, script: dict[int, str]) -> None:
        super().__init__()
        self.script = script
        self.pressed: list[int] = []
        self.last_frame = None
        self.overlay = None
        self.shown: list[np.ndarray] = []

    def write(self, frame: np.ndarray) -> None:
        super().write(frame)
        self.last_frame = frame
        if self.overlay is not None:
            self.shown.append(self.overlay(frame.copy()))
        keys = self.script.get(len(self.kept) - 1, "")
        self.pressed += [32 if k == " " else ord(k) for k in keys]

    def take_keys(self) -> list[int]:
        keys, self.pressed = self.pressed, []
        return keys


@pytest.fixture(scope="module")
def clip(shared_data) -> list[np.ndarray]:
    return clip_frames(shared_data, "d18.mp4", 12)


def test_keys_change_the_next_frames(clip, reference_image, tmp_path) -> None:
    # frame 1: intensity to 0; frame 3: back up and effect off; frame 5: effect on + split; frame 7: screenshot.
    preview = ScriptedPreview({1: "-" * 10, 3: "+" * 10 + " ", 5: " b", 7: "sht"})
    pipeline = Pipeline(FlakySource(clip[:10], {}), RedLips(), [preview], PipelineOptions(fade_seconds=0.0),
                        reference=reference_image)
    controller = Controller(pipeline, preview, [("ref", reference_image)], screenshots=tmp_path / "shots")
    pipeline.run(on_frame=controller.on_frame)
    for t in controller.threads:
        t.join(120)
    out, src = preview.kept, clip[:10]
    assert not np.array_equal(out[1], src[1])
    assert np.array_equal(out[2], src[2]) and np.array_equal(out[3], src[3])  # intensity 0: bit-identical
    assert np.array_equal(out[4], src[4])  # full intensity, but the effect is off
    h, w = src[6].shape[:2]
    top = slice(0, int(0.85 * h))  # the before/after labels sit at the bottom
    assert np.array_equal(out[6][top, : w // 2 - 2], src[6][top, : w // 2 - 2])  # split: left half as captured
    assert not np.array_equal(out[6][:, w // 2 + 2:], src[6][:, w // 2 + 2:])
    assert pipeline.options.split and pipeline.options.intensity == 1.0
    shots = list((tmp_path / "shots").glob("ipmcam-*.png"))
    assert len(shots) == 1
    import cv2

    assert np.array_equal(cv2.imread(str(shots[0])), out[7])  # the published frame, without overlays
    assert not np.array_equal(preview.shown[9], out[9])  # help and stats are drawn on the preview only
    assert controller.state.help and controller.state.stats


def test_switching_reference_never_waits_and_swaps_between_frames(clip, reference_image) -> None:
    engine = RedLips()
    pipeline = Pipeline(None, engine, reference=reference_image)
    preview = ScriptedPreview({})
    release = threading.Event()

    def slow_reference():
        assert release.wait(120)  # loading takes until the test says so
        return reference_image

    controller = Controller(pipeline, preview, [("first", reference_image), ("slow", slow_reference),
                                                ("dog", REPO / "no-such-photo.jpg")])
    controller.handle("next_reference")  # returns while the new reference is still loading
    assert controller.threads[-1].is_alive() and not release.is_set()
    pipeline.process(clip[0], 0.0)  # frames go on with the old style meanwhile
    assert engine.style_calls == 1
    release.set()
    controller.threads[-1].join(120)
    pipeline._swap_reference()  # what run() does before the next frame
    assert engine.style_calls == 2
    controller.handle("next_reference")  # a reference that cannot be used: a message, the look stays
    controller.threads[-1].join(120)
    pipeline._swap_reference()
    assert engine.style_calls == 2 and "cannot use dog" in controller._message[0]
    pipeline.close()


# --------------------------------------------------------------------------- mirror and output rate


def test_mirror_flips_frames(clip, reference_image) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    pipeline = Pipeline(None, RedLips(), options=PipelineOptions(mirror=True), reference=reference_image)
    out, faces = pipeline.process(noise, 0.0)
    pipeline.close()
    assert faces == 0 and np.array_equal(out, noise[:, ::-1])


@pytest.mark.parametrize("rate, expected", [(15.0, 6), (60.0, 23), (30.0, 12)])
def test_output_fps_is_independent_of_the_source(clip, reference_image, rate, expected) -> None:
    class Opened(NullSink):
        def open(self, width: int, height: int, fps: float) -> None:
            self.opened = (width, height, fps)

    class FileLike(FlakySource):
        live = False  # media time, as from a video file

    sink = Opened()
    options = PipelineOptions(output_fps=rate, output_size=(96, 64))
    stats = Pipeline(FileLike(clip, {}), RedLips(), [sink], options, reference=reference_image).run()
    assert sink.frames == expected and sink.opened == (96, 64, rate)
    assert stats.frames + stats.resampled == len(clip)


# --------------------------------------------------------------------------- config files


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ipmcam.toml"
    path.write_text(text)
    return path


def test_config_sets_defaults_and_flags_win(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nothing"))
    path = _write(tmp_path, 'intensity = 0.4\nstrength = { lips = 1.0, eyes = 0.5 }\noutput-size = [640, 360]\n'
                            'mirror = true\nreference = "~/looks"\n[live]\ncamera = 2\npreview = true\n'
                            '[apply]\nintensity = 0.6\n')
    args = config.parse_args(build_parser(), ["live", "--config", str(path)])
    assert (args.intensity, args.camera, args.preview, args.mirror) == (0.4, "2", True, True)
    assert args.strength == {"lips": 1.0, "eyes": 0.5} and args.output_size == (640, 360)
    assert args.reference == Path.home() / "looks"
    args = config.parse_args(build_parser(), ["live", "--config", str(path), "--intensity", "0.9", "--camera", "0"])
    assert args.intensity == 0.9 and args.camera == "0"
    args = config.parse_args(build_parser(), ["apply", "a.mp4", "b.mp4", f"--config={path}"])
    assert args.intensity == 0.6 and args.mirror
    # Without --config the default file is read when present.
    default = tmp_path / "xdg" / "ipmcam" / "config.toml"
    default.parent.mkdir(parents=True)
    default.write_text("max-faces = 3\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.parse_args(build_parser(), ["apply", "a.mp4", "b.mp4"]).max_faces == 3


@pytest.mark.parametrize("text, message", [
    ("intensty = 0.5\n", "intensty: no command has this option"),
    ("[apply]\ncamera = 1\n", r"\[apply\] camera: not an option"),
    ("engine = 'magic'\n", "engine must be one of"),
    ("mirror = 'yes'\n", "mirror must be true or false"),
    ("output-size = 'big'\n", "output-size: expected WIDTHxHEIGHT"),
    ("strength = { nose = 1 }\n", "strength: expected REGION=VALUE"),
    ("intensity = [\n", "not valid TOML"),
])
def test_config_errors_are_one_line(tmp_path, capsys, text, message) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(UserError, match=message):
        config.parse_args(build_parser(), ["live", "--config", str(path)])
    assert main(["live", "--config", str(path)]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_config_print_shows_the_effective_settings(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nothing"))
    path = _write(tmp_path, 'intensity = 0.4\noutput-fps = 15\n[live]\ncamera = "rtsp://cam"\n')
    assert main(["config", "--print", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"# config file: {path}" in out and "[live]" in out and "[apply]" in out
    assert 'camera = "rtsp://cam"  # from config' in out
    assert out.count("intensity = 0.4  # from config") == 2 and "output-fps = 15.0  # from config" in out
    assert "engine = \"auto\"\n" in out and "# reference =  (unset)" in out
    # What it prints is itself a valid config that yields the same settings.
    printed = _write(tmp_path, out)
    assert config.parse_args(build_parser(), ["live", "--config", str(printed)]).camera == "rtsp://cam"
    assert main(["config", "--print"]) == 0
    assert "# config file: none" in capsys.readouterr().out


def test_the_readme_config_example_is_valid(tmp_path) -> None:
    readme = (REPO / "README.md").read_text()
    example = readme[readme.index("### Config file"):].split("```toml\n", 1)[1].split("```", 1)[0]
    path = _write(tmp_path, example)
    args = config.parse_args(build_parser(), ["live", "--config", str(path)])
    assert args.preset == "natural" and args.camera == "1" and args.virtual_cam and args.output_size == (1280, 720)
