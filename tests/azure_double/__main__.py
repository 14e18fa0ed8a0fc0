"""Run the Azure double by hand:  python -m tests.azure_double [--demo] [--dir DIR]

Prints the environment to export in another shell, then serves until Ctrl-C. With --demo it
holds a few WAA VMs (pools a and b, some deallocated) in resource group openadapt-waa, so that
`ansible-inventory -i inventory/azure_rm.yml --graph` shows something at once.
"""
from __future__ import annotations

import argparse
import shlex
import tempfile
import threading
from pathlib import Path

from .server import AzureDouble


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.azure_double")
    parser.add_argument("--demo", action="store_true", help="seed a few WAA VMs")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the test CA (default: a temp dir)")
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="azure-double-"))
    double = AzureDouble(workdir).start()
    double.state.page_size = args.page_size
    if args.demo:
        waa = {"openadapt-role": "waa"}
        double.state.add_vm("openadapt-waa", "waa-a-01", tags={**waa, "openadapt-pool": "a"})
        double.state.add_vm("openadapt-waa", "waa-a-02", tags={**waa, "openadapt-pool": "a"}, power="deallocated")
        double.state.add_vm("openadapt-waa", "waa-b-01", tags={**waa, "openadapt-pool": "b"}, power="deallocated")
    print("# Azure double on %s; export these in the shell that runs ansible:" % double.proxy_url)
    for key, value in double.env().items():
        print(f"export {key}={shlex.quote(value)}")
    print("export ANSIBLE_COLLECTIONS_PATH=%s" % shlex.quote(str(Path(__file__).resolve().parents[2] / "collections")))
    try:
        threading.Event().wait()  # serve until Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        double.stop()


if __name__ == "__main__":
    main()
