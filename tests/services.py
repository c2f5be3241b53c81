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

from raylens.stack.ports import free_port
from raylens.stack.processes import ManagedProcess
from raylens.stack.prometheus import prepare_prometheus_dir, prometheus_argv
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
def running_exporter(tmp_path: Path, *args: str, ready: bool = True) -> Iterator[RunningExporter]:
    """Start ``python -m raylens exporter`` on a free loopback port with extra ``args``."""
    address = f"127.0.0.1:{free_port()}"
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
    tmp_path: Path, exporter_targets: Sequence[str], scrape_interval: str = "1s"
) -> Iterator[RunningPrometheus]:
    binary = find_tool("prometheus")
    assert binary, "prometheus is not installed; run scripts/setup.sh"
    work = tmp_path / "prometheus"
    config = prepare_prometheus_dir(bundle_root(), work, list(exporter_targets), scrape_interval)
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
