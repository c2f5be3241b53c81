"""The remote_write examples (examples/remote-write/) are valid Prometheus configuration once merged
into the shipped prometheus.yml, checked offline with ``promtool check config``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from raylens.stack.tools import find_tool
from services import REPO

EXAMPLES = REPO / "examples" / "remote-write"
PROMETHEUS_EXAMPLES = sorted(path for path in EXAMPLES.glob("*.yml") if path.name != "datadog.yml")


@pytest.mark.parametrize("example", PROMETHEUS_EXAMPLES, ids=lambda path: path.stem)
def test_example_merges_into_a_valid_prometheus_config(example: Path, tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "provisioning" / "prometheus" / "prometheus.yml").read_text())
    fragment = yaml.safe_load(example.read_text())
    assert fragment["remote_write"] and all(
        entry["url"].startswith(("http://", "https://")) for entry in fragment["remote_write"]
    )
    config.setdefault("global", {}).update(fragment.get("global", {}))
    config["remote_write"] = fragment["remote_write"]
    config.pop("rule_files")  # the rule folders live beside the config only once `raylens up` copies them
    for entry in config["remote_write"]:  # secrets are files; promtool wants them to exist
        credentials = entry.get("authorization", {}).get("credentials_file")
        if credentials:
            secret = tmp_path / Path(credentials).name
            secret.write_text("secret\n")
            entry["authorization"]["credentials_file"] = str(secret)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    (tmp_path / "targets").mkdir()
    result = subprocess.run(
        [find_tool("promtool") or "promtool", "check", "config", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_datadog_example_is_an_openmetrics_check() -> None:
    """Datadog takes no remote_write: the example configures the Agent's OpenMetrics check instead."""
    check = yaml.safe_load((EXAMPLES / "datadog.yml").read_text())
    (instance,) = check["instances"]
    assert instance["openmetrics_endpoint"].endswith("/metrics") and instance["metrics"]
    assert all(name.startswith("raylens_") for name in instance["metrics"])
