"""Real services for tests: the exporter and Prometheus as child processes, stopped by PID.

Both reuse the code `raylens up` uses (``ManagedProcess``, ``prepare_prometheus_dir``) so the tests
exercise the same start-up path users run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from raylens.config import AlertsConfig
from raylens.cost.budgets import Budget
from raylens.stack.alertmanager import alertmanager_argv, prepare_alertmanager_dir
from raylens.stack.ports import free_port
from raylens.stack.processes import ManagedProcess
from raylens.stack.prometheus import prepare_prometheus_dir, prometheus_argv
from raylens.stack.sink import read_notifications
from raylens.stack.tools import bundle_root, find_tool

REPO = Path(__file__).resolve().parents[1]


@dataclass
class RunningExporter:
    process: ManagedProcess
    address: str

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def scrape(self, **kwargs: Any) -> str:
        response = requests.get(f"{self.url}/metrics", timeout=10, **kwargs)
        response.raise_for_status()
        return response.text


@contextmanager
def running_exporter(
    tmp_path: Path, *args: str, ready: bool = True, address: str | None = None
) -> Iterator[RunningExporter]:
    """Start ``python -m raylens exporter`` on ``address`` (default: a free loopback port) with extra ``args``."""
    address = address or f"127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "raylens", "exporter", f"--web.listen-address={address}", *args]
    process = ManagedProcess(
        "exporter",
        argv,
        tmp_path / f"exporter-{address.split(':')[1]}.log",
        f"http://{address}/healthz" if ready else None,
    )
    process.start()
    try:
        process.wait_ready(timeout=20)
        yield RunningExporter(process, address)
    finally:
        process.stop()


@dataclass
class RunningPrometheus:
    process: ManagedProcess
    url: str
    config_path: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll until ``expr`` returns at least one series; fail with the last answer otherwise."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.25)
        raise AssertionError(f"no result for {expr!r} after {timeout}s\n{self.process.log_tail()}")


@contextmanager
def running_prometheus(
    tmp_path: Path,
    exporter_targets: Sequence[str],
    scrape_interval: str = "1s",
    alertmanager_targets: Sequence[str] | None = None,
    alerts_config: AlertsConfig | None = None,
    budgets: Sequence[Budget] | None = None,
    blackbox_address: str | None = None,
) -> Iterator[RunningPrometheus]:
    """Prometheus with the bundle's rules; ``alerts_config`` and ``budgets`` render the alerting rules
    (short windows, the budget thresholds of the exporter's budgets file) as ``raylens up`` does."""
    binary = find_tool("prometheus")
    assert binary, "prometheus is not installed; run scripts/setup.sh"
    work = tmp_path / "prometheus"
    config = prepare_prometheus_dir(
        bundle_root(),
        work,
        list(exporter_targets),
        scrape_interval,
        list(alertmanager_targets or []),
        alerts_config,
        budgets=budgets,
        blackbox_address=blackbox_address,
    )
    listen = f"127.0.0.1:{free_port()}"
    process = ManagedProcess(
        "prometheus",
        prometheus_argv(binary, config, work / "data", listen),
        work / "prometheus.log",
        f"http://{listen}/-/ready",
    )
    process.start()
    try:
        process.wait_ready(timeout=30)
        yield RunningPrometheus(process, f"http://{listen}", config)
    finally:
        process.stop()


@dataclass
class RunningSink:
    process: ManagedProcess
    address: str
    log_path: Path

    def notifications(self) -> list[dict[str, Any]]:
        return read_notifications(self.log_path)


@contextmanager
def running_sink(tmp_path: Path) -> Iterator[RunningSink]:
    """The local webhook sink `raylens up` uses, writing notifications to a JSON-lines file."""
    address = f"127.0.0.1:{free_port()}"
    log_path = tmp_path / "notifications.jsonl"
    argv = [sys.executable, "-m", "raylens.stack.sink", f"--listen={address}", f"--log={log_path}"]
    process = ManagedProcess("sink", argv, tmp_path / "sink.log", f"http://{address}/healthz")
    process.start()
    try:
        process.wait_ready(timeout=20)
        yield RunningSink(process, address, log_path)
    finally:
        process.stop()


@dataclass
class RunningAlertmanager:
    process: ManagedProcess
    address: str

    def alerts(self) -> list[dict[str, Any]]:
        return requests.get(f"http://{self.address}/api/v2/alerts", timeout=10).json()


@contextmanager
def running_alertmanager(
    tmp_path: Path,
    sink_address: str,
    group_wait: str = "1s",
    group_interval: str = "2s",
    remediation: tuple[str, Path] | None = None,
) -> Iterator[RunningAlertmanager]:
    """A real Alertmanager with the shipped routing (timers shortened), webhooks to ``sink_address``
    (the remediation receiver to ``raylens remediate`` at ``remediation``: URL, bearer token file)."""
    binary = find_tool("prometheus-alertmanager")
    assert binary, "prometheus-alertmanager is not installed; run scripts/setup.sh"
    work = tmp_path / "alertmanager"
    config = prepare_alertmanager_dir(bundle_root(), work, sink_address, group_wait, group_interval, remediation)
    address = f"127.0.0.1:{free_port()}"
    process = ManagedProcess(
        "alertmanager",
        alertmanager_argv(binary, config, work / "data", address),
        work / "alertmanager.log",
        f"http://{address}/-/ready",
    )
    process.start()
    try:
        process.wait_ready(timeout=30)
        yield RunningAlertmanager(process, address)
    finally:
        process.stop()


@contextmanager
def running_blackbox(tmp_path: Path) -> Iterator[str]:
    """Debian's blackbox exporter with the shipped modules on a free loopback port; yields its address."""
    binary = find_tool("prometheus-blackbox-exporter")
    assert binary, "prometheus-blackbox-exporter is not installed; run scripts/setup.sh"
    address = f"127.0.0.1:{free_port()}"
    argv = [
        binary,
        f"--config.file={bundle_root() / 'provisioning' / 'blackbox' / 'blackbox.yml'}",
        f"--web.listen-address={address}",
    ]
    process = ManagedProcess("blackbox", argv, tmp_path / "blackbox.log", f"http://{address}/-/healthy")
    process.start()
    try:
        process.wait_ready(timeout=30)
        yield address
    finally:
        process.stop()


def write_dollar_per_second_pricing(path: Path) -> None:
    """A pricing file with one node type, `e2e-node`, at $1/s, so spend moves in seconds in e2e tests."""
    instance_type = {
        "instance_type": "e2e-node",
        "cloud": "onprem",
        "vcpus": 2,
        "memory_gib": 4,
        "gpus": 0,
        "usd_per_hour": 3600.0,
        "source": "test figure",
        "as_of": "2026-01-01",
    }
    path.write_text(yaml.safe_dump({"format_version": 1, "instance_types": [instance_type]}))
