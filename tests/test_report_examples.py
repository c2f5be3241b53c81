"""The scheduled-report examples (systemd units, cron file) call `raylens report` with options it has."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from raylens.cli import build_parser

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _report_commands() -> list[list[str]]:
    service = (EXAMPLES / "systemd" / "raylens-report.service").read_text().replace("\\\n", " ")
    commands = [line.split("=", 1)[1] for line in service.splitlines() if line.startswith("ExecStart=")]
    cron = (EXAMPLES / "cron-raylens-report").read_text()
    commands += [line for line in cron.splitlines() if line and not line.startswith("#")]
    parsed = []
    for command in commands:
        words = shlex.split(command)
        start = next(i for i, word in enumerate(words) if word.endswith("/raylens"))
        parsed.append([word for word in words[start + 1 :] if not word.startswith(">>") and word != "2>&1"])
    return parsed


def test_every_example_command_parses() -> None:
    commands = _report_commands()
    assert len(commands) == 3
    for argv in commands:
        args = build_parser().parse_args(argv)
        assert args.command == "report" and args.output_dir is not None


def test_the_timer_fires_monthly_and_catches_up() -> None:
    timer = (EXAMPLES / "systemd" / "raylens-report.timer").read_text()
    calendar = re.search(r"^OnCalendar=(.+)$", timer, re.MULTILINE)
    assert calendar and "Persistent=true" in timer
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    result = subprocess.run(
        ["systemd-analyze", "calendar", "--iterations=2", calendar.group(1)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert re.findall(r"-01 08:00:00", result.stdout), result.stdout
