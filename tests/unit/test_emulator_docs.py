"""docs/emulator.md stays in step with the emulator's code: its endpoint table lists exactly the
routes the guest API registers, its QMP/monitor table exactly the commands, its settings and
faults tables exactly the WAA_EMU_* variables and fault names; every row says "same as the real
image" or "differs: how"."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from waa_runner.emulator.waa_emu import config, monitor, qmp
from waa_runner.emulator.waa_emu.guest_routes import ROUTES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "emulator.md").read_text()
EMU_DIR = Path(config.__file__).parent


def rows(first_cell: str) -> list[list[str]]:
    """Table rows whose first cell matches the pattern: the cells, split at unescaped pipes."""
    found = []
    for line in DOC.splitlines():
        if not line.startswith("| "):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if cells and re.fullmatch(first_cell, cells[0]):
            found.append(cells)
    return found


def test_endpoint_table_lists_every_route_and_nothing_else():
    documented = [tuple(re.fullmatch(r"`(GET|POST) (/\S+)`", r[0]).groups()) for r in rows(r"`(GET|POST) /\S+`")]
    registered = [(method, route.path) for route in ROUTES for method in route.methods]
    assert len(documented) == len(set(documented)), "a route is documented twice"
    assert set(documented) == set(registered)


@pytest.mark.parametrize("kind, commands", [("QMP", qmp.COMMANDS), ("monitor", monitor.COMMANDS)])
def test_qemu_table_lists_every_command(kind, commands):
    documented = [re.fullmatch(rf"{kind} `([^`]+)`", r[0]).group(1) for r in rows(rf"{kind} `[^`]+`")]
    assert sorted(documented) == sorted(commands)


def test_every_behaviour_row_says_how_it_compares():
    for row in rows(r"`(GET|POST) /\S+`") + rows(r"(QMP|monitor) `[^`]+`"):
        assert row[-1] == "same as the real image" or row[-1].startswith("differs: "), row


def test_settings_and_faults_tables_match_the_code():
    in_code = set()
    for path in EMU_DIR.glob("*.py"):
        in_code |= set(re.findall(r'"(WAA_EMU_[A-Z0-9_]+)"', path.read_text()))
    documented = {re.fullmatch(r"`(WAA_EMU_[A-Z0-9_]+)`", r[0]).group(1) for r in rows(r"`WAA_EMU_[A-Z0-9_]+`")}
    assert documented == in_code
    faults = [re.fullmatch(r"`(\w+)`", r[0]).group(1) for r in rows(r"`(%s)`" % "|".join(config.FAULTS))]
    assert sorted(faults) == sorted(config.FAULTS)
