"""Live controls for the preview window: hotkeys, and the help, stats and message overlays.

The pieces are pure where they can be: ``action_for_key`` maps a key code to
an action, ``apply`` turns a ``ControlState`` and an action into the next
state, and the ``draw_*`` functions paint overlays on a frame. ``Controller``
wires them to a running pipeline: keys are read between frames (the pipeline's
``on_frame`` callback), settings are written to ``pipeline.options`` there,
and a new reference is read, found and aligned in a background thread and
handed over with ``Pipeline.request_reference``, so the video never waits
for a photo to load.

Intensity, effect on/off and the before/after split change the published
video (virtual camera and recording too); help, stats and messages are drawn
on the preview window only.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ipmcam.realtime.pipeline import prepare_reference
from ipmcam.realtime.stages import STAGES

log = logging.getLogger("ipmcam")

INTENSITY_STEP = 0.1
MESSAGE_SECONDS = 2.0
STATS_REFRESH_SECONDS = 0.5


@dataclass(frozen=True)
class Hotkey:
    """One action and the keys that trigger it (``labels`` are what the help and README show)."""

    labels: tuple[str, ...]
    action: str
    help: str

    @property
    def codes(self) -> tuple[int, ...]:
        named = {"Space": 32, "Esc": 27, "Tab": 9}
        return tuple(named.get(label, ord(label[0])) for label in self.labels)


HOTKEYS: tuple[Hotkey, ...] = (
    Hotkey(("+", "="), "intensity_up", f"more makeup (intensity +{INTENSITY_STEP:g})"),
    Hotkey(("-", "_"), "intensity_down", f"less makeup (intensity -{INTENSITY_STEP:g})"),
    Hotkey(("n", "]"), "next_reference", "next reference / preset"),
    Hotkey(("p", "["), "previous_reference", "previous reference / preset"),
    Hotkey(("b",), "split", "before/after split view"),
    Hotkey(("Space", "e"), "toggle_effect", "makeup on/off"),
    Hotkey(("s",), "screenshot", "save a screenshot (PNG)"),
    Hotkey(("t",), "stats", "stats overlay (per-stage p50)"),
    Hotkey(("h", "?"), "help", "show/hide this help"),
    Hotkey(("q", "Esc"), "quit", "quit"),
)
_BY_CODE = {code: key.action for key in HOTKEYS for code in key.codes}


def action_for_key(code: int) -> str | None:
    """The action of a key code from ``cv2.waitKey`` (masked to 8 bits), or None."""
    if code < 0:
        return None
    return _BY_CODE.get(code & 0xFF)


@dataclass(frozen=True)
class ControlState:
    """What the hotkeys change."""

    intensity: float = 1.0
    effect: bool = True
    split: bool = False
    help: bool = False
    stats: bool = False
    reference: int = 0  #: index into the reference cycle
    references: int = 1  #: length of the cycle
    quit: bool = False


def apply(state: ControlState, action: str | None) -> ControlState:
    """The state after one action (unknown or None: unchanged). Intensity stays in 0..1."""
    r = dataclasses.replace
    if action == "intensity_up":
        return r(state, intensity=round(min(state.intensity + INTENSITY_STEP, 1.0), 3))
    if action == "intensity_down":
        return r(state, intensity=round(max(state.intensity - INTENSITY_STEP, 0.0), 3))
    if action == "next_reference":
        return r(state, reference=(state.reference + 1) % max(state.references, 1))
    if action == "previous_reference":
        return r(state, reference=(state.reference - 1) % max(state.references, 1))
    if action == "split":
        return r(state, split=not state.split)
    if action == "toggle_effect":
        return r(state, effect=not state.effect)
    if action == "help":
        return r(state, help=not state.help)
    if action == "stats":
        return r(state, stats=not state.stats)
    if action == "quit":
        return r(state, quit=True)
    return state


# --------------------------------------------------------------------------- overlays


def _scale(frame: np.ndarray) -> float:
    return float(np.clip(frame.shape[0] / 720.0, 0.45, 1.5))


def draw_panel(frame: np.ndarray, lines: Sequence[str], corner: str = "top-left", title: str | None = None) -> np.ndarray:
    """Text lines on a darkened box; in place, returns ``frame``.

    A tab in a line splits it into two aligned columns. ``corner`` is where
    the box sits: top-left, top-right, bottom-left or bottom-right.
    """
    if not lines and title is None:
        return frame
    scale = _scale(frame)
    font, size, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.55 * scale, max(1, round(scale))
    rows = [(title, "")] if title else []
    rows += [tuple(line.split("\t", 1)) if "\t" in line else (line, "") for line in lines]

    def width(text: str, heading: bool = False) -> int:
        return cv2.getTextSize(text, font, size * (1.15 if heading else 1), thick + heading)[0][0] if text else 0

    first = max(width(a) for a, b in rows if b) if any(b for _, b in rows) else 0
    gap = int(14 * scale)
    widths = [width(a, title is not None and i == 0) if not b else first + gap + width(b) for i, (a, b) in enumerate(rows)]
    line_h = int(cv2.getTextSize("Hg", font, size, thick)[0][1] * 1.9) + 2
    pad = int(10 * scale)
    box_w = min(max(widths) + 2 * pad, frame.shape[1])
    box_h = min(line_h * len(rows) + pad, frame.shape[0])
    margin = int(12 * scale)
    x0 = margin if "left" in corner else frame.shape[1] - box_w - margin
    y0 = margin + int(30 * scale) if "top" in corner else frame.shape[0] - box_h - margin
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x0 + box_w, frame.shape[1]), min(y0 + box_h, frame.shape[0])
    roi = frame[y0:y1, x0:x1]
    roi[...] = (roi.astype(np.uint16) * 3 // 10 + 16).astype(np.uint8)  # 70% darker, never pure black
    for i, (a, b) in enumerate(rows):
        heading = title is not None and i == 0
        y = y0 + pad // 2 + line_h * (i + 1) - line_h // 3
        colour = (120, 220, 255) if heading or b else (255, 255, 255)
        cv2.putText(frame, a, (x0 + pad, y), font, size * (1.15 if heading else 1), colour, thick + heading, cv2.LINE_AA)
        if b:
            cv2.putText(frame, b, (x0 + pad + first + gap, y), font, size, (255, 255, 255), thick, cv2.LINE_AA)
    return frame


def help_lines(hotkeys: Sequence[Hotkey] = HOTKEYS) -> list[str]:
    return [f"{' / '.join(k.labels)}\t{k.help}" for k in hotkeys]


def draw_help(frame: np.ndarray) -> np.ndarray:
    """The key list, top left; in place."""
    return draw_panel(frame, help_lines(), "top-left", title="ipmcam keys")


def stats_lines(summary: Mapping[str, Mapping[str, float]], fps: float | None = None,
                state: ControlState | None = None, reference: str | None = None) -> list[str]:
    """Per-stage p50 (ms) in pipeline order, end-to-end latency, fps and the current settings."""
    lines = [f"{name}\t{summary[name]['p50']:.1f} ms" for name in (*STAGES, "latency")
             if name in summary and name != "style"]
    if fps is not None:
        lines.append(f"shown\t{fps:.1f} fps")
    if state is not None:
        lines.append(f"intensity\t{state.intensity:.1f}" + ("" if state.effect else " (off)"))
    if reference:
        lines.append(f"look: {reference}")
    return lines


def draw_stats(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Stats (from ``stats_lines``), top right; in place."""
    return draw_panel(frame, lines, "top-right", title="p50 per stage")


def draw_message(frame: np.ndarray, text: str) -> np.ndarray:
    """A one-line message, bottom left (what the last key did); in place."""
    return draw_panel(frame, [text], "bottom-left")


def screenshot_path(folder: Path, now: float | None = None) -> Path:
    """A new file name in ``folder``: ipmcam-YYYYmmdd-HHMMSS-mmm.png."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    path = folder / f"ipmcam-{stamp}-{int(now * 1000) % 1000:03d}.png"
    n = 1
    while path.exists():
        path = folder / f"ipmcam-{stamp}-{int(now * 1000) % 1000:03d}-{n}.png"
        n += 1
    return path


# --------------------------------------------------------------------------- the controller


class Controller:
    """Hotkeys of a ``PreviewSink`` applied to a running ``Pipeline``.

    ``references`` is the cycle of (label, reference) the next/previous keys
    step through; a reference may be a zero-argument function (e.g. a preset
    rendered on first use). Call ``on_frame`` after each frame (it is the
    pipeline's ``on_frame`` callback); it never blocks.
    """

    def __init__(self, pipeline: Any, preview: Any, references: Sequence[tuple[str, Any]] = (),
                 screenshots: Path | str = Path("screenshots"), start: int = 0) -> None:
        self.pipeline = pipeline
        self.preview = preview
        self.references = list(references)
        self.screenshots = Path(screenshots)
        opts = pipeline.options
        self.state = ControlState(intensity=float(opts.intensity), effect=opts.effect, split=opts.split,
                                  reference=start, references=max(len(self.references), 1))
        self._message: tuple[str, float] | None = None
        self._stats: tuple[list[str], float] = ([], 0.0)
        self._generation = 0
        self._lock = threading.Lock()
        self.threads: list[threading.Thread] = []  # background work (references, screenshots), for tests
        preview.overlay = self.overlay
        self.say("press h for the keys")

    # -- input
    def on_frame(self, _frames: int = 0) -> None:
        for code in self.preview.take_keys():
            self.handle(action_for_key(code))

    def handle(self, action: str | None) -> None:
        if action is None:
            return
        before, self.state = self.state, apply(self.state, action)
        opts = self.pipeline.options
        opts.intensity, opts.effect, opts.split = self.state.intensity, self.state.effect, self.state.split
        if action.startswith("intensity"):
            self.say(f"intensity {self.state.intensity:.1f}")
        elif action == "toggle_effect":
            self.say("makeup on" if self.state.effect else "makeup off")
        elif action == "split":
            self.say("before | after" if self.state.split else "after")
        elif action.endswith("_reference") and self.state.reference != before.reference:
            self.switch(self.state.reference)
        elif action.endswith("_reference"):
            self.say("no other reference to switch to")
        elif action == "screenshot":
            self.screenshot()
        elif action == "quit":
            self.pipeline.stop()

    def say(self, text: str) -> None:
        log.info("%s", text)
        with self._lock:
            self._message = (text, time.perf_counter() + MESSAGE_SECONDS)

    def _background(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, daemon=True, name=name)
        self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        thread.start()

    def switch(self, index: int) -> None:
        """Load reference ``index`` off the video thread, then swap it in between two frames."""
        label, reference = self.references[index]
        self._generation += 1
        generation = self._generation
        self.say(f"loading {label}...")

        def load() -> None:
            try:
                value = reference() if callable(reference) else reference
                prepared = ({r: prepare_reference(v) for r, v in value.items()} if isinstance(value, Mapping)
                            else prepare_reference(value))
            except Exception as exc:  # noqa: BLE001 - shown, and the current look stays
                self.say(f"cannot use {label}: {exc}")
                return
            if generation == self._generation:  # a newer key press wins
                self.pipeline.request_reference(prepared)
                self.say(f"look: {label}")

        self._background(load, "ipmcam-reference")

    def screenshot(self) -> Path | None:
        """Save the newest published frame (no overlays) as a PNG, off the video thread."""
        frame = self.preview.last_frame
        if frame is None:
            return None
        frame = frame.copy()
        self.screenshots.mkdir(parents=True, exist_ok=True)
        path = screenshot_path(self.screenshots)

        def save() -> None:
            self.say(f"saved {path}" if cv2.imwrite(str(path), frame) else f"cannot write {path}")

        self._background(save, "ipmcam-screenshot")
        return path

    # -- output
    def overlay(self, frame: np.ndarray) -> np.ndarray:
        """What the preview window adds to a frame (called on a copy)."""
        if self.state.help:
            draw_help(frame)
        if self.state.stats:
            lines, at = self._stats
            now = time.perf_counter()
            if now - at > STATS_REFRESH_SECONDS:
                label = self.references[self.state.reference][0] if self.references else None
                lines = stats_lines(self.pipeline.clock.summary(), getattr(self.preview, "fps", None), self.state,
                                    label)
                self._stats = (lines, now)
            draw_stats(frame, lines)
        with self._lock:
            message = self._message
        if message is not None:
            if time.perf_counter() < message[1]:
                draw_message(frame, message[0])
            else:
                self._message = None
        return frame
