"""The README's main command path: `raylens up` with the demo on this machine, `status`, then `down`.

Runs the real thing: a local Ray head, the demo jobs for two projects and three users, the
exporter with node/ray/cost collectors, Prometheus with our rules, Alertmanager and the sink.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from raylens.stack.processes import pid_alive
from raylens.stack.ray_head import cluster_pids
from raylens.stack.up import read_state, stop_recorded


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
            "--demo-duration=90",
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
        deadline = time.monotonic() + 120
        while projects != {"vision", "search"} and time.monotonic() < deadline:
            time.sleep(3)
            projects = {
                row["metric"]["project"]
                for row in query(prometheus, "sum by (project) (raylens_cost_allocation_dollars_total) > 0")
            } & {"vision", "search"}
        assert projects == {"vision", "search"}
        users = {row["metric"]["user"] for row in query(prometheus, "raylens_ray_job_info")}
        assert users >= {"alice", "bob", "carol"}

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
