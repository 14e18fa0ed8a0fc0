"""The emulated screen: a black screen while Windows boots, then a Windows 11-ish desktop."""
from __future__ import annotations

import struct
import threading
import zlib

from .config import SCREEN_H, SCREEN_W

Colour = tuple[int, int, int]
Span = tuple[int, int, Colour]


def png_bytes(width: int, height: int, rows: list[bytes]) -> bytes:
    """A truecolour PNG (filter 0 on every row) from raw RGB rows."""
    raw = b"".join(b"\x00" + row for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _row(background: Colour, spans: list[Span], width: int = SCREEN_W) -> bytes:
    """One row of the screen: a background colour with (x0, x1, colour) spans painted in order."""
    row = bytearray(bytes(background) * width)
    for x0, x1, colour in spans:
        x0, x1 = max(0, x0), min(width, x1)
        if x1 > x0:
            row[3 * x0:3 * x1] = bytes(colour) * (x1 - x0)
    return bytes(row)


def desktop_rows() -> list[bytes]:
    """Blue wallpaper, a File Explorer window, the centred taskbar (as desktop.WINDOWS places them)."""
    rows = []
    taskbar_top = SCREEN_H - 48
    win_x0, win_x1, win_y0, win_y1 = 320, 1120, 140, 640
    icons = [(640, (0, 103, 192)), (690, (255, 185, 0)), (740, (0, 120, 212)), (790, (16, 124, 16))]
    for y in range(SCREEN_H):
        if y >= taskbar_top:
            spans: list[Span] = [(0, SCREEN_W, (238, 238, 242))] if y == taskbar_top else []
            if taskbar_top + 12 <= y < taskbar_top + 36:
                spans += [(x, x + 24, colour) for x, colour in icons]
            rows.append(_row((243, 243, 243), spans))
            continue
        shade = 120 + (y * 80) // taskbar_top  # a vertical gradient
        background = (0, max(40, shade - 40), min(255, shade + 70))
        spans = [(40, 88, (255, 210, 80)) if 40 <= y < 84 else (0, 0, (0, 0, 0))]  # a desktop icon
        if win_y0 <= y < win_y1:
            if y < win_y0 + 32:
                spans.append((win_x0, win_x1, (243, 243, 243)))  # title bar
                if win_y0 + 10 <= y < win_y0 + 22:
                    spans.append((win_x0 + 12, win_x0 + 24, (255, 185, 0)))
            else:
                spans.append((win_x0, win_x1, (255, 255, 255)))
                spans.append((win_x0, win_x0 + 200, (249, 249, 249)))  # navigation pane
                if (y - win_y0) % 28 < 14 and y < win_y1 - 40:
                    spans.append((win_x0 + 230, win_x0 + 520, (220, 220, 225)))  # file rows
            spans.append((win_x0, win_x0 + 1, (200, 200, 200)))
            spans.append((win_x1 - 1, win_x1, (200, 200, 200)))
        rows.append(_row(background, spans))
    return rows


def crop_png(rows: list[bytes], x0: int, y0: int, x1: int, y1: int) -> bytes:
    """A PNG of a rectangle of the screen (what ImageGrab.grab(rect) gives)."""
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(SCREEN_W, max(x0 + 1, x1)), min(SCREEN_H, max(y0 + 1, y1))
    return png_bytes(x1 - x0, y1 - y0, [row[3 * x0:3 * x1] for row in rows[y0:y1]])


class Screen:
    """The two pictures the emulated screen can show, each built once on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[bool, list[bytes]] = {}
        self._cache: dict[tuple[bool, str], bytes] = {}

    def rows(self, black: bool) -> list[bytes]:
        with self._lock:
            if black not in self._rows:
                self._rows[black] = [bytes(3 * SCREEN_W)] * SCREEN_H if black else desktop_rows()
            return self._rows[black]

    def image(self, black: bool, fmt: str = "png") -> bytes:
        rows = self.rows(black)
        with self._lock:
            key = (black, fmt)
            if key not in self._cache:
                self._cache[key] = (png_bytes(SCREEN_W, SCREEN_H, rows) if fmt == "png"
                                    else f"P6\n{SCREEN_W} {SCREEN_H}\n255\n".encode() + b"".join(rows))
            return self._cache[key]
