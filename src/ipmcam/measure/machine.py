"""What a measurement ran on: the machine, the package versions, and its CPU and memory use."""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = None
    try:
        with open("/proc/meminfo") as f:
            memory = int(f.readline().split()[1]) / 1024.0**2
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "cores_usable": usable, "memory_gb": memory,
            "os": platform.platform(), "python": platform.python_version(), "gpus": _gpus()}


def _gpus() -> list[str]:
    """GPU names from the NVIDIA driver (or an already-imported torch); torch is never imported for this."""
    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        try:
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    names.append(line.split(":", 1)[1].strip())
        except OSError:
            pass
    torch = sys.modules.get("torch")
    if not names and torch is not None:
        try:
            if torch.cuda.is_available():
                names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception:  # noqa: BLE001
            pass
    return names


#: the distributions whose versions a measurement records
MEASURED_PACKAGES = ("ipmcam", "numpy", "opencv-contrib-python", "mediapipe", "onnxruntime", "torch", "tensorrt")


def versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Python's and the installed versions of the packages that decide the numbers (None: not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in MEASURED_PACKAGES + extra:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    out["opencv"] = cv2.__version__
    return out
