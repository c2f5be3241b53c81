from __future__ import annotations

import shutil

import pytest

REQUIRED_TOOLS = ("prometheus", "promtool", "prometheus-alertmanager", "amtool")


def pytest_sessionstart(session: pytest.Session) -> None:
    # CI must fail loudly on a missing install step rather than skip the real-component tests.
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise pytest.UsageError(f"missing {', '.join(missing)}: run scripts/setup.sh first")


@pytest.fixture(autouse=True, scope="session")
def _private_state_home(tmp_path_factory: pytest.TempPathFactory):
    """The events log, the audit trail and cost state default to $XDG_STATE_HOME: keep every test
    (and the exporters it starts, which inherit the environment) out of the user's own."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state-home")))
    yield
    patch.undo()
