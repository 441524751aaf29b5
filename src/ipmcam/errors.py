"""Errors whose message is shown to the user as one line, without a traceback.

A leaf module: it imports nothing of ours, so every layer may raise these.
"""
from __future__ import annotations


class UserError(RuntimeError):
    """Bad input or environment the user can fix (file, camera, device); the message says how."""


class SinkError(UserError):
    """An output (virtual camera, file, window) cannot be opened or written."""


class SourceError(UserError):
    """An input (camera, video, image) cannot be opened or read."""


class BadReferenceError(UserError):
    """A reference photo cannot be used (unreadable, no face, several faces)."""


class EngineError(RuntimeError):
    """An engine cannot be loaded or run; the message is meant for the user."""
