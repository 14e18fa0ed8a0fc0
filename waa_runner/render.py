"""How results are shown: the one-line-per-host summary, `waa-run status`'s table.

The `--json` report (RunResult.to_dict) and these lines are made from the same HostResult data,
so they always agree.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from waa_runner import exit_codes as codes
from waa_runner.model import first_line

if TYPE_CHECKING:
    from waa_runner.model import HostResult, RunResult

_AZURE_RUNNING = ("running", "starting")


def _price(value: Any) -> float | None:
    try:
        return None if value in (None, "", "None") else float(value)
    except (TypeError, ValueError):
        return None


def azure_line(self: HostResult) -> str:
    """'azure: running Standard_D8ds_v5 $0.452/h' for an Azure host, else ''."""
    if not self.azure:
        return ""
    price = _price(self.azure.get("price_per_hour"))
    cost = f"${price:.3f}/h" if price is not None else "price unknown"
    return f"azure: {self.azure.get('powerstate') or '?'} {self.azure.get('size') or '?'} {cost}"

def host_line(self: HostResult) -> str:
    """One line: name, status, exit code, failing layer, message and hint (and the Azure VM's state)."""
    line = f"{self.name:<16} {self.status:<11} {self.exit_code:>3}"
    azure = f"  [{self.azure_line()}]" if self.azure else ""
    if self.ok:
        return f"{line}  {self.message or 'ok'} ({self.duration_s:.1f}s, {self.changed} changed){azure}"
    layer = self.failed_layer
    message = self.message
    if layer and message.startswith(f"{layer}: "):
        message = message[len(layer) + 2:]
    where = f"{layer}: " if layer else ""
    return f"{line}  {where}{message}  hint: {self.hint or '-'}{azure}"


def status_lines(self: RunResult) -> list[str]:
    """`waa-run status`: one row per host (Azure power state, size, price while running, readiness)
    and what the running Azure VMs cost per hour together."""
    rows = [("HOST", "POWER", "SIZE", "$/H", "READINESS")]
    running_cost = 0.0
    for host in sorted(self.hosts.values(), key=lambda h: h.name):
        azure = host.azure or {}
        price = _price(azure.get("price_per_hour"))
        power = str(azure.get("powerstate") or "-") if azure else "-"
        if azure and power in _AZURE_RUNNING and price is not None:
            running_cost += price
        readiness = host.status if host.ok else f"{host.status} ({host.exit_code}): {first_line(host.message)}"
        rows.append((host.name, power, str(azure.get("size") or "-"), f"{price:.3f}" if price is not None else "-",
                     readiness))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [self.summary] + ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
                              for row in rows]
    if any(host.azure for host in self.hosts.values()):
        lines.append(f"running Azure VMs cost ${running_cost:.3f}/h (list prices, playbooks/vars/azure_prices.yml)")
    if not self.ok:
        lines += [host.summary_line() for host in sorted(self.hosts.values(), key=lambda h: h.name) if not host.ok]
        row = codes.describe(self.exit_code)
        lines.append(f"exit {self.exit_code} ({row.name}): {row.summary}")
    return lines

def summary_lines(self: RunResult) -> list[str]:
    lines = [self.summary]
    lines += [host.summary_line() for host in sorted(self.hosts.values(), key=lambda h: (h.ok, h.name))]
    if not self.ok:
        row = codes.describe(self.exit_code)
        lines.append(f"exit {self.exit_code} ({row.name}): {row.summary}")
        if self.artifact_dir:
            lines.append(f"run artifacts: {self.artifact_dir}")
    return lines
