"""The container log (stdout): the real image's lines in their real wording, and `[waa-emu]` lines."""
from __future__ import annotations

import sys
import threading
from typing import TextIO


class Log:
    """One line at a time on a stream (docker logs), flushed at once; thread-safe."""

    def __init__(self, stream: TextIO | None = None, color: bool = False) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()
        self.color = color

    def line(self, text: str) -> None:
        with self._lock:
            self._stream.write(text + "\n")
            self._stream.flush()

    def info(self, message: str) -> None:  # dockur's info(): "❯ message"
        self.line(f"\x1b[1;34m❯ \x1b[1;36m{message}\x1b[0m" if self.color else f"❯ {message}")

    def error(self, message: str) -> None:  # dockur's error() (the real one writes stderr)
        self.line(f"\x1b[1;31m❯ ERROR: {message}\x1b[0m" if self.color else f"❯ ERROR: {message}")

    def warn(self, message: str) -> None:  # dockur's warn() (the real one writes stderr)
        self.line(f"\x1b[1;31m❯ Warning: {message}\x1b[0m" if self.color else f"❯ Warning: {message}")

    def emu(self, message: str) -> None:
        """A line only the emulator writes: never mistaken for one of the real image's."""
        self.line(f"[waa-emu] {message}")
