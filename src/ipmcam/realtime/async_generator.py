"""Running the generator beside the video instead of in its way.

When the generator is slower than the camera, the pipeline hands each new
batch of face crops to a worker thread and carries on with the newest makeup
delta it already has for each face. Deltas live in canonical crop space, so
an older delta is simply warped with the current frame's landmarks: the look
follows the head at camera rate while the generator catches up.
"""
from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from ipmcam.engines.base import Engine


class AsyncGenerator:
    """One worker thread; the newest submitted batch wins, older pending ones are dropped."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cond = threading.Condition()
        self._pending: tuple[np.ndarray, np.ndarray, Any, float, Sequence[Hashable]] | None = None
        self._deltas: dict[Hashable, np.ndarray] = {}
        self._stop = False
        self.generated = 0  # batches the worker finished
        self.skipped = 0  # batches replaced by a newer one before the worker took them
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, daemon=True, name="ipmcam-generator")
        self._thread.start()

    def submit(self, crops: np.ndarray, masks: np.ndarray, style: Any, intensity: float,
               keys: Sequence[Hashable]) -> None:
        """Queue a batch (one key per face, e.g. its track id); replaces a batch not yet started."""
        with self._cond:
            if self.error is not None:
                raise self.error
            if self._pending is not None:
                self.skipped += 1
            self._pending = (crops, masks, style, intensity, list(keys))
            self._cond.notify_all()

    def latest(self, key: Hashable) -> np.ndarray | None:
        """The newest delta (S, S, 3) made for this face, or None before the first."""
        with self._cond:
            return self._deltas.get(key)

    def wait_for(self, key: Hashable, timeout: float | None = None) -> np.ndarray | None:
        """Block until a delta exists for ``key`` (a face's very first frame)."""
        with self._cond:
            self._cond.wait_for(lambda: key in self._deltas or self.error is not None or self._stop, timeout)
            if self.error is not None:
                raise self.error
            return self._deltas.get(key)

    def forget(self, keep: Sequence[Hashable]) -> None:
        """Drop deltas of faces no longer tracked."""
        with self._cond:
            self._deltas = {k: v for k, v in self._deltas.items() if k in set(keep)}

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._stop)
                if self._stop:
                    return
                crops, masks, style, intensity, keys = self._pending
                self._pending = None
            try:
                deltas = self.engine.run(crops, masks, style, intensity)
            except BaseException as exc:  # noqa: BLE001 - handed to the pipeline thread
                with self._cond:
                    self.error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self._deltas.update(zip(keys, deltas))
                self.generated += 1
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=1.0)
