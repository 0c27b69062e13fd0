"""Progress reporting and cooperative cancellation shared by the CLI, the Slicer panel and the background process.

A long step calls `progress.update(fraction, message)`; the caller decides how to show it (a text bar on
stderr, a Qt progress bar, a line on stdout that the Slicer panel parses) and may request cancellation,
which the step notices at its next `update` call.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

from .errors import CancelledError

ProgressCallback = Callable[[float, str], None]


class Progress:
    """Carries a callback and a cancel flag through a pipeline. Sub-steps get a slice of [0, 1]."""

    def __init__(self, callback: ProgressCallback | None = None, cancel_event: threading.Event | None = None,
                 start: float = 0.0, end: float = 1.0):
        self._callback = callback
        self.cancel_event = cancel_event or threading.Event()
        self._start, self._end = start, end

    def update(self, fraction: float, message: str = "") -> None:
        if self.cancel_event.is_set():
            raise CancelledError("cancelled by the user")
        if self._callback is not None:
            clamped = min(max(fraction, 0.0), 1.0)
            self._callback(self._start + clamped * (self._end - self._start), message)

    def sub(self, start: float, end: float) -> Progress:
        """A child progress mapping its own [0, 1] onto [start, end] of this one."""
        span = self._end - self._start
        return Progress(self._callback, self.cancel_event, self._start + start * span, self._start + end * span)

    def cancel(self) -> None:
        self.cancel_event.set()


class StderrBar:
    """Text progress bar for the command line; redraws at most 10 times a second."""

    def __init__(self, label: str, stream=None, width: int = 30):
        self.label, self.stream, self.width = label, stream or sys.stderr, width
        self._last = 0.0

    def __call__(self, fraction: float, message: str) -> None:
        if not self.stream.isatty():  # a bar redrawn with \r only garbles a log or a pipe (and the error line)
            return
        now = time.monotonic()
        if fraction < 1.0 and now - self._last < 0.1:
            return
        self._last = now
        filled = int(round(fraction * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {fraction * 100:5.1f}% {message[:40]:<40}")
        if fraction >= 1.0:
            self.stream.write("\n")
        self.stream.flush()


def machine_readable(stream=None) -> ProgressCallback:
    """Progress as lines `PROGRESS <fraction> <message>` for a parent process (the Slicer panel) to parse."""
    out = stream or sys.stdout

    def emit(fraction: float, message: str) -> None:
        out.write(f"PROGRESS {fraction:.4f} {message}\n")
        out.flush()

    return emit
