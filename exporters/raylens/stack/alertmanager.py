"""Laying out an Alertmanager working folder from the bundle's routing config."""

from __future__ import annotations

from pathlib import Path

# The shipped config sends every receiver to the local sink at this address (see its header).
SHIPPED_SINK_URL = "http://127.0.0.1:9097/"


def prepare_alertmanager_dir(bundle: Path, target_dir: Path, sink_address: str) -> Path:
    """Copy the routing config, pointing its webhooks at the sink on ``sink_address``."""
    target_dir.mkdir(parents=True, exist_ok=True)
    text = (bundle / "provisioning" / "alertmanager" / "alertmanager.yml").read_text()
    config_path = target_dir / "alertmanager.yml"
    config_path.write_text(text.replace(SHIPPED_SINK_URL, f"http://{sink_address}/"))
    return config_path


def alertmanager_argv(binary: str, config_path: Path, data_dir: Path, listen: str) -> list[str]:
    return [
        binary,
        f"--config.file={config_path}",
        f"--storage.path={data_dir}",
        f"--web.listen-address={listen}",
        # No gossip: an empty cluster address keeps it from listening on 0.0.0.0:9094.
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
