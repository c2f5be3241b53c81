from __future__ import annotations

import shutil

import pytest

REQUIRED_TOOLS = ("prometheus", "promtool", "prometheus-alertmanager", "amtool")


def pytest_sessionstart(session: pytest.Session) -> None:
    # CI must fail loudly on a missing install step rather than skip the real-component tests.
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise pytest.UsageError(f"missing {', '.join(missing)}: run scripts/setup.sh first")
