"""Choosing an engine by name: `classic`, `ipmnet`, or `auto` (ipmnet when its weights are present)."""
from __future__ import annotations

import logging

from ipmcam.engines.base import Engine
from ipmcam.engines.classic import ClassicEngine
from ipmcam.engines.loader import load
from ipmcam.errors import EngineError

log = logging.getLogger("ipmcam")

ENGINES = ("auto", "ipmnet", "classic")


def create_engine(name: str = "auto", backend: str = "auto", precision: str = "fp32",
                  config: str = "lite", model_dir: str | None = None) -> Engine:
    """An engine ready to ``encode_style`` and ``run``.

    ``auto`` prefers the neural model and falls back to ``classic`` (with a log
    line saying why) when no trained weights are installed.
    """
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
    if name == "classic":
        return ClassicEngine()
    try:
        return load(model_dir, backend=backend, precision=precision, config=config)
    except EngineError as exc:
        if name == "ipmnet":
            raise
        log.warning("ipmnet unavailable (%s); using the classic engine", exc)
        return ClassicEngine()
