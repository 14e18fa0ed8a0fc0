"""Faults: the file `waa-emu-fault` writes and every server reads on every request."""
from __future__ import annotations

import os

from .config import FAULTS


class Faults:
    def __init__(self, path: str) -> None:
        self.path = path

    def current(self) -> frozenset[str]:
        try:
            with open(self.path) as handle:
                return frozenset(line.strip() for line in handle if line.strip())
        except OSError:
            return frozenset()

    def has(self, name: str) -> bool:
        return name in self.current()

    def reset(self, initial: tuple[str, ...]) -> frozenset[str]:
        """A (re)start begins from WAA_EMU_FAULT again."""
        unknown = [name for name in initial if name not in FAULTS]
        if unknown:
            raise ValueError(f"unknown faults {unknown}")
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path, "w") as handle:
            handle.write("".join(name + "\n" for name in initial))
        return frozenset(initial)
