"""`waa-run watch --metrics-port PORT`: the watched hosts in the Prometheus format, on 127.0.0.1.

Series (one per host, label `host`; read from the watcher's latest cycle at scrape time):

    waa_host_ready                  1 when the host's latest verdict is ready, else 0
    waa_host_exit_code              the verdict's exit code (docs/exit-codes.md)
    waa_host_state{state}           1 for the host's current state (ready, not_ready, unreachable, stale, ...)
    waa_host_failed_layer{layer}    1 for the first unhealthy layer (none when ready)
    waa_host_state_seconds          seconds the host has been in its current state
    waa_host_probe_duration_seconds the agent's last probe
    waa_host_verdict_age_seconds    age of the latest verdict
    waa_host_restarts_total         restarts by the agent's self-healing (counter)
    waa_watch_cycles_total, waa_watch_cycle_cpu_seconds, waa_watch_cycle_seconds
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from waa_runner.watch import Cycle, Watcher


class WatchCollector(Collector):
    def __init__(self, watcher: "Watcher"):
        self.watcher = watcher
        self.last_cycle: "Cycle | None" = None

    def collect(self) -> Iterator[Metric]:
        views = dict(self.watcher.views)
        now = time.time()
        ready = GaugeMetricFamily("waa_host_ready", "1 when the host's latest verdict is ready", labels=["host"])
        code = GaugeMetricFamily("waa_host_exit_code", "exit code of the host's latest verdict", labels=["host"])
        state = GaugeMetricFamily("waa_host_state", "1 for the host's current state", labels=["host", "state"])
        layer = GaugeMetricFamily("waa_host_failed_layer", "1 for the host's first unhealthy layer",
                                  labels=["host", "layer"])
        in_state = GaugeMetricFamily("waa_host_state_seconds", "seconds in the current state", labels=["host"])
        probe = GaugeMetricFamily("waa_host_probe_duration_seconds", "duration of the agent's last probe",
                                  labels=["host"])
        age = GaugeMetricFamily("waa_host_verdict_age_seconds", "age of the latest verdict", labels=["host"])
        restarts = CounterMetricFamily("waa_host_restarts", "container restarts by the agent's self-healing",
                                       labels=["host"])
        for name, view in sorted(views.items()):
            ready.add_metric([name], 1.0 if view.ready else 0.0)
            code.add_metric([name], float(view.exit_code))
            state.add_metric([name, view.state], 1.0)
            if view.layer:
                layer.add_metric([name, view.layer], 1.0)
            in_state.add_metric([name], max(0.0, now - view.since))
            if view.probe_duration_s is not None:
                probe.add_metric([name], float(view.probe_duration_s))
            if view.age_s is not None:
                age.add_metric([name], float(view.age_s))
            restarts.add_metric([name], float(view.restarts_total))
        yield from (ready, code, state, layer, in_state, probe, age, restarts)
        cycles = CounterMetricFamily("waa_watch_cycles", "collection cycles of waa-run watch")
        cycles.add_metric([], float(self.watcher.cycle_number))
        yield cycles
        if self.last_cycle is not None:
            cpu = GaugeMetricFamily("waa_watch_cycle_cpu_seconds",
                                    "controller CPU of the last cycle (watcher, ssh clients and masters)")
            cpu.add_metric([], self.last_cycle.cpu_s)
            wall = GaugeMetricFamily("waa_watch_cycle_seconds", "wall time of the last cycle")
            wall.add_metric([], self.last_cycle.wall_s)
            yield cpu
            yield wall


class MetricsServer:
    def __init__(self, server: Any, thread: Any, collector: WatchCollector):
        self._server = server
        self._thread = thread
        self.collector = collector

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def last_cycle(self) -> "Cycle | None":
        return self.collector.last_cycle

    @last_cycle.setter
    def last_cycle(self, value: "Cycle | None") -> None:
        self.collector.last_cycle = value

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve(watcher: "Watcher", port: int, address: str = "127.0.0.1") -> MetricsServer:
    """Serve the watcher's metrics on address:port (0: a free port) in a daemon thread."""
    if not (address.startswith("127.") or address in ("::1", "localhost")):
        raise ValueError(f"the metrics listen on loopback only, not {address!r}")
    registry = CollectorRegistry(auto_describe=False)
    collector = WatchCollector(watcher)
    registry.register(collector)
    server, thread = start_http_server(port, addr=address, registry=registry)
    return MetricsServer(server, thread, collector)
