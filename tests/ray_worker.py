"""A second Ray node joined to a test head: own temp dir and ports, killable by PID.

Its processes carry ``RAYLENS_RAY_HEAD=<its temp dir>`` (the same marker the head uses), so
``cluster_pids(node.temp_dir)`` finds exactly this node's raylet, agents and workers.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from raylens.stack.processes import ManagedProcess, StartError
from raylens.stack.ray_head import MARKER_VARIABLE, RAY_BINARY, RayHead, RayPorts, cluster_pids, short_temp_dir


@dataclass
class RayWorkerNode:
    head: RayHead
    temp_dir: Path
    process: ManagedProcess
    resource: str
    """A custom resource only this node offers: ``.options(resources={resource: 0.01})`` runs there."""
    node_id: str = ""

    def raylet_pid(self) -> int:
        for pid in cluster_pids(self.temp_dir, self.process.pid):
            try:
                if Path(psutil.Process(pid).cmdline()[0]).name == "raylet":
                    return pid
            except (psutil.Error, IndexError):
                continue
        raise AssertionError(f"no raylet among the processes of {self.temp_dir}")

    def kill(self) -> None:
        """SIGKILL the raylet (the node dies as if its machine vanished), then the rest of it."""
        os.kill(self.raylet_pid(), signal.SIGKILL)

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in cluster_pids(self.temp_dir, self.process.pid):
                with suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            time.sleep(1.0)
        self.process.stop(timeout=5)


def _start(head: RayHead, log_dir: Path, num_cpus: int, attempt: int) -> RayWorkerNode:
    ports = RayPorts.pick()
    temp_dir = short_temp_dir()
    resource = f"node_{secrets.token_hex(3)}"
    argv = [
        RAY_BINARY,
        "start",
        "--block",
        f"--address={head.address}",
        f"--temp-dir={temp_dir}",
        f"--metrics-export-port={ports.metrics_export}",
        f"--dashboard-agent-listen-port={ports.dashboard_agent_listen}",
        f"--dashboard-agent-grpc-port={ports.dashboard_agent_grpc}",
        f"--runtime-env-agent-port={ports.runtime_env_agent}",
        f"--node-manager-port={ports.node_manager}",
        f"--object-manager-port={ports.object_manager}",
        f"--num-cpus={num_cpus}",
        "--object-store-memory=80000000",
        "--disable-usage-stats",
        f"--resources={json.dumps({resource: 1})}",
    ]
    environment = {
        MARKER_VARIABLE: str(temp_dir),
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    process = ManagedProcess("ray-worker-node", argv, log_dir / f"ray-worker-{attempt}-{resource}.log", env=environment)
    node = RayWorkerNode(head, temp_dir, process, resource)
    process.start()
    deadline = time.monotonic() + 120
    while not node.node_id:
        exited = process.popen is not None and process.popen.poll() is not None
        if exited or time.monotonic() > deadline:
            node.stop()
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise StartError(f"worker node did not join\n{process.log_tail(40)}")
        rows = requests.get(f"{head.dashboard_url}/api/v0/nodes?detail=1", timeout=10).json()
        for row in rows["data"]["result"]["result"]:
            if row["state"] == "ALIVE" and resource in (row.get("resources_total") or {}):
                node.node_id = row["node_id"]
        time.sleep(0.5)
    return node


@contextmanager
def running_ray_worker(head: RayHead, log_dir: Path, num_cpus: int = 1, attempts: int = 3) -> Iterator[RayWorkerNode]:
    """A second node; started again (new ports, new temp dir) when `ray start` gives up, which it
    does after a fixed 30 s when a loaded machine keeps its raylet from registering in time."""
    for attempt in range(1, attempts + 1):
        try:
            node = _start(head, log_dir, num_cpus, attempt)
            break
        except StartError:
            if attempt == attempts:
                raise
    try:
        yield node
    finally:
        node.stop()
        shutil.rmtree(node.temp_dir, ignore_errors=True)
