"""The README's main command path: `raylens up` with the demo on this machine, `status`, then `down`.

Runs the real thing: a local Ray head, the demo jobs for two projects and four users, the
exporter with node/ray/cost collectors, Prometheus with our rules, Alertmanager and the sink.
Then the demo must stay alive: after its first cycle, every dashboard panel (outside the listed
exceptions) must have data from the second cycle alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from panel_check import empty_targets
from test_dashboards_live import EXCEPTIONS

from raylens.dashboards.build import build_dashboards, iter_panels
from raylens.stack.demo_loop import read_demo_state
from raylens.stack.processes import pid_alive
from raylens.stack.ray_head import cluster_pids
from raylens.stack.tools import bundle_root
from raylens.stack.up import nvml_available, read_state, stop_recorded

DEMO_CYCLE_SECONDS = 100


def demo_exceptions() -> dict[tuple[str, str], str]:
    """The live dashboard test's exceptions, plus the GPU panels where this machine has no GPU
    (`raylens up` runs the gpu collector only where NVML finds a driver) and the Serve uptime panels
    (`raylens up` runs no blackbox exporter; tests/test_clusters_e2e.py feeds them)."""
    exceptions = dict(EXCEPTIONS)
    gpu_missing = not nvml_available()
    for built in build_dashboards(bundle_root()):
        for panel in iter_panels(built.json):
            key = (built.json["uid"], panel["title"])
            exprs = [target["expr"] for target in panel["targets"]]
            if gpu_missing and all("raylens_gpu_" in expr for expr in exprs):
                exceptions[key] = "no GPU on this machine"
            if all("probe_" in expr for expr in exprs):
                exceptions[key] = "raylens up runs no blackbox exporter"
    return exceptions


def query(prometheus: str, expr: str) -> list[dict]:
    return requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()["data"]["result"]


def wait_for(prometheus: str, expr: str, timeout: float = 180.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = query(prometheus, expr)
        if result:
            return result
        time.sleep(2)
    raise AssertionError(f"no result for {expr} after {timeout}s")


@pytest.mark.slow
def test_up_demo_status_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "raylens",
            "up",
            "--no-install",
            f"--state-dir={state_dir}",
            "--scrape-interval=2s",
            f"--demo-cycle={DEMO_CYCLE_SECONDS}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    temp_dir = None
    try:
        assert up.stdout is not None
        for line in up.stdout:
            lines.append(line.rstrip())
            if "Press Ctrl-C" in line or "raylens up failed" in line:
                break
        output = "\n".join(lines)
        assert "Press Ctrl-C" in output, output
        for step in ("start a local Ray head", "start raylens exporter", "start Prometheus", "submit demo jobs"):
            assert f"[ ok ] {step}" in output, output
        state = read_state(state_dir)
        assert state is not None
        components = {component["name"]: component for component in state["components"]}
        assert set(components) == {"sink", "alertmanager", "ray-head", "exporter", "prometheus", "remediate"}
        temp_dir = Path(components["ray-head"]["temp_dir"])
        prometheus = state["urls"]["prometheus"]

        # Our exporter's series, Ray's own series, and the demo's cost by project, in Prometheus.
        wait_for(prometheus, 'raylens_scrape_collector_success{collector="ray"} == 1')
        wait_for(prometheus, 'up{job="ray"} == 1')
        wait_for(prometheus, "ray_node_cpu_utilization")
        projects = {
            row["metric"]["project"]
            for row in wait_for(
                prometheus, 'sum by (project) (raylens_cost_allocation_dollars_total{project=~"vision|search"}) > 0'
            )
        }
        deadline = time.monotonic() + 240  # Serve's replicas start last; slow on a busy machine
        while projects != {"vision", "search"} and time.monotonic() < deadline:
            time.sleep(3)
            projects = {
                row["metric"]["project"]
                for row in query(prometheus, "sum by (project) (raylens_cost_allocation_dollars_total) > 0")
            } & {"vision", "search"}
        assert projects == {"vision", "search"}
        users = {row["metric"]["user"] for row in query(prometheus, "raylens_ray_job_info")}
        assert users >= {"alice", "bob", "carol"}
        # The scrape never waits on Ray, demo jobs running or not (a guard on a shared CI machine, not
        # a timing claim: docs/benchmarks.md has the figures).
        slowest = query(prometheus, 'max_over_time(scrape_duration_seconds{job="raylens"}[10m])')
        assert slowest and float(slowest[0]["value"][1]) < 1.0, slowest

        check_demo_stays_alive(state_dir, prometheus, temp_dir)

        status = subprocess.run(
            [sys.executable, "-m", "raylens", "status", f"--state-dir={state_dir}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        for name in ("sink", "alertmanager", "ray-head", "exporter", "prometheus", "remediate"):
            assert any(line.split()[:2] == [name, "up"] for line in status.stdout.splitlines()), status.stdout
        assert state["urls"]["remediate"] in status.stdout
        assert "vision" in status.stdout and "search" in status.stdout
        assert "search-daily" in status.stdout and "% used" in status.stdout
        assert "Demo" in status.stdout and "next in" in status.stdout and "demo-serve-" in status.stdout

        pids = [component["pid"] for component in state["components"]] + cluster_pids(temp_dir)
        down = subprocess.run(
            [sys.executable, "-m", "raylens", "down", f"--state-dir={state_dir}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert down.returncode == 0, down.stdout + down.stderr
        up.wait(timeout=60)
        assert [pid for pid in pids if pid_alive(pid)] == []
        assert cluster_pids(temp_dir) == []
    finally:
        if up.poll() is None:
            stop_recorded(state_dir, say=lambda _message: None)
            up.kill()


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def completed_cycle(state_dir: Path) -> dict | None:
    """The newest finished cycle after the first whose Data and Train runs succeeded."""
    demo = read_demo_state(state_dir) or {}
    for cycle in reversed(demo.get("history", [])):
        statuses = {run["kind"]: run["status"] for run in cycle["runs"]}
        if cycle["cycle"] >= 2 and statuses.get("data") == "SUCCEEDED" and statuses.get("train") == "SUCCEEDED":
            return cycle
    return None


def check_demo_stays_alive(state_dir: Path, prometheus: str, temp_dir: Path) -> None:
    """Wait out a whole cycle after the first, then every panel needs data from that cycle on."""
    state = read_state(state_dir)
    assert state is not None
    pids = [component["pid"] for component in state["components"]]
    cpu_before, wall_before = cpu_seconds(pids + cluster_pids(temp_dir)), time.monotonic()
    deadline = time.monotonic() + 3 * DEMO_CYCLE_SECONDS + 300
    while (cycle := completed_cycle(state_dir)) is None:
        assert time.monotonic() < deadline, f"no second cycle completed: {read_demo_state(state_dir)}"
        time.sleep(5)
    share = (cpu_seconds(pids + cluster_pids(temp_dir)) - cpu_before) / (time.monotonic() - wall_before)
    print(f"\ndemo CPU while cycles ran: {share:.2f} cores of {os.cpu_count()}")
    demo = read_demo_state(state_dir)
    assert demo is not None and demo["serve"]["status"] == "RUNNING", demo  # the Serve load goes on
    end_deadline = time.monotonic() + 90
    while True:  # rates and the 5m rules need a few samples of the new cycle
        empty, _ = empty_targets(prometheus, cycle["started_at"], time.time(), "10s", demo_exceptions())
        if not empty or time.monotonic() > end_deadline:
            break
        time.sleep(10)
    assert not empty, f"panels without data since cycle {cycle['cycle']} began:\n" + "\n".join(empty)
