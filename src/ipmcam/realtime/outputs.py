"""Feeding every output each frame, and deciding what a failing one costs the run.

Processing a file (``keep_going=False``) stops at the first failed write: the
sink has finished its file with what it holds and the SinkError says so, so
a short video never passes for a complete one. A live stream
(``keep_going=True``) outlives a failing output: the others go on, the
failure is one warning line, and an output that can come back (a virtual
camera whose device was removed) is reopened with exponential backoff.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ipmcam.errors import SinkError
from ipmcam.realtime.sinks import Sink

log = logging.getLogger("ipmcam")


@dataclass
class _Lost:
    """An output that failed in a live run and is waiting to be reopened."""

    sink: Sink
    retry_at: float
    delay: float


class Outputs:
    """The sinks of one run; ``failed`` lists those lost for good (a run that lost one exits non-zero)."""

    def __init__(self, sinks: Sequence[Sink], keep_going: bool = False, first_retry: float = 0.5,
                 max_retry: float = 8.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.active = list(sinks)
        self.keep_going = keep_going
        self.first_retry, self.max_retry = first_retry, max_retry
        self.clock = clock
        self.lost: list[_Lost] = []
        self.failed: list[str] = []
        self.size: tuple[int, int] | None = None
        self._fps = 30.0

    def open(self, width: int, height: int, fps: float) -> None:
        """Open every sink for this size; one that cannot open is a refusal, whatever the mode."""
        self.size, self._fps = (width, height), fps
        for sink in self.active:
            sink.open(width, height, fps)

    def write(self, frame: np.ndarray) -> None:
        """Hand the frame to every working sink (after reopening those whose retry time has come)."""
        self._reopen_due()
        for sink in list(self.active):
            try:
                sink.write(frame)
            except SinkError as exc:
                if not self.keep_going:
                    raise
                self._lose(sink, exc)

    def _lose(self, sink: Sink, exc: SinkError) -> None:
        self.active.remove(sink)
        try:
            sink.close()
        except SinkError:
            pass  # the write's error already said what was lost
        if not sink.reopenable and not self.active and not self.lost:
            raise exc  # nothing left to feed: the run ends, with this as its error
        if sink.reopenable:
            self.lost.append(_Lost(sink, self.clock() + self.first_retry, self.first_retry))
            log.warning("%s; the stream goes on, and %s is retried in the background", exc, sink.name)
        else:
            self.failed.append(str(exc))
            log.warning("%s; the stream goes on without it", exc)

    def _reopen_due(self) -> None:
        now = self.clock()
        for lost in [entry for entry in self.lost if entry.retry_at <= now]:
            try:
                lost.sink.open(*self.size, self._fps)
            except SinkError:
                lost.delay = min(lost.delay * 2, self.max_retry)
                lost.retry_at = now + lost.delay
                continue
            self.lost.remove(lost)
            self.active.append(lost.sink)
            log.warning("%s is back", lost.sink.name)

    def still_lost(self) -> list[str]:
        """Outputs lost for good, and those still waiting to come back when the run ends."""
        return self.failed + [f"{entry.sink.name} did not come back" for entry in self.lost]
