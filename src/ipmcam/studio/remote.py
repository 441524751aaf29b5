"""The live pipeline as the web page steers it: settings, looks, and the state the page shows.

Requests arrive on the server's threads; the pipeline runs on its own. A
settings change is queued and written to ``pipeline.options`` by
``on_frame`` (the pipeline's per-frame callback), so it lands between two
frames and a frame never mixes old and new settings, the same way the
preview window's hotkeys do. A new look is read, its face found and aligned
on the request's thread (so the page hears at once whether the photo is
usable) and then swapped in by ``Pipeline.request_reference`` between two
frames; the video never waits for it.
"""
from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Mapping
from itertools import islice
from typing import Any

import numpy as np

from ipmcam.errors import UserError
from ipmcam.realtime import presets
from ipmcam.realtime.mixing import REGIONS
from ipmcam.realtime.pipeline import Pipeline, prepare_reference
from ipmcam.realtime.stages import LATENCY
from ipmcam.studio.hub import FrameHub

FLAGS = ("enabled", "mirror", "split")
SETTINGS = ("intensity", "strengths", *FLAGS)
_LATENCY_SAMPLES = 60  # the latency shown is the median of this many recent frames
_STATS_SECONDS = 0.5  # how often the video thread refreshes the shown latency


def _unit(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise UserError(f"{name} must be a number from 0 to 1, got {value!r}")
    return float(value)


def parse_settings(body: Any) -> dict[str, Any]:
    """A settings request (any subset of SETTINGS), checked; a one-line UserError names what is wrong."""
    if not isinstance(body, Mapping):
        raise UserError("settings must be a JSON object")
    unknown = sorted(set(body) - set(SETTINGS))
    if unknown:
        raise UserError(f"unknown settings {unknown}: choose from {', '.join(SETTINGS)}")
    out: dict[str, Any] = {}
    if "intensity" in body:
        out["intensity"] = _unit(body["intensity"], "intensity")
    if "strengths" in body:
        strengths = body["strengths"]
        if not isinstance(strengths, Mapping) or set(strengths) - set(REGIONS):
            raise UserError(f"strengths must be an object with keys from {', '.join(REGIONS)}")
        out["strengths"] = {region: _unit(v, f"strength of {region}") for region, v in strengths.items()}
    for flag in FLAGS:
        if flag in body:
            if not isinstance(body[flag], bool):
                raise UserError(f"{flag} must be true or false, got {body[flag]!r}")
            out[flag] = body[flag]
    return out


def engine_info(name: str, precision: str) -> dict[str, str]:
    """Engine, backend and precision for the page, from an engine's name ("ipmnet/onnxruntime", "classic")."""
    engine, _, backend = name.partition("/")
    return {"engine": engine, "backend": backend or "none", "precision": precision if backend else "fp32"}


class RemoteControls:
    """What the web page changes on a running ``Pipeline``, and what it shows of it."""

    def __init__(self, pipeline: Pipeline, hub: FrameHub, reference: str, precision: str = "fp32") -> None:
        self.pipeline = pipeline
        self.hub = hub
        self.info = engine_info(pipeline.engine.name, precision)
        self.run = uuid.uuid4().hex[:12]  #: tells a page that the studio it talks to was restarted
        self._reference = reference
        self._pending: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._latency: float | None = None
        self._stats_at = 0.0

    # -- settings
    def update(self, settings: Mapping[str, Any]) -> None:
        """Queue checked settings (from ``parse_settings``) for the next gap between two frames."""
        with self._lock:
            merged = {**self._pending, **settings}
            if "strengths" in settings:
                merged["strengths"] = {**self._pending.get("strengths", {}), **settings["strengths"]}
            self._pending = merged

    def settings(self) -> dict[str, Any]:
        """The settings in effect, with those still queued applied."""
        opts = self.pipeline.options
        current = {"intensity": float(opts.intensity), "enabled": opts.effect, "mirror": opts.mirror,
                   "split": opts.split, "strengths": {r: 1.0 for r in REGIONS} | dict(opts.strengths or {})}
        with self._lock:
            pending = dict(self._pending)
        current["strengths"] |= pending.pop("strengths", {})
        return current | pending

    def on_frame(self, _frames: int = 0) -> None:
        """Apply the queued settings; refresh the shown latency now and then. Runs on the video thread."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending:
            opts = self.pipeline.options
            opts.intensity = pending.get("intensity", opts.intensity)
            opts.effect = pending.get("enabled", opts.effect)
            opts.mirror = pending.get("mirror", opts.mirror)
            opts.split = pending.get("split", opts.split)
            if "strengths" in pending:  # a new dict: the engine thread reads the old one whole, or this one
                opts.strengths = {r: 1.0 for r in REGIONS} | dict(opts.strengths or {}) | pending["strengths"]
        now = time.perf_counter()
        if now - self._stats_at >= _STATS_SECONDS:
            self._stats_at = now
            recent = list(islice(reversed(self.pipeline.clock.samples.get(LATENCY, ())), _LATENCY_SAMPLES))
            self._latency = float(np.median(recent)) if recent else None

    # -- looks
    def use_image(self, image: np.ndarray, label: str) -> None:
        """Copy the makeup of a photo (BGR uint8); a BadReferenceError when it holds no usable face."""
        prepared = prepare_reference(image)
        with self._lock:
            self.pipeline.request_reference(prepared)
            self._reference = label

    def use_preset(self, name: str) -> None:
        """Copy a built-in look; a UserError naming the presets when there is none by that name."""
        presets.load(name)
        self.use_image(presets.preset_image(name), f"preset {name}")

    @property
    def reference(self) -> str:
        return self._reference

    # -- what the page shows
    def state(self) -> dict[str, Any]:
        return {
            **self.info,
            **self.settings(),
            "reference": self._reference,
            "fps": round(self.hub.fps, 2),
            "latency_ms": None if self._latency is None else round(self._latency, 1),
            "faces": self.pipeline.faces,
            "frames": self.hub.frames,
            "viewers": self.hub.viewers,
            "run": self.run,
        }
