"""Laying out a Prometheus working folder from the bundle's provisioning and rule files."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import yaml

from raylens.config import AlertsConfig
from raylens.cost.budgets import Budget
from raylens.rules.definitions import alert_groups
from raylens.rules.render import alert_files, write_alert_files

RULE_FOLDERS = {"recording": "recording-rules", "alerting": "alerting-rules"}


def prepare_prometheus_dir(
    bundle: Path,
    target_dir: Path,
    exporter_targets: list[str],
    scrape_interval: str | None = None,
    alertmanager_targets: list[str] | None = None,
    alerts_config: AlertsConfig | None = None,
    ray_targets: list[str] | None = None,
    budgets: Sequence[Budget] | None = None,
    blackbox_address: str | None = None,
) -> Path:
    """Copy ``provisioning/prometheus`` and the rules into ``target_dir``; write the target files.

    The shipped ``prometheus.yml`` is used unchanged except for the intervals (tests scrape every
    second) and the Alertmanager targets; returns the config path. With ``alerts_config`` the
    alerting rules are rendered from it (a user's thresholds, or short windows in tests) instead of
    copied from the committed defaults; with ``budgets`` (those the exporter publishes) the budget
    threshold alerts are generated for them instead of the sample budgets.
    """
    target_dir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((bundle / "provisioning" / "prometheus" / "prometheus.yml").read_text())
    if scrape_interval:
        config.setdefault("global", {}).update(scrape_interval=scrape_interval, evaluation_interval=scrape_interval)
    if blackbox_address:
        set_blackbox_address(config, blackbox_address)
    config_path = target_dir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    targets = target_dir / "targets"
    targets.mkdir(exist_ok=True)
    (targets / "raylens.json").write_text(json.dumps([{"targets": exporter_targets, "labels": {}}], indent=2))
    alertmanagers = [{"targets": alertmanager_targets, "labels": {}}] if alertmanager_targets else []
    (targets / "alertmanager.json").write_text(json.dumps(alertmanagers))
    # Ray's own endpoints; `raylens sd` keeps this file current on a real cluster. Without
    # ``ray_targets`` a file written there already (by `raylens sd` or a test) is left alone.
    ray_file = targets / "ray.json"
    if ray_targets is not None:
        ray_file.write_text(json.dumps([{"targets": ray_targets, "labels": {}}] if ray_targets else []))
    elif not ray_file.exists():
        ray_file.write_text("[]")
    serve_file = targets / "serve.json"  # Serve routes for the blackbox exporter, from `raylens sd`
    if not serve_file.exists():
        serve_file.write_text("[]")

    for name, source in RULE_FOLDERS.items():
        destination = target_dir / "rules" / name
        if destination.exists():
            shutil.rmtree(destination)
        shutil.copytree(bundle / source, destination)
    if alerts_config is not None or budgets is not None:
        groups = alert_groups(budgets or ())
        write_alert_files(target_dir / "rules" / "alerting", alert_files(groups, alerts_config or AlertsConfig()))
    return config_path


def set_blackbox_address(config: dict, address: str) -> None:
    """Point the ``serve-probe`` job at the blackbox exporter listening on ``address``."""
    for job in config.get("scrape_configs", []):
        if job.get("job_name") == "serve-probe":
            for rule in job.get("relabel_configs", []):
                if rule.get("target_label") == "__address__" and "source_labels" not in rule:
                    rule["replacement"] = address


def prometheus_argv(binary: str, config_path: Path, data_dir: Path, listen: str) -> list[str]:
    return [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address={listen}",
        "--web.enable-lifecycle",
        # The default 1m delay drops the first notification while Alertmanager is being discovered.
        "--rules.alert.resend-delay=1s",
        "--log.level=warn",
    ]
