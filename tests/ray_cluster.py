"""Tests start Ray heads through the same code `raylens up` uses; see raylens.stack.ray_head.

``start_worker_node`` adds a second Ray node on this machine (its own temp dir, ports outside Ray's
worker range and a marker of its own), and ``kill_node`` SIGKILLs all of its processes at once, as
if its machine died, without touching the head.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from raylens.stack.processes import ManagedProcess
from raylens.stack.ray_head import (  # noqa: F401 - re-exported for the tests
    DEFAULT_OBJECT_STORE_BYTES,
    MARKER_VARIABLE,
    RAY_BINARY,
    RayHead,
    RayPorts,
    cluster_pids,
    running_ray_head,
    short_temp_dir,
)

# Exporters under test read every Ray source each second (the defaults are 5 to 60 s), so what a test
# does to Ray shows in a scrape within seconds and cost moves in small steps.
FAST_RAY_SOURCES = {
    source: {"interval_seconds": 1.0}
    for source in ("version", "nodes", "node_details", "resource_usage", "jobs", "actors", "tasks")
}


def start_worker_node(
    head: RayHead, temp_dir: Path, log_dir: Path, labels: dict[str, str], num_cpus: int = 1
) -> ManagedProcess:
    ports = RayPorts.pick()
    argv = [
        RAY_BINARY,
        "start",
        f"--address={head.address}",
        "--block",
        f"--temp-dir={temp_dir}",
        f"--num-cpus={num_cpus}",
        f"--object-store-memory={head.object_store_bytes}",
        f"--node-manager-port={ports.node_manager}",
        f"--object-manager-port={ports.object_manager}",
        f"--metrics-export-port={ports.metrics_export}",
        f"--dashboard-agent-listen-port={ports.dashboard_agent_listen}",
        f"--dashboard-agent-grpc-port={ports.dashboard_agent_grpc}",
        f"--runtime-env-agent-port={ports.runtime_env_agent}",
        "--disable-usage-stats",
        "--labels=" + ",".join(f"{key}={value}" for key, value in labels.items()),
    ]
    environment = {**head.environment(), MARKER_VARIABLE: str(temp_dir)}
    worker = ManagedProcess("ray-worker", argv, log_dir / f"ray-worker-{ports.node_manager}.log", env=environment)
    worker.start()
    return worker


def kill_node(temp_dir: Path, root_pid: int | None) -> None:
    """SIGKILL every process of the node at once, as if its machine died."""
    for pid in cluster_pids(temp_dir, root_pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
