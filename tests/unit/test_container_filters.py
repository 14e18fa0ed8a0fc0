"""The container's description is derived by the collection's filters and tests (plugins/filter,
plugins/test): what a user would check is that bad values are refused by name and that the argv
and port bindings come out exactly as the real container needs them."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.openadapt.waa.plugins.filter import waa as filters
from ansible_collections.openadapt.waa.plugins.test import waa as tests


def test_entry_args_are_an_argv_list_with_lowercase_booleans():
    argv = filters.waa_entry_args({"prepare_image": False, "start_client": False, "worker_id": 3, "model": "gpt-4o"})
    assert argv == ["--prepare-image", "false", "--start-client", "false", "--worker-id", "3", "--model", "gpt-4o"]


def test_unknown_entry_flag_is_refused_by_name():
    with pytest.raises(AnsibleFilterError, match=r"unknown entry.sh flag 'prepare'.*allowed: prepare_image"):
        filters.waa_entry_args({"prepare": True})


@pytest.mark.parametrize("value", ["a b", "x;rm -rf /", "$(id)", "`id`", ""])
def test_entry_flag_values_that_a_shell_could_read_are_refused(value):
    with pytest.raises(AnsibleFilterError, match="bad value"):
        filters.waa_entry_args({"agent": value})


def test_published_ports_bind_the_given_address_in_container_order():
    ports = {"server": 5001, "novnc": 8006, "rdp": 3389, "qmp": 7200, "monitor": 7100}
    assert filters.waa_published_ports(ports, "127.0.0.1") == [
        "127.0.0.1:8006:8006", "127.0.0.1:5001:5000", "127.0.0.1:3389:3389", "127.0.0.1:7200:7200",
        "127.0.0.1:7100:7100"]


def test_unknown_port_name_is_refused():
    with pytest.raises(AnsibleFilterError, match="unknown port name.*vnc"):
        filters.waa_published_ports({"vnc": 8006}, "127.0.0.1")


def test_container_env_values_are_strings_and_extra_wins():
    env = filters.waa_container_env({"RAM_SIZE": "8G", "CPU_CORES": 4}, {"CPU_CORES": 2, "WAA_EMU_BOOT_S": 0.5})
    assert env == {"RAM_SIZE": "8G", "CPU_CORES": "2", "WAA_EMU_BOOT_S": "0.5"}


@pytest.mark.parametrize("value,ok", [("8G", True), ("512M", True), ("1T", True), ("8GB", False), ("8", False),
                                      ("0G", False), ("-1G", False), (8, False)])
def test_size(value, ok):
    assert tests.waa_size(value) is ok


@pytest.mark.parametrize("value,ok", [
    ("windowsarena/winarena:latest", True), ("myacr.azurecr.io/windowsarena/winarena:latest", True),
    ("localhost:5000/waa-emulator:latest", True), ("waa-emulator:latest", True),
    ("windowsarena/winarena@sha256:" + "a" * 64, True), ("UPPER/case", False), ("a b", False), ("", False)])
def test_image_ref(value, ok):
    assert tests.waa_image_ref(value) is ok


@pytest.mark.parametrize("value,ok", [("winarena", True), ("waa-1.x_y", True), ("bad name", False), ("-x", False)])
def test_container_name(value, ok):
    assert tests.waa_container_name(value) is ok


def test_loopback_and_address():
    assert tests.waa_loopback("127.0.0.1") and tests.waa_loopback("127.3.2.1") and tests.waa_loopback("::1")
    assert not tests.waa_loopback("0.0.0.0") and not tests.waa_loopback("nonsense")
    assert tests.waa_ip_address("0.0.0.0") and not tests.waa_ip_address("host.example")
