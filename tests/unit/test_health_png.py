"""The black-screen check's PNG decoder: every filter type, colour types, bit depths, interlacing,
the 'nearly black' threshold, broken files, and speed on a full 1440x900 screen."""
from __future__ import annotations

import random
import struct
import time
import zlib

import pytest

from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_png import (
    PngError, png_is_black, png_stats, unfilter,
)
from tests.unit.fakes import encode_png, filter_row, make_png


@pytest.mark.parametrize("kind", [0, 1, 2, 3, 4])
def test_unfilter_inverts_each_filter(kind):
    rng = random.Random(kind)
    prev = bytes(rng.randrange(256) for _ in range(48))
    row = bytes(rng.randrange(256) for _ in range(48))
    for bpp in (1, 3, 4, 6):
        assert unfilter(kind, filter_row(kind, row, prev, bpp), prev, bpp) == row
        assert unfilter(kind, filter_row(kind, row, bytes(48), bpp), bytes(48), bpp) == row


@pytest.mark.parametrize("filters", [0, 1, 2, 3, 4, [0, 1, 2, 3, 4]])
def test_black_and_blue_screens_under_every_filter(filters):
    assert png_is_black(make_png(black=True, filters=filters)) == (True, (64, 40))
    assert png_is_black(make_png(black=False, filters=filters)) == (False, (64, 40))


def test_a_uniform_colour_is_mostly_zero_bytes_once_filtered_but_not_black():
    data = make_png(black=False, filters=1)
    raw = zlib.decompress(data[data.index(b"IDAT") + 4:data.index(b"IEND") - 8])
    assert raw.count(0) / len(raw) > 0.9, "what a zero-byte count would have called black"
    assert png_is_black(data)[0] is False


def test_nearly_black_means_at_most_the_threshold_of_pixels():
    cursor = make_png(black=True, width=100, height=100, dots=10, filters=[1, 2, 4])  # 0.1 %
    assert png_is_black(cursor)[0] is True
    assert png_is_black(make_png(black=True, width=100, height=100, dots=11))[0] is False
    assert png_is_black(cursor, threshold=0)[0] is False


def test_alpha_is_ignored_and_palettes_are_looked_up():
    opaque_black = encode_png([b"\x00\x00\x00\xff" * 8] * 8, 8, color_type=6, filters=[1, 2, 3, 4])
    assert png_is_black(opaque_black)[0] is True
    red = encode_png([b"\xff\x00\x00\xff" * 8] * 8, 8, color_type=6, filters=4)
    assert png_is_black(red)[0] is False
    palette = b"\x10\x20\x30" + b"\x00\x00\x00"  # index 1 is black, index 0 is not
    assert png_is_black(encode_png([b"\x01" * 8] * 8, 8, color_type=3, palette=palette))[0] is True
    assert png_is_black(encode_png([b"\x00" * 8] * 8, 8, color_type=3, palette=palette))[0] is False


def test_grayscale_bit_depths_and_16_bit():
    assert png_is_black(encode_png([b"\x00"] * 8, 8, color_type=0, depth=1))[0] is True
    assert png_is_black(encode_png([b"\x80"] * 8, 8, color_type=0, depth=1))[0] is False  # one pixel a row
    rgb16 = encode_png([b"\x00\x00\x00\x00\x00\x01" * 4] * 4, 4, color_type=2, depth=16, filters=1)
    assert png_is_black(rgb16)[0] is False


def test_interlaced_pngs_are_decoded_pass_by_pass():
    def adam7(rows, width, pixel):
        # Build the seven passes by hand for an image whose pixels are all `pixel`.
        raw = b""
        for xs, ys, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                               (0, 1, 1, 2)):
            pw, ph = (width - xs + dx - 1) // dx, (rows - ys + dy - 1) // dy
            if pw and ph:
                raw += (b"\x00" + pixel * pw) * ph
        header = struct.pack(">IIBBBBB", width, rows, 8, 2, 0, 0, 1)

        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")

    assert png_is_black(adam7(9, 11, b"\x00\x00\x00")) == (True, (11, 9))
    assert png_is_black(adam7(9, 11, b"\x00\x5a\x9e"))[0] is False


@pytest.mark.parametrize("data,word", [
    (b"GIF89a", "not a PNG"),
    (b"\x89PNG\r\n\x1a\n", "without a header"),
    (make_png(black=True)[:60], "truncated"),
])
def test_broken_files_raise_png_errors(data, word):
    with pytest.raises(PngError, match=word):
        png_is_black(data)


def test_a_full_screen_is_checked_fast():
    width, height = 1440, 900
    black = encode_png([bytes(3 * width)] * height, width, filters=[0, 1, 2, 4])
    desktop = encode_png([b"\x00\x5a\x9e" * width] * height, width, filters=[1, 2])
    cursor_rows = [bytearray(3 * width) for _ in range(height)]
    for y in range(20):  # a 12x20 white mouse cursor on a black screen
        cursor_rows[y][3 * 700:3 * 712] = b"\xff" * 36
    cursor = encode_png([bytes(r) for r in cursor_rows], width, filters=[1, 2, 4])
    for data, expected in ((black, True), (desktop, False), (cursor, True)):
        started = time.perf_counter()
        stats = png_stats(data)
        assert stats["black"] is expected and (stats["width"], stats["height"]) == (width, height)
        assert time.perf_counter() - started < 1.0
