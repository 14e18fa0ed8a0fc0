# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is a PNG screenshot black? A small PNG decoder, standard library only (zlib).

The vm_boot layer asks QEMU for a screendump and calls the screen black when (nearly) every
pixel is 0. Scanlines are unfiltered for real (None, Sub, Up, Average, Paeth): a uniform
coloured desktop encoded with the Sub or Up filter is almost all zero bytes before unfiltering,
so counting raw zero bytes would call a blue desktop black. It stays fast on a 1440x900 screen:
rows whose filtered bytes and predecessor are all zero are known black without a Python loop,
and the count stops as soon as enough non-black pixels were seen to decide.

Bounded whatever the file claims: the image data is inflated a piece at a time (a zlib bomb
never sits in memory; peak use is one scanline plus one inflate step), a PNG larger than MAX_PNG
bytes is refused before decoding, and one whose pixels exceed MAX_RAW_BYTES is refused unread.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
MAX_RAW_BYTES = 64 * 1024 * 1024  # decoded pixel bytes (a 1440x900 RGBA screen is 5 MB)
MAX_PNG = 8 * 1024 * 1024  # the file itself: a 1440x900 screendump is well under 1 MB
INFLATE_STEP = 256 * 1024
# Adam7 passes: x start, y start, x step, y step.
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_NONZERO = re.compile(b"[^\x00]")
DEFAULT_THRESHOLD = 0.001  # at most 0.1 % non-black pixels (a mouse cursor) still counts as black


class PngError(ValueError):
    pass


def _chunks(data):
    if bytes(data[:len(SIGNATURE)]) != SIGNATURE:
        raise PngError("not a PNG")
    view = memoryview(data)
    offset = len(SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", view[offset:offset + 8])
        yield kind, view[offset + 8:offset + 8 + length]
        if kind == b"IEND":
            return
        offset += 12 + length


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def unfilter(kind, line, prev, bpp):
    """One reconstructed scanline (bytes) from its filter type, filtered bytes and the previous line."""
    if kind == 0:
        return bytes(line)
    prev_zero = not any(prev)
    if not any(line) and (prev_zero or kind in (1, 2)):
        return bytes(prev) if kind == 2 else bytes(len(line))
    if kind == 2:
        return bytes((x + p) & 0xFF for x, p in zip(line, prev))
    out = bytearray(line)
    n = len(out)
    if kind == 1 or (kind == 4 and prev_zero):  # Paeth on a zero line above is Sub
        for i in range(bpp, n):
            out[i] = (out[i] + out[i - bpp]) & 0xFF
    elif kind == 3:
        for i in range(n):
            left = out[i - bpp] if i >= bpp else 0
            out[i] = (out[i] + ((left + prev[i]) >> 1)) & 0xFF
    elif kind == 4:
        for i in range(n):
            if i >= bpp:
                out[i] = (out[i] + _paeth(out[i - bpp], prev[i], prev[i - bpp])) & 0xFF
            else:
                out[i] = (out[i] + prev[i]) & 0xFF
    else:
        raise PngError("unknown filter type %d" % kind)
    return bytes(out)


class _Counter(object):
    """Counts non-black pixels of reconstructed rows; knows the pixel layout."""

    def __init__(self, depth, color_type, palette):
        self.depth = depth
        self.color_type = color_type
        channels = CHANNELS[color_type]
        self.bpp = max(1, channels * depth // 8)  # bytes per complete pixel (filter unit)
        sample = max(1, depth // 8)
        self.color_bytes = self.bpp - (sample if color_type in (4, 6) else 0)
        self.black_index = None
        if color_type == 3:
            entries = [palette[i:i + 3] for i in range(0, len(palette) - 2, 3)]
            self.black_index = set(i for i, rgb in enumerate(entries) if rgb == b"\x00\x00\x00")

    def nonblack(self, row, width):
        if self.color_type == 3:
            return sum(1 for index in self._indices(row, width) if index not in self.black_index)
        if self.depth < 8:  # grayscale packed into bits: a zero byte is zero pixels
            return sum(1 for index in self._indices(row, width) if index)
        step, colour = self.bpp, self.color_bytes
        hits = _NONZERO.finditer(row, 0, width * step)  # C speed: only non-zero bytes reach Python
        if colour == step:
            return len(set(m.start() // step for m in hits))
        return len(set(m.start() // step for m in hits if m.start() % step < colour))

    def _indices(self, row, width):
        if self.depth >= 8:
            return row[:width]
        per_byte = 8 // self.depth
        mask = (1 << self.depth) - 1
        values = []
        for byte in row:
            for k in range(per_byte):
                values.append((byte >> (8 - self.depth * (k + 1))) & mask)
        return values[:width]


class _Inflater(object):
    """The decompressed image data, a scanline at a time, never more than one step ahead."""

    def __init__(self, pieces):
        self.pieces = iter(pieces)
        self.inflate = zlib.decompressobj()
        self.buffer = bytearray()

    def take(self, size):
        while len(self.buffer) < size:
            source = self.inflate.unconsumed_tail
            if not source:
                if self.inflate.eof:
                    return None
                source = next(self.pieces, None)
                if source is None:
                    return None
            try:
                self.buffer += self.inflate.decompress(source, INFLATE_STEP)
            except zlib.error as err:
                raise PngError("broken PNG data: %s" % err)
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out


def png_stats(data, threshold=DEFAULT_THRESHOLD):
    """{width, height, nonblack (a lower bound once the answer is known), pixels, black}."""
    if len(data) > MAX_PNG:
        raise PngError("the PNG is larger than %d MB (refused)" % (MAX_PNG >> 20))
    header = None
    palette = b""
    idat = []
    for kind, chunk in _chunks(data):
        if kind == b"IHDR":
            if len(chunk) < 13:
                raise PngError("short IHDR")
            header = struct.unpack(">IIBBBBB", chunk[:13])
        elif kind == b"PLTE":
            palette = chunk
        elif kind == b"IDAT":
            idat.append(chunk)
    if header is None:
        raise PngError("PNG without a header")
    width, height, depth, color_type, _compression, _filter, interlace = header
    if color_type not in CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise PngError("unsupported PNG colour type %s / depth %s" % (color_type, depth))
    counter = _Counter(depth, color_type, palette)
    bits = CHANNELS[color_type] * depth
    if interlace:
        passes = [((width - xs + dx - 1) // dx, (height - ys + dy - 1) // dy) for xs, ys, dx, dy in ADAM7]
        passes = [(w, h) for w, h in passes if w > 0 and h > 0]
    else:
        passes = [(width, height)]
    expected = sum(h * ((w * bits + 7) // 8 + 1) for w, h in passes)
    if expected > MAX_RAW_BYTES:
        raise PngError("PNG of %dx%d is too large to check" % (width, height))
    raw = _Inflater(idat)
    pixels = width * height
    limit = threshold * pixels
    nonblack = 0
    done = 0
    for pass_width, pass_height in passes:
        stride = (pass_width * bits + 7) // 8
        prev = bytes(stride)
        for _row in range(pass_height):
            row = raw.take(stride + 1)
            if row is None:
                raise PngError("truncated PNG data (%d of %d bytes)" % (done, expected))
            done += stride + 1
            kind = row[0]
            line = row[1:]
            prev = unfilter(kind, line, prev, counter.bpp)
            nonblack += counter.nonblack(prev, pass_width)
            if nonblack > limit:
                return {"width": width, "height": height, "nonblack": nonblack, "pixels": pixels, "black": False}
    return {"width": width, "height": height, "nonblack": nonblack, "pixels": pixels, "black": True}


def png_is_black(data, threshold=DEFAULT_THRESHOLD):
    """(black?, (width, height)): black when at most `threshold` of the pixels are not 0."""
    stats = png_stats(data, threshold)
    return stats["black"], (stats["width"], stats["height"])
