"""Where ipmcam's own files are: the shipped model, the presets, the demo clip and reference.

A leaf module (it imports nothing of ours). They are package data, so they
sit inside the package whether it runs from a checkout (``src/ipmcam``) or
from an installed wheel (``site-packages/ipmcam``).
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: trained generators, one folder per model config (``lite``)
WEIGHTS_DIR = PACKAGE_DIR / "weights"
#: built-in looks, one TOML file each
PRESET_DIR = PACKAGE_DIR / "presets"
ASSETS_DIR = PACKAGE_DIR / "assets"
#: the demo clip: a short talking head with no visible makeup (its first frame is the presets' bare face)
DEMO_CLIP = ASSETS_DIR / "demo.mp4"
#: the demo's reference: a frame of a face wearing strong makeup
DEMO_REFERENCE = ASSETS_DIR / "reference.jpg"

#: A source checkout's root (``src/ipmcam`` -> root), where development caches go; None for a wheel.
CHECKOUT = PACKAGE_DIR.parents[1] if (PACKAGE_DIR.parents[1] / "pyproject.toml").is_file() else None
#: Scratch files of training and calibration (face caches, checkpoints): beside a checkout, else the user cache.
CACHE_DIR = (CHECKOUT / ".cache" if CHECKOUT is not None
             else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ipmcam")
#: The development data (faces, clips) used by training, calibration and evaluation: $IPMCAM_SHARED_DATA,
#: else ``../shared/data`` beside a checkout, else ``./shared/data``.
SHARED_DATA = Path(os.environ.get("IPMCAM_SHARED_DATA")
                   or ((CHECKOUT.parent if CHECKOUT is not None else Path.cwd()) / "shared" / "data"))

