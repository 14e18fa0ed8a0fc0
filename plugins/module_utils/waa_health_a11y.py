# -*- coding: utf-8 -*-
# Copyright: openadapt.waa contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Counting the windows of an accessibility tree as it arrives, in bounded memory.

`GET /accessibility` answers `{"AT": "<xml>"}`; on a busy desktop the XML is megabytes of
elements. Neither the JSON string nor the DOM is ever built: the body's pieces go through an
incremental scanner of the JSON object that decodes only the `AT` string (C-speed, a piece at a
time) into an `xml.etree.ElementTree.XMLPullParser`; every element is cleared and dropped from
its parent once it ends, so memory stays at one piece plus the open elements. The answer is known
as soon as the tree is non-empty "enough": at least one complete window under the root and
ENOUGH_CHARS of tree read (or the end of the tree). A tree with no window after MAX_TREE_CHARS, or
nested deeper than MAX_DEPTH, is refused. DTDs are refused (entity expansion, "billion laughs"): the WAA server never sends one.
Standard library only.

    count_windows(pieces) -> TreeCount(found, root, windows, complete, chars)
    TreeError (not JSON / not XML / too large / DTD)
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import codecs
import re
from collections import namedtuple
from json import decoder as json_decoder
from xml.etree import ElementTree

ENOUGH_CHARS = 1 << 20  # with a window seen, stop reading after 1 MB of tree
MAX_TREE_CHARS = 16 << 20  # no window after 16 MB of tree: refused
MAX_KEY_CHARS = 1024
MAX_DEPTH = 2000  # a desktop's UIA tree is tens of levels deep; millions of open elements would not fit
FEED_CHARS = 64 * 1024

TreeCount = namedtuple("TreeCount", ["found", "root", "windows", "complete", "chars"])

# The longest prefix of a JSON string's content made of whole tokens (no possessive quantifiers:
# targets may run Python 3.10).
_STRING_PART = re.compile(r'(?:[^"\\]+|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*')
_HIGH_SURROGATE_END = re.compile(r'\\u[dD][89abAB][0-9a-fA-F]{2}$')
_SCALAR = re.compile(r'-?[0-9][0-9.eE+-]*|true|false|null')


class TreeError(ValueError):
    pass


class _Stop(Exception):
    pass


class _Text(object):
    """The body's pieces as text, with a cursor."""

    def __init__(self, pieces):
        self.pieces = iter(pieces)
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.text = ""
        self.pos = 0
        self.ended = False

    def more(self):
        if self.ended:
            return False
        piece = next(self.pieces, None)
        if piece is None:
            self.ended = True
            added = self.decoder.decode(b"", final=True)
        else:
            added = self.decoder.decode(piece)
        self.text = self.text[self.pos:] + added
        self.pos = 0
        return True

    def peek(self):
        while self.pos >= len(self.text):
            if not self.more():
                return ""
        return self.text[self.pos]

    def skip_ws(self):
        while True:
            char = self.peek()
            if char and char in " \t\r\n":
                self.pos += 1
            else:
                return char

    def expect(self, char):
        if self.skip_ws() != char:
            raise TreeError("the answer is not the JSON object expected (wanted %r, got %r)"
                            % (char, self.text[self.pos:self.pos + 20]))
        self.pos += 1

    def string(self, sink, limit):
        """The JSON string at the cursor (after skip_ws), its decoded text handed to `sink` in pieces."""
        self.expect('"')
        total = 0
        while True:
            if self.pos >= len(self.text) and not self.more():
                raise TreeError("the answer ends inside a JSON string")
            match = _STRING_PART.match(self.text, self.pos)
            end = match.end()
            at_end = end < len(self.text) and self.text[end] == '"'
            if not at_end and end < len(self.text) and len(self.text) - end >= 6:
                raise TreeError("bad escape in a JSON string: %r" % self.text[end:end + 6])
            if not at_end:
                tail = _HIGH_SURROGATE_END.search(self.text, self.pos, end)
                if tail and not self.ended:  # keep a surrogate pair together
                    end = tail.start()
            if end > self.pos:
                part = json_decoder.scanstring('"%s"' % self.text[self.pos:end], 1, False)[0]
                total += len(part)
                if total > limit:
                    raise TreeError("a JSON string longer than %d characters" % limit)
                sink(part)
            if at_end:
                self.pos = end + 1
                return
            self.pos = end
            if not self.more():
                raise TreeError("the answer ends inside a JSON string")

    def skip_value(self):
        """Skip one JSON value; returns its kind ("string", "scalar", "object", "array")."""
        char = self.skip_ws()
        if char == '"':
            self.string(lambda part: None, MAX_TREE_CHARS)
            return "string"
        if char in "{[":
            depth = 0
            while True:
                char = self.peek()
                if not char:
                    raise TreeError("the answer ends inside a JSON value")
                if char == '"':
                    self.string(lambda part: None, MAX_TREE_CHARS)
                    continue
                self.pos += 1
                if char in "{[":
                    depth += 1
                elif char in "}]":
                    depth -= 1
                    if depth == 0:
                        return "object"
        while len(self.text) - self.pos < 16 and self.more():
            pass
        match = _SCALAR.match(self.text, self.pos)
        if not match:
            raise TreeError("the answer is not JSON: %r" % self.text[self.pos:self.pos + 20])
        self.pos = match.end()
        return "scalar"


class _Counter(object):
    """XMLPullParser fed piece by piece; counts the root's children; keeps only open elements."""

    def __init__(self, enough_chars, max_chars):
        self.parser = ElementTree.XMLPullParser(events=("start", "end"))
        self.stack = []
        self.root = None
        self.windows = 0
        self.chars = 0
        self.enough_chars = enough_chars
        self.max_chars = max_chars
        self.pending = []
        self.pending_chars = 0
        self.carry = ""

    def feed(self, part):
        self.pending.append(part)
        self.pending_chars += len(part)
        if self.pending_chars >= FEED_CHARS:
            self.flush()

    def flush(self):
        if not self.pending:
            return
        text = "".join(self.pending)
        self.pending = []
        self.pending_chars = 0
        self.chars += len(text)
        if self.root is None:  # a DTD can only come before the root element
            window = self.carry + text
            if "<!DOCTYPE" in window or "<!ENTITY" in window:
                raise TreeError("the tree declares a DTD (refused: entity expansion)")
            self.carry = window[-16:]
        try:
            self.parser.feed(text)
            self._drain()
        except ElementTree.ParseError as err:
            raise TreeError("the tree is not XML: %s" % err)
        if self.windows and self.chars >= self.enough_chars:
            raise _Stop()
        if self.chars > self.max_chars:
            raise TreeError("the tree is larger than %d MB without a complete window (refused)"
                            % (self.max_chars >> 20))

    def _drain(self):
        for event, element in self.parser.read_events():
            if event == "start":
                if self.root is None:
                    self.root = element.tag
                self.stack.append(element)
                continue
            self.stack.pop()
            if len(self.stack) == 1:
                self.windows += 1
            element.clear()
        # Drop every child of the open elements: ended ones are done with, and the open ones are
        # still held by the parser's builder and self.stack, which keeps building them.
        for element in self.stack:
            del element[:]
        if len(self.stack) > MAX_DEPTH:
            raise TreeError("the tree is nested deeper than %d elements (refused)" % MAX_DEPTH)

    def close(self):
        self.flush()
        try:
            self.parser.close()
            self._drain()
        except ElementTree.ParseError as err:
            raise TreeError("the tree is not XML: %s" % err)


def count_windows(pieces, enough_chars=ENOUGH_CHARS, max_chars=MAX_TREE_CHARS):
    """Scan `{"AT": "<xml>", ...}` from an iterator of byte pieces.

    TreeCount.found is False when there is no non-empty `AT` string. `complete` says whether
    the whole tree was read (False: it stopped once the answer was known; `windows` is then a
    lower bound). TreeError for anything that is not such an answer, or too large.
    """
    text = _Text(pieces)
    text.expect("{")
    if text.skip_ws() == "}":
        return TreeCount(False, None, 0, True, 0)
    while True:
        key = []
        text.string(key.append, MAX_KEY_CHARS)
        text.expect(":")
        if "".join(key) == "AT":
            if text.skip_ws() != '"':
                text.skip_value()
                return TreeCount(False, None, 0, True, 0)
            counter = _Counter(enough_chars, max_chars)
            empty = [True]

            def sink(part):
                if empty[0] and part.strip():
                    empty[0] = False
                counter.feed(part)
            try:
                text.string(sink, max_chars + enough_chars)
                if empty[0]:
                    return TreeCount(False, None, 0, True, counter.chars + counter.pending_chars)
                counter.close()
            except _Stop:
                return TreeCount(True, counter.root, counter.windows, False, counter.chars)
            return TreeCount(True, counter.root, counter.windows, True, counter.chars)
        text.skip_value()
        separator = text.skip_ws()
        text.pos += 1
        if separator == "}":
            return TreeCount(False, None, 0, True, 0)
        if separator != ",":
            raise TreeError("the answer is not JSON (after a value: %r)" % separator)
