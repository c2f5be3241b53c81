"""A dedicated local Ray head (for `raylens up` and tests): own temp dir and ports, stopped by PID.

``ray stop`` matches Ray processes by name on the whole host and would stop other people's clusters,
so every head started here is told apart by its ``--temp-dir`` (on Ray's daemons' command lines) and
by a marker environment variable that every process it spawns inherits (workers rename themselves
``ray::IDLE`` and lose the temp dir from their command line, but keep the environment).

Usage::

    with running_ray_head(tmp_path) as head:
        client = JobSubmissionClient(head.dashboard_url)
        ...
        head.kill()      # SIGKILL the whole cluster, like a crashed head
        head.start()     # same ports and temp dir, a new session

Ports are picked free on loopback and outside 10002-19999, the range Ray gives to workers.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from raylens.stack.ports import free_port
from raylens.stack.processes import ManagedProcess, StartError

WORKER_PORT_RANGE = range(10002, 20000)
MARKER_VARIABLE = "RAYLENS_RAY_HEAD"
DEFAULT_OBJECT_STORE_BYTES = 100_000_000
RAY_BINARY = str(Path(sys.executable).with_name("ray"))


@dataclass(frozen=True)
class RayPorts:
    gcs: int
    dashboard: int
    metrics_export: int
    client_server: int
    dashboard_agent_listen: int
    dashboard_agent_grpc: int
    runtime_env_agent: int
    node_manager: int
    object_manager: int
    autoscaler_metrics: int
    dashboard_metrics: int

    @classmethod
    def pick(cls) -> RayPorts:
        taken: set[int] = set()
        chosen = []
        for _ in cls.__dataclass_fields__:
            port = free_port(taken=taken)
            while port in WORKER_PORT_RANGE:
                taken.add(port)
                port = free_port(taken=taken)
            taken.add(port)
            chosen.append(port)
        return cls(*chosen)


@dataclass
class RayHead:
    """One single-node Ray cluster. ``start()`` and ``stop()`` may be called repeatedly."""

    temp_dir: Path
    log_dir: Path
    ports: RayPorts = field(default_factory=RayPorts.pick)
    num_cpus: int = 2
    object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES
    resources: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    process: ManagedProcess | None = field(default=None, repr=False)
    starts: int = 0

    @property
    def address(self) -> str:
        """GCS address (``ray.init(address=...)``, ``raylens exporter --ray.address``)."""
        return f"127.0.0.1:{self.ports.gcs}"

    @property
    def dashboard_url(self) -> str:
        """Dashboard HTTP server: Job API, State API (``JobSubmissionClient(head.dashboard_url)``)."""
        return f"http://127.0.0.1:{self.ports.dashboard}"

    @property
    def metrics_export_port(self) -> int:
        return self.ports.metrics_export

    @property
    def metrics_address(self) -> str:
        """Ray's own per-node metrics endpoint, on loopback (it listens on 0.0.0.0)."""
        return f"127.0.0.1:{self.ports.metrics_export}"

    def argv(self) -> list[str]:
        import json

        argv = [
            RAY_BINARY,
            "start",
            "--head",
            "--block",
            f"--temp-dir={self.temp_dir}",
            f"--port={self.ports.gcs}",
            f"--dashboard-port={self.ports.dashboard}",
            "--dashboard-host=127.0.0.1",
            f"--metrics-export-port={self.ports.metrics_export}",
            f"--ray-client-server-port={self.ports.client_server}",
            f"--dashboard-agent-listen-port={self.ports.dashboard_agent_listen}",
            f"--dashboard-agent-grpc-port={self.ports.dashboard_agent_grpc}",
            f"--runtime-env-agent-port={self.ports.runtime_env_agent}",
            f"--node-manager-port={self.ports.node_manager}",
            f"--object-manager-port={self.ports.object_manager}",
            f"--num-cpus={self.num_cpus}",
            f"--object-store-memory={self.object_store_bytes}",
            "--disable-usage-stats",
            "--include-dashboard=true",
        ]
        if self.resources:
            argv.append(f"--resources={json.dumps(self.resources)}")
        if self.labels:
            argv.append("--labels=" + ",".join(f"{key}={value}" for key, value in self.labels.items()))
        return argv

    def environment(self) -> dict[str, str]:
        return {
            MARKER_VARIABLE: str(self.temp_dir),
            "AUTOSCALER_METRIC_PORT": str(self.ports.autoscaler_metrics),
            "DASHBOARD_METRIC_PORT": str(self.ports.dashboard_metrics),
            # Everything started inside this cluster (job drivers, Train's helpers) must find this
            # cluster, not one from the user's shell or another cluster on the same host.
            "RAY_ADDRESS": self.address,
            "RAY_USAGE_STATS_ENABLED": "0",
            # Job entrypoints such as `python script.py` must find this interpreter, which has Ray.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        }

    def start(self, timeout: float = 90.0) -> None:
        self.starts += 1
        self.process = ManagedProcess(
            "ray-head",
            self.argv(),
            self.log_dir / f"ray-head-{self.starts}.log",
            env=self.environment(),
        )
        self.process.start()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until the dashboard answers the State and Job APIs and the head node is ALIVE."""
        deadline = time.monotonic() + timeout
        last = "not started"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.popen is not None:
                code = self.process.popen.poll()
                if code is not None:
                    raise StartError(f"ray start exited with {code}\n{self.process.log_tail(40)}")
            try:
                nodes = requests.get(f"{self.dashboard_url}/api/v0/nodes", timeout=5).json()
                jobs = requests.get(f"{self.dashboard_url}/api/jobs/", timeout=5)
                metrics = requests.get(f"http://{self.metrics_address}/metrics", timeout=5)
                alive = [row for row in nodes["data"]["result"]["result"] if row["state"] == "ALIVE"]
                if alive and jobs.status_code == 200 and metrics.status_code == 200:
                    return
                last = f"nodes={len(alive)} jobs={jobs.status_code} metrics={metrics.status_code}"
            except (requests.RequestException, ValueError, KeyError, TypeError) as error:
                last = f"{type(error).__name__}: {error}"
            time.sleep(0.5)
        tail = self.process.log_tail(40) if self.process else ""
        raise StartError(f"Ray head not ready after {timeout:.0f}s ({last})\n{tail}")

    def pids(self) -> list[int]:
        """Every process of this cluster (see ``cluster_pids``)."""
        return cluster_pids(self.temp_dir, self.process.pid if self.process is not None else None)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to ``ray start --block`` (it tears its cluster down), then SIGKILL stragglers."""
        if self.process is not None:
            leftovers = self.pids()
            self.process.stop(timeout=timeout)
            _kill_pids(set(leftovers) | set(self.pids()), signal.SIGTERM, grace=5.0)
        self._kill_remaining()

    def kill(self) -> None:
        """SIGKILL every process of the cluster at once, as if the head machine died."""
        _kill_pids(set(self.pids()), signal.SIGKILL, grace=5.0)
        if self.process is not None and self.process.popen is not None:
            with contextlib.suppress(Exception):
                self.process.popen.wait(5)
        self._kill_remaining()

    def restart(self, timeout: float = 90.0) -> None:
        self.kill()
        self.start(timeout)

    def _kill_remaining(self) -> None:
        _kill_pids(set(self.pids()), signal.SIGKILL, grace=5.0)


def cluster_pids(temp_dir: Path, root_pid: int | None = None) -> list[int]:
    """The ``ray start`` process, its descendants, and any process carrying ``temp_dir`` on its
    command line or the head's marker in its environment (workers rename themselves ``ray::IDLE``
    and lose the temp dir from their command line, but keep the environment)."""
    found: set[int] = set()
    marker = f"{MARKER_VARIABLE}={temp_dir}".encode()
    if root_pid is not None:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(root_pid)
            found.add(root.pid)
            found.update(child.pid for child in root.children(recursive=True))
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if str(temp_dir) in " ".join(proc.info["cmdline"] or []):
                found.add(proc.pid)
                continue
            environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
            if marker in environ.split(b"\0"):
                found.add(proc.pid)
    found.discard(os.getpid())
    return sorted(found)


def stop_cluster(temp_dir: Path, root_pid: int | None = None) -> None:
    """Stop a head started earlier (maybe by another process) by PID: SIGTERM, then SIGKILL."""
    _kill_pids(set(cluster_pids(temp_dir, root_pid)), signal.SIGTERM, grace=10.0)
    _kill_pids(set(cluster_pids(temp_dir, root_pid)), signal.SIGKILL, grace=5.0)


def _kill_pids(pids: set[int], sig: signal.Signals, grace: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    deadline = time.monotonic() + grace
    remaining = set(pids)
    while remaining and time.monotonic() < deadline:
        remaining = {pid for pid in remaining if psutil.pid_exists(pid) and not _is_zombie(pid)}
        if remaining:
            time.sleep(0.1)
    for pid in remaining:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def short_temp_dir() -> Path:
    """A fresh short directory: Ray's Unix socket paths must stay under ~107 characters."""
    path = Path("/tmp") / f"rl-{secrets.token_hex(4)}"
    path.mkdir(mode=0o700)
    return path


@contextmanager
def running_ray_head(
    tmp_path: Path,
    num_cpus: int = 2,
    object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES,
    resources: dict[str, float] | None = None,
    labels: dict[str, str] | None = None,
    keep_temp_dir: bool = False,
) -> Iterator[RayHead]:
    """Start a Ray head with its own temp dir and ports; always stopped (by PID) on exit.

    ``tmp_path`` receives the ``ray start`` logs; Ray's own session files live in a short
    ``/tmp/rl-*`` directory, removed on exit unless ``keep_temp_dir``.
    """
    head = RayHead(
        temp_dir=short_temp_dir(),
        log_dir=tmp_path,
        num_cpus=num_cpus,
        object_store_bytes=object_store_bytes,
        resources=dict(resources or {}),
        labels=dict(labels or {}),
    )
    try:
        head.start()
        yield head
    finally:
        head.stop()
        if not keep_temp_dir:
            shutil.rmtree(head.temp_dir, ignore_errors=True)
