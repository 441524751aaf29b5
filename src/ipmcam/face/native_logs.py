"""Keeping the native libraries' start-up chatter off the terminal.

mediapipe, TensorFlow Lite and absl print a dozen lines ("W0000 ...",
"INFO: Created TensorFlow Lite XNNPACK delegate") straight to file
descriptor 2 from C++ when a graph is built and first run. Python's logging
never sees them and environment variables no longer silence the absl ones,
so while ``quiet`` is on, file descriptor 2 is pointed at a temporary file
for those moments; anything of ipmcam's own written meanwhile (lines starting
``ipmcam``) is copied back. ``--verbose`` leaves it all on the terminal.

Library use is unchanged unless a program calls ``configure``.
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: environment read by the native libraries at load time (glog-, TensorFlow- and gRPC-style levels)
QUIET_ENVIRONMENT = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3", "ABSL_MIN_LOG_LEVEL": "2",
                     "GRPC_VERBOSITY": "ERROR"}

_state: dict = {"quiet": False, "depth": 0, "saved": -1, "sink": None}
_lock = threading.Lock()


def configure(verbose: bool) -> None:
    """Set the levels before mediapipe, TFLite or absl load; ``verbose=False`` also mutes their start-up."""
    _state["quiet"] = not verbose
    if verbose:
        return
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    logging.getLogger("absl").setLevel(logging.ERROR)


@contextmanager
def muted() -> Iterator[None]:
    """While the block runs, native writes to stderr are dropped (quiet mode only); nestable, thread-safe."""
    if not _state["quiet"]:
        yield
        return
    _enter()
    try:
        yield
    finally:
        _leave()


def _enter() -> None:
    with _lock:
        _state["depth"] += 1
        if _state["depth"] > 1:
            return
        sys.stderr.flush()
        _state["sink"] = tempfile.TemporaryFile()
        _state["saved"] = os.dup(2)
        os.dup2(_state["sink"].fileno(), 2)


def _leave() -> None:
    with _lock:
        _state["depth"] -= 1
        if _state["depth"] > 0:
            return
        sys.stderr.flush()
        saved = _state["saved"]
        os.dup2(saved, 2)
        os.close(saved)
        sink, _state["sink"] = _state["sink"], None
        sink.seek(0)
        ours = [line for line in sink.read().splitlines(keepends=True) if line.startswith(b"ipmcam")]
        sink.close()
        if ours:
            os.write(2, b"".join(ours))
