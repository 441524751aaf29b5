"""Writing video files so that no loss goes unnoticed and a file cut short still plays.

OpenCV's ``VideoWriter.write`` returns nothing: a full disk or a removed
drive ends a run with exit 0 and a short video. PyAV (FFmpeg) raises on the
failed write instead. MP4 and MOV are written as fragments (a small index
before each second or so of video), so when writing stops part-way, every
fragment already on disk still plays: there is no index at the end to lose.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

#: video suffixes and the container each is written as
VIDEO_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}
_FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
#: MPEG-4 Part 2, as OpenCV's "mp4v": every player and OpenCV itself read it
CODEC = "mpeg4"

#: what FFmpeg raises when it cannot write (av.error.OSError is both), or cannot set up an encoder
WriteFailure = (av.error.FFmpegError, OSError)


class VideoWriter:
    """Frames (BGR uint8, one size) into a video file; each ``write`` raises ``WriteFailure`` when it fails."""

    def __init__(self, path: Path, width: int, height: int, fps: float) -> None:
        container_format = VIDEO_FORMATS[path.suffix.lower()]
        options = _FRAGMENTED if container_format in ("mp4", "mov") else {}
        # FFmpeg's own file writer keeps a failed write to itself (the muxer may never report it); through an
        # unbuffered Python file every write that fails raises, and PyAV passes it on from ``mux``.
        self._file = open(path, "wb", buffering=0)  # noqa: SIM115 - closed in close()
        try:
            self._container = av.open(self._file, "w", format=container_format, options=options)
        except BaseException:
            self._file.close()
            raise
        try:
            self._stream = self._container.add_stream(CODEC, rate=Fraction(fps).limit_denominator(1001))
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
            self._stream.bit_rate = int(width * height * fps)  # OpenCV's rate for mp4v: the quality users had
        except BaseException:
            self._container.close()
            self._file.close()
            raise

    def write(self, frame: np.ndarray) -> None:
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and finish the file; the file is closed even when the flush fails."""
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            try:
                self._container.close()
            finally:
                self._file.close()


def count_frames(path: Path) -> int:
    """Frames a video file holds (read from its packets, nothing decoded); 0 when it cannot be read."""
    try:
        with av.open(str(path)) as container:
            return sum(1 for packet in container.demux(video=0) if packet.size)
    except (*WriteFailure, ValueError, IndexError):
        return 0
