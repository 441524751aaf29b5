"""A backend that survives a GPU failing mid-stream by handing over to the next backend.

``loader.load`` already passes over a backend that cannot be *loaded*; this
covers what only shows once frames flow: a lost device, an out-of-memory on
a bigger batch, a driver or TensorRT error on a real input. The failed call
is retried on the next backend of the chain (TensorRT, then torch on CUDA,
then onnxruntime), one warning line says what happened, and the stream goes
on. Only if the last backend fails too does the error reach the caller.

Style codes are float32 outputs of the same style encoder on every backend,
so a style encoded before the switch is used as is after it. The next
backend is built only when it is needed (a healthy run pays nothing).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ipmcam.engines.ipmnet_engine import Backend
from ipmcam.errors import EngineError

log = logging.getLogger("ipmcam")

#: a backend still to try: its name and how to build it
Candidate = tuple[str, Callable[[], Backend]]


def first_line(exc: BaseException) -> str:
    """An exception as one short line (CUDA and TensorRT errors run over several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class FallbackBackend:
    """Runs ``first``; when one of its calls raises, switches to the next of ``later`` that builds and
    retries the call there. Safe to call from several threads: one of them switches, the others retry."""

    def __init__(self, first: Backend, later: Sequence[Candidate]) -> None:
        self._current = first
        self._later = list(later)
        self._lock = threading.Lock()
        self.switches = 0

    @property
    def name(self) -> str:
        return self._current.name

    def style(self, image: np.ndarray, masks: np.ndarray) -> np.ndarray:
        return self._call("style", image, masks)

    def generate(self, image: np.ndarray, masks: np.ndarray, style: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        return self._call("generate", image, masks, style, alpha)

    def _call(self, method: str, *args: np.ndarray) -> Any:
        while True:
            backend = self._current
            try:
                return getattr(backend, method)(*args)
            except Exception as exc:  # noqa: BLE001 - any runtime's error (CUDA, TensorRT, torch) hands over
                self._switch(backend, exc)

    def _switch(self, failed: Backend, exc: Exception) -> None:
        """Replace ``failed`` by the next backend that builds; EngineError when none is left."""
        with self._lock:
            if self._current is not failed:
                return  # another thread has switched already: just retry
            passed_over = []
            while self._later:
                name, build = self._later.pop(0)
                try:
                    backend = build()
                except Exception as build_exc:  # noqa: BLE001 - the same device may be gone for it too
                    passed_over.append(f"{name}: {first_line(build_exc)}")
                    continue
                self._current = backend
                self.switches += 1
                break
            else:
                tried = f" (also unavailable: {'; '.join(passed_over)})" if passed_over else ""
                raise EngineError(f"{failed.name} failed at run time ({first_line(exc)}) and no other "
                                  f"backend is left{tried}") from exc
        also = f"; passed over {'; '.join(passed_over)}" if passed_over else ""
        log.warning("backend %s failed at run time (%s); continuing on %s%s", failed.name, first_line(exc),
                    backend.name, also)
        try:
            failed.close()
        except Exception as close_exc:  # noqa: BLE001 - a broken device may fail to free, too
            log.debug("closing %s after its failure: %s", failed.name, first_line(close_exc))

    def close(self) -> None:
        self._current.close()
