"""The accessibility tree counted as it streams (waa_health_a11y): the JSON string decoded piece by
piece wherever the pieces split it, the early stop once the answer is known, the caps, and DTDs
refused - in bounded memory."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_a11y import TreeError, count_windows

REPO = Path(__file__).resolve().parents[2]


def pieces(data: bytes, size: int):
    return (data[i:i + size] for i in range(0, len(data), size))


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64, 65536])
def test_a_tree_split_anywhere_is_counted_the_same(size):
    tree = '<desktop><w name="Taskbar &quot;q&quot; \\ é \U0001F600"/><w><child/></w><w/></desktop>'
    for ascii_only in (True, False):
        body = json.dumps({"status": "ok", "extra": [1, {"x": "}]"}], "AT": tree}, ensure_ascii=ascii_only).encode()
        count = count_windows(pieces(body, size))
        assert (count.found, count.root, count.windows, count.complete) == (True, "desktop", 3, True)


@pytest.mark.parametrize("doc,found,windows", [
    ({"AT": ""}, False, 0), ({"AT": "   "}, False, 0), ({"AT": None}, False, 0), ({}, False, 0),
    ({"other": 1}, False, 0), ({"AT": "<desktop/>"}, True, 0), ({"AT": 5}, False, 0),
])
def test_empty_answers(doc, found, windows):
    count = count_windows([json.dumps(doc).encode()])
    assert (count.found, count.windows) == (found, windows)


@pytest.mark.parametrize("body,word", [
    (b'{"AT": "<desk"}', "not XML"), (b'{"AT": "<a></b>"}', "not XML"), (b"[1]", "not the JSON object"),
    (b'{"AT": "<a/>', "ends inside a JSON string"), (b'{"AT": "\\q<a/>"}', "bad escape"),
    (json.dumps({"AT": '<!DOCTYPE d [<!ENTITY a "<w/>">]><d>&a;</d>'}).encode(), "DTD"),
])
def test_broken_answers_are_refused_by_name(body, word):
    with pytest.raises(TreeError, match=word):
        count_windows(pieces(body, 3))


def test_it_stops_once_the_answer_is_known_and_refuses_past_the_cap():
    many = json.dumps({"AT": "<desktop>" + "<a/>" * 1_000_000 + "</desktop>"}).encode()
    count = count_windows(pieces(many, 65536), enough_chars=100_000)
    assert count.found and count.windows >= 1 and not count.complete and count.chars < 200_000
    no_window = json.dumps({"AT": "<desktop>" + "x" * 300_000 + "</desktop>"}).encode()
    with pytest.raises(TreeError, match="without a complete window"):
        count_windows(pieces(no_window, 65536), max_chars=100_000)


def test_millions_of_elements_cost_little_memory():
    """Measured in a child, so the parent's own heap does not count: 2 million generated elements."""
    code = (
        "import resource, sys; sys.path.insert(0, 'collections');"
        "from ansible_collections.openadapt.waa.plugins.module_utils.waa_health_a11y import count_windows;"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "gen = [b'{\"AT\": \"<desktop>'] + [b'<a/>' * 16384] * 120 + [b'</desktop>\"}'];"
        "c = count_windows(iter(gen), enough_chars=64 << 20, max_chars=64 << 20);"
        "print(c.windows, int(c.complete), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    windows, complete, grown_mb = map(int, out.stdout.split())
    assert (windows, complete) == (120 * 16384, 1) and grown_mb < 20, (windows, grown_mb)
