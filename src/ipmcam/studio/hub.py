"""The newest published frame, for web viewers: a pipeline sink that MJPEG streams read from.

The video thread only keeps a reference to each frame it publishes (no copy,
no encoding), so a studio nobody watches costs the pipeline nothing. A viewer
asks for the next frame; the first viewer to ask encodes it to JPEG and every
other viewer reuses those bytes, so a frame is encoded at most once however
many browsers watch, never while none does, and never on the video thread.
A slow viewer skips to the newest frame instead of queueing old ones, which
keeps the stream's latency bounded.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np

from ipmcam.errors import SinkError
from ipmcam.realtime.sinks import Sink

#: JPEG quality of the stream: visually clean at webcam sizes, about 40 KB a 640x480 frame
JPEG_QUALITY = 80
_RATE_WINDOW = 30  # frames the published rate is measured over
_RATE_STALE_SECONDS = 2.0  # no frame this long: the rate reads 0


def encode_jpeg(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """A BGR uint8 frame as JPEG bytes."""
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SinkError(f"cannot encode a {frame.shape} frame as JPEG")
    return data.tobytes()


@dataclass(frozen=True)
class Jpeg:
    """One encoded frame: its number, its bytes, and when the pipeline published it (perf_counter)."""

    seq: int
    data: bytes
    published_at: float


class FrameHub(Sink):
    """Keeps the newest published frame; hands it out JPEG-encoded, once per frame, to whoever watches."""

    def __init__(self, quality: int = JPEG_QUALITY, clock: Callable[[], float] = time.perf_counter) -> None:
        """``clock``: when frames are published, in seconds (perf_counter; tests pass their own)."""
        self.quality = quality
        self._clock = clock
        self.encoded = 0  #: frames encoded so far
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._published_at = 0.0
        self._closed = False
        self._times: deque[float] = deque(maxlen=_RATE_WINDOW)
        self._encode_lock = threading.Lock()
        self._jpeg: Jpeg | None = None
        self._viewers = 0

    # -- the pipeline's side
    def write(self, frame: np.ndarray) -> None:
        now = self._clock()
        with self._cond:
            self._frame, self._seq, self._published_at = frame, self._seq + 1, now
            self._times.append(now)
            self._cond.notify_all()

    def close(self) -> None:
        """End every stream (the pipeline has stopped)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- the viewers' side
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def frames(self) -> int:
        """Frames published so far."""
        return self._seq

    @property
    def viewers(self) -> int:
        """Streams being watched now."""
        return self._viewers

    @property
    def fps(self) -> float:
        """Frames published per second over the last few; 0 when none came lately."""
        with self._cond:
            times = list(self._times)
        if len(times) < 2 or self._clock() - times[-1] > _RATE_STALE_SECONDS:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-9)

    def latest(self) -> np.ndarray | None:
        """The newest published frame (not to be written to), or None before the first."""
        with self._cond:
            return self._frame

    @contextmanager
    def watch(self) -> Iterator[None]:
        """Counts a viewer for as long as the block runs.

        Leaving waits for an encoding in progress, so once ``viewers`` reads 0
        no frame is being encoded and none will be until someone watches again.
        """
        with self._cond:
            self._viewers += 1
        try:
            yield
        finally:
            with self._encode_lock, self._cond:
                self._viewers -= 1

    def next_jpeg(self, after: int, timeout: float) -> Jpeg | None:
        """The newest frame published after frame ``after``, as JPEG.

        Waits up to ``timeout`` seconds for one; None when none came, the
        hub is closed, or every viewer left meanwhile (a disconnected stream's
        abandoned wait must not encode for nobody). Call it inside ``watch``.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._seq > after or self._closed, timeout) or self._seq <= after:
                return None
            frame, seq, published_at = self._frame, self._seq, self._published_at
        assert frame is not None
        with self._encode_lock:
            if self._viewers == 0:
                return None
            if self._jpeg is None or self._jpeg.seq < seq:
                self._jpeg = Jpeg(seq, encode_jpeg(frame, self.quality), published_at)
                self.encoded += 1
            return self._jpeg
