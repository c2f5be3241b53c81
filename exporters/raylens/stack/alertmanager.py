"""Laying out an Alertmanager working folder from the bundle's routing config."""

from __future__ import annotations

from pathlib import Path

import yaml

# The shipped config sends every receiver to the local sink at this address (see its header).
SHIPPED_SINK_URL = "http://127.0.0.1:9097/"


def prepare_alertmanager_dir(
    bundle: Path,
    target_dir: Path,
    sink_address: str,
    group_wait: str | None = None,
    group_interval: str | None = None,
    remediation: tuple[str, Path] | None = None,
) -> Path:
    """Copy the routing config, pointing its webhooks at the sink on ``sink_address``.

    ``group_wait``/``group_interval`` shorten every route's timers for demos and tests, where
    waiting the production 30 s/5 m would only slow people down; routing itself is unchanged.
    ``remediation`` (URL, bearer token file) sends the remediation receiver to ``raylens remediate``.
    """
    target_dir.mkdir(parents=True, exist_ok=True)
    text = (bundle / "provisioning" / "alertmanager" / "alertmanager.yml").read_text()
    config = yaml.safe_load(text.replace(SHIPPED_SINK_URL, f"http://{sink_address}/"))
    routes = [config["route"]]
    while routes:
        route = routes.pop()
        for key, value in (("group_wait", group_wait), ("group_interval", group_interval)):
            if value is not None and (key in route or route is config["route"]):
                route[key] = value
        routes.extend(route.get("routes", []))
    if remediation is not None:
        url, token = remediation
        receiver = next(receiver for receiver in config["receivers"] if receiver["name"] == "remediation")
        authorization = {"type": "Bearer", "credentials_file": str(token)}
        receiver["webhook_configs"] = [
            {"url": url, "send_resolved": True, "http_config": {"authorization": authorization}}
        ]
    config_path = target_dir / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
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
