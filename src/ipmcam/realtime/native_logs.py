"""Keeping the native libraries' chatter off the terminal, unless ``--verbose``.

mediapipe, TensorFlow Lite, absl and OpenCV print a dozen lines ("W0000 ...",
"INFO: Created TensorFlow Lite XNNPACK delegate") from C++ straight to file
descriptor 2, some from their own threads at moments no caller controls,
and environment variables no longer silence the absl ones. So while a
command runs quietly, Python's ``sys.stderr`` keeps the real terminal (the
progress bar still sees a TTY) and file descriptor 2, where only native code
and stray writers still go, feeds a thread that drops those libraries'
informational lines and passes everything else on (errors, crashes).
"""
from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import cv2

#: read by the native libraries when they load (glog, TensorFlow, absl, gRPC levels): errors only
QUIET_ENVIRONMENT = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3", "ABSL_MIN_LOG_LEVEL": "2",
                     "GRPC_VERBOSITY": "ERROR", "OPENCV_LOG_LEVEL": "ERROR", "OPENCV_FFMPEG_LOGLEVEL": "-8"}

#: informational lines of absl/glog (I/W levels), TFLite and OpenCV; errors (E, F) still pass
NOISE = re.compile(rb"^(?:[IW]\d{4} \d\d:\d\d:\d\d|INFO: |WARNING: All log messages before absl::InitializeLog|"
                   rb"\[ ?(?:WARN|INFO):\d|\[ERROR:\d+@[\d.]+\] global obsensor)")


def quiet_environment() -> None:
    """Set the native libraries' levels; must run before they load to count (ipmcam loads them lazily)."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    logging.getLogger("absl").setLevel(logging.ERROR)
    cv2.setLogLevel(2)  # errors only (OpenCV: 0 silent, 1 fatal, 2 error, 3 warning)


@contextmanager
def filtered(enabled: bool = True) -> Iterator[None]:
    """While the block runs, native writes to stderr lose their informational lines; all is restored after."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    relay = threading.Thread(target=_relay, args=(read_end, terminal), daemon=True, name="ipmcam-stderr")
    relay.start()
    python_stderr = sys.stderr
    if _on_fd2(python_stderr):  # Python's own writes go straight to the terminal, keeping it a TTY
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(terminal), "wb", buffering=0), encoding=python_stderr.encoding,
                                      errors="backslashreplace", line_buffering=True)
    try:
        yield
    finally:
        if sys.stderr is not python_stderr:
            sys.stderr.close()
            sys.stderr = python_stderr
        python_stderr.flush()
        os.dup2(terminal, 2)  # closes the pipe's last write end: the relay reads to the end and stops
        relay.join(timeout=5.0)
        os.close(terminal)


def _on_fd2(stream: object) -> bool:
    try:
        return stream.fileno() == 2  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # captured (tests), or no file behind it
        return False


def _relay(read_end: int, terminal: int) -> None:
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        for line in iter(pipe.readline, b""):
            if not NOISE.match(line):
                os.write(terminal, line)
