"""The state directory: the per-host lock (busy, wait with a deadline, no stale locks, keyed by
what it protects whatever the limit spelling or state directory) and the rotation of run
directories; and where the collection is found (clone or installed wheel)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from waa_runner import collection, state

REPO = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
sys.path.insert(0, {repo!r})
from pathlib import Path
from waa_runner import state
with state.target_lock(Path({root!r}), 'k', 'waa-run up'):
    print('held', flush=True)
    time.sleep(float(sys.argv[1]))
"""


@pytest.fixture(autouse=True)
def private_lock_dir(tmp_path, monkeypatch):
    """Each test its own lock directory (the real one, /run/lock/openadapt-waa, is the machine's)."""
    monkeypatch.setenv("WAA_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path / "locks"


def hold_lock(root: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(repo=str(REPO), root=str(root)), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_is_refused_with_the_holders_pid_and_start(tmp_path):
    holder = hold_lock(tmp_path, 30)
    try:
        started = time.monotonic()
        with pytest.raises(state.Busy) as busy:
            with state.target_lock(tmp_path, "k", "second"):
                pass
        assert time.monotonic() - started < 1
        message = str(busy.value)
        assert f"busy: pid {holder.pid} (waa-run up, started 20" in message and "--wait-lock SECONDS" in message
        assert "\n" not in message
        with state.target_lock(tmp_path, "other-key", "different targets"):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_wait_lock_waits_for_the_holder_then_runs(tmp_path):
    holder = hold_lock(tmp_path, 1.0)
    heard = []
    started = time.monotonic()
    with state.target_lock(tmp_path, "k", "second", wait_s=20, on_wait=heard.append):
        waited = time.monotonic() - started
    holder.wait()
    assert 0.3 < waited < 10
    assert len(heard) == 1 and f"pid {holder.pid}" in heard[0]


def test_wait_lock_gives_up_at_its_deadline(tmp_path):
    holder = hold_lock(tmp_path, 30)
    try:
        started = time.monotonic()
        with pytest.raises(state.Busy, match=r"waited 1s"):
            with state.target_lock(tmp_path, "k", "second", wait_s=1.0):
                pass
        assert 0.9 < time.monotonic() - started < 3
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = hold_lock(tmp_path, 30)
    holder.kill()
    holder.wait()
    with state.target_lock(tmp_path, "k", "after a crash", wait_s=0):
        pass


def test_unresolvable_inventories_are_keyed_by_inventory_and_limit(tmp_path):
    assert state.lock_key("/i.yml", None) == state.lock_key("/i.yml", "")
    assert len({state.lock_key("/i.yml", None), state.lock_key("/i.yml", "a"), state.lock_key("/j.yml", None)}) == 3
    cloud = tmp_path / "fleet.azure_rm.yml"
    cloud.write_text("plugin: azure.azcollection.azure_rm\n")
    assert state.resolve_targets(str(cloud), None) is None  # resolving would call Azure


def test_the_lock_is_keyed_by_the_host_container_not_by_the_limit_spelling(tmp_path):
    local = str(collection.local_inventory())
    assert state.resolve_targets(local, None) == ["local/winarena"]
    assert state.lock_key(local, None) == state.lock_key(local, "localhost") == state.lock_key(local, "waa") \
        == state.lock_key(local, "waa:&localhost")
    fleet = tmp_path / "fleet.yml"
    fleet.write_text("waa:\n  hosts:\n    a: {ansible_host: 127.0.1.5}\n    a-again: {ansible_host: 127.0.1.5}\n"
                     "    b: {ansible_host: 127.0.1.6, waa_container_name: other}\n"
                     "    me: {ansible_connection: local}\n")
    inventory = str(fleet)
    assert state.resolve_targets(inventory, "a") == state.resolve_targets(inventory, "a-again") == \
        ["ssh:127.0.1.5:22/winarena"]
    assert state.resolve_targets(inventory, "b") == ["ssh:127.0.1.6:22/other"]
    assert state.lock_key(inventory, "me") == state.lock_key(local, None)  # this machine, under any name
    # overlapping host sets share a part of their key, disjoint ones share none
    both = set(state.lock_key(inventory, "a,b").split("+"))
    assert set(state.lock_key(inventory, "a").split("+")) <= both
    assert not set(state.lock_key(inventory, "b").split("+")) & set(state.lock_key(inventory, "a").split("+"))


def test_overlapping_runs_collide_and_disjoint_runs_do_not(tmp_path):
    holder = hold_lock(tmp_path, 30)  # holds part "k"
    try:
        with pytest.raises(state.Busy, match=f"pid {holder.pid}"):
            with state.target_lock(tmp_path, "j+k", "overlapping"):
                pass
        with state.target_lock(tmp_path, "i+j", "disjoint"):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_runs_with_different_state_dirs_share_the_lock(tmp_path):
    holder = hold_lock(tmp_path / "state-a", 30)
    try:
        with pytest.raises(state.Busy, match=f"pid {holder.pid}"):
            with state.target_lock(tmp_path / "state-b", "k", "another state dir"):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_lock_dir_falls_back_when_run_lock_is_not_writable(tmp_path, monkeypatch):
    monkeypatch.setenv("WAA_LOCK_DIR", str(tmp_path / "chosen"))
    assert state.lock_dir() == tmp_path / "chosen"
    monkeypatch.delenv("WAA_LOCK_DIR")
    assert state.lock_dir().is_dir()


def test_the_owner_record_for_the_host_lock_names_this_process():
    owner = state.lock_owner("waa-run up", run_id="r1")
    assert owner["run_id"] == "r1" and owner["pid"] == os.getpid() and owner["what"] == "waa-run up"
    assert owner["boot_id"] and owner["pidns"].startswith("pid:")


def test_rotation_keeps_the_newest_and_only_touches_run_directories(tmp_path):
    runs = tmp_path / "runs"
    for index in range(5):
        (runs / f"2026010{index}T000000Z-up-abcdef").mkdir(parents=True)
    (runs / "my-notes").mkdir()
    removed = state.rotate(runs, keep=2)
    assert len(removed) == 3
    assert sorted(p.name for p in runs.iterdir()) == ["20260103T000000Z-up-abcdef", "20260104T000000Z-up-abcdef",
                                                      "my-notes"]
    fresh = state.new_run_dir(tmp_path, "probe", keep=2)
    assert state.RUN_DIR_NAME.match(fresh.name) and "-probe-" in fresh.name
    assert oct(fresh.stat().st_mode & 0o777) == "0o700"
    assert sorted(p.name for p in runs.iterdir() if state.RUN_DIR_NAME.match(p.name)) == [
        "20260104T000000Z-up-abcdef", fresh.name]


def test_state_dir_default_and_override(tmp_path, monkeypatch):
    monkeypatch.setenv("WAA_STATE_DIR", str(tmp_path / "env"))
    assert state.state_dir() == (tmp_path / "env").resolve()
    assert state.state_dir(tmp_path / "arg") == (tmp_path / "arg").resolve()
    monkeypatch.delenv("WAA_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state.default_state_dir() == tmp_path / "xdg" / "openadapt-waa"


def test_the_collection_is_found_in_a_clone():
    assert collection.collection_root() == REPO
    assert collection.collections_path() == str(REPO / "collections")
    assert collection.local_inventory() == REPO / "inventory" / "local.yml"


def test_the_collection_is_found_as_installed_by_the_wheel(tmp_path, monkeypatch):
    site = tmp_path / "site-packages"
    installed = site / "ansible_collections" / "openadapt" / "waa"
    (installed / "playbooks").mkdir(parents=True)
    (installed / "galaxy.yml").write_text("namespace: openadapt\n")
    package = site / "waa_runner"
    package.mkdir()
    monkeypatch.setattr(collection, "_PACKAGE_DIR", package)
    monkeypatch.setattr(sys, "path", [str(site)] + sys.path)
    collection.collection_root.cache_clear()
    try:
        assert collection.collection_root() == installed
        assert collection.collections_path() == str(site)
    finally:
        collection.collection_root.cache_clear()


def test_a_clone_without_its_collections_link_gets_one_in_the_state_dir(tmp_path, monkeypatch):
    clone = tmp_path / "clone"
    (clone / "playbooks").mkdir(parents=True)
    (clone / "galaxy.yml").write_text("namespace: openadapt\n")
    monkeypatch.setattr(collection, "_PACKAGE_DIR", clone / "waa_runner")
    collection.collection_root.cache_clear()
    try:
        with pytest.raises(collection.CollectionNotFound):
            collection.collections_path()
        path = collection.collections_path(fallback_dir=tmp_path / "state")
        link = Path(path) / "ansible_collections" / "openadapt" / "waa"
        assert link.is_symlink() and link.resolve() == clone and (link / "galaxy.yml").is_file()
        assert collection.collections_path(fallback_dir=tmp_path / "state") == path  # idempotent
    finally:
        collection.collection_root.cache_clear()


def test_exit_codes_load_the_collections_table_by_path():
    from waa_runner import exit_codes

    assert exit_codes.EXIT_CODES[64].name == "usage" and exit_codes.name(12) == "busy"
    assert os.path.samefile(exit_codes._table.__file__,
                            REPO / "plugins" / "module_utils" / "waa_exit_codes.py")


def test_host_lock_vars_for_the_playbooks(tmp_path):
    from waa_runner import collection

    local = str(collection.local_inventory())
    found = state.host_lock_vars(local, None, "waa-run up", wait_s=5, timeout=600)
    assert found["waa_lock_owner"]["what"] == "waa-run up" and found["waa_lock_owner"]["pid"] == os.getpid()
    assert found["waa_lock_wait"] == 5.0 and found["waa_lock_ttl"] == 900 and found["waa_lock_takeover_own"] is True
    cloud = tmp_path / "x.azure_rm.yml"
    cloud.write_text("plugin: azure.azcollection.azure_rm\n")
    # the controller lock does not cover a cloud inventory's hosts: another run's lease is never broken
    assert state.host_lock_vars(str(cloud), None, "waa-run up")["waa_lock_takeover_own"] is False
