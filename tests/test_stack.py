"""`raylens up` / `raylens down`: the README's main command path, on this machine, stopped by PID."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from raylens.stack.processes import pid_alive
from raylens.stack.up import read_state, stop_recorded

REPO = Path(__file__).resolve().parents[1]


def cleanup(up: subprocess.Popen[str], state_dir: Path) -> None:
    """On a failed assertion, stop children by their recorded PIDs before killing the supervisor."""
    if up.poll() is None:
        stop_recorded(state_dir, say=lambda _message: None)
        up.kill()


def start_up(state_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "raylens",
            "up",
            "--no-install",
            f"--state-dir={state_dir}",
            "--scrape-interval=1s",
            "--no-demo",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until_up(process: subprocess.Popen[str], timeout: float = 90) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip())
        if "Press Ctrl-C" in line:
            return lines
        assert time.monotonic() < deadline, "\n".join(lines)
    raise AssertionError("raylens up exited early:\n" + "\n".join(lines))


def test_up_then_down_leaves_nothing_running(tmp_path: Path) -> None:
    up = start_up(tmp_path)
    try:
        output = wait_until_up(up)
        assert any(line.startswith("[ ok ] start Prometheus") for line in output), output
        assert any("raylens series in Prometheus" in line for line in output), output
        state = read_state(tmp_path)
        assert state is not None
        pids = [component["pid"] for component in state["components"]]
        assert [component["name"] for component in state["components"]] == [
            "sink",
            "alertmanager",
            "ray-head",
            "exporter",
            "prometheus",
            "remediate",
        ]
        assert all(pid_alive(pid) for pid in pids)
        prometheus = state["urls"]["prometheus"]
        answer = requests.get(f"{prometheus}/api/v1/query", params={"query": "raylens_node_load1"}, timeout=10).json()
        assert answer["data"]["result"], answer

        down = subprocess.run(
            [sys.executable, "-m", "raylens", "down", f"--state-dir={tmp_path}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert down.returncode == 0, down.stdout + down.stderr
        up.wait(timeout=30)
        assert not any(pid_alive(pid) for pid in pids)
        assert not (tmp_path / "stack.json").exists()
    finally:
        cleanup(up, tmp_path)


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    up = start_up(tmp_path)
    try:
        wait_until_up(up)
        pids = [component["pid"] for component in json.loads((tmp_path / "stack.json").read_text())["components"]]
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=30) == 0
        assert not any(pid_alive(pid) for pid in pids)
    finally:
        cleanup(up, tmp_path)


def test_a_failing_step_shows_the_log_and_leaves_nothing_running(tmp_path: Path) -> None:
    # Prometheus refuses a config it cannot parse: the failure must name it and stop the exporter.
    bundle = tmp_path / "bundle"
    for folder in ("provisioning/prometheus", "recording-rules", "alerting-rules"):
        (bundle / folder).mkdir(parents=True)
    shutil.copytree(REPO / "provisioning" / "alertmanager", bundle / "provisioning" / "alertmanager")
    (bundle / "provisioning/prometheus/prometheus.yml").write_text("scrape_configs: [{job_name: 1, bogus: true}]\n")
    state_dir = tmp_path / "state"
    result = subprocess.run(
        [sys.executable, "-m", "raylens", "up", "--no-install", f"--state-dir={state_dir}"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RAYLENS_BUNDLE_DIR": str(bundle)},
    )
    assert result.returncode == 1
    assert "raylens up failed: prometheus exited" in result.stdout
    assert "prometheus.log" in result.stdout  # the tail of the failing component's log
    for started_before in ("exporter", "alertmanager", "sink"):
        assert f"stopping {started_before}" in result.stdout
    assert not (state_dir / "stack.json").exists()
