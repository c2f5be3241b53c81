"""The shipped Alertmanager routing: valid for amtool, and each alert shape reaches the right receivers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parents[1] / "provisioning" / "alertmanager" / "alertmanager.yml"


def test_amtool_check_config() -> None:
    result = subprocess.run(["amtool", "check-config", str(CONFIG)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        # warning -> the owning team's channel only (and an incident record in remediate)
        (["alertname=RaylensGpuIdleWhileAllocated", "severity=warning", "team=ml"], "remediation,team-channel"),
        # critical escalates: team channel and on-call
        (
            ["alertname=RaylensBudgetThresholdCrossed", "severity=critical", "team=ml"],
            "remediation,team-channel,oncall",
        ),
        # nobody owns it: the platform channel
        (["alertname=RaylensExporterDown", "severity=warning"], "remediation,platform-channel"),
        (["alertname=RaylensNodeDown", "severity=critical"], "remediation,platform-channel,oncall"),
        # info is for dashboards only
        (["alertname=RaylensClusterIdle", "severity=info", "team=ml"], "blackhole"),
        # automation gets its copy, and the humans still get theirs
        (
            ["alertname=RaylensClusterIdle", "severity=warning", "remediation=scale-down"],
            "remediation,platform-channel",
        ),
        # remediate's time-based escalation reaches the escalation level only, never remediate itself
        (
            ["alertname=RaylensIncidentEscalated", "severity=critical", "team=ml", "escalation_level=secondary-oncall"],
            "escalation",
        ),
    ],
)
def test_routes(labels: list[str], receivers: str) -> None:
    result = subprocess.run(
        [
            "amtool",
            "config",
            "routes",
            "test",
            f"--config.file={CONFIG}",
            f"--verify.receivers={receivers}",
            *labels,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
