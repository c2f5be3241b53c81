"""``raylens up``'s remediation service: its config, its bearer token, and the Alertmanager webhook to it.

The service gets the user's ``remediation`` section with what the stack knows filled in: its
listen address, a bearer token generated once per state folder (mode 0600, shared with
Alertmanager's ``credentials_file``), the incident database in the state folder, the stack's
Prometheus and Alertmanager, and, unless the user lists clusters, the one cluster the stack watches
as the allow-list. Actions stay dry runs unless ``raylens up --remediate``.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import yaml

from raylens.config import RaylensConfig, load_config
from raylens.stack.processes import ManagedProcess

# On a demo stack the Serve app's small budget opts in to stop-over-budget-jobs (a dry run by default).
DEMO_OVER_BUDGET = ("search-daily",)


def token_file(state_dir: Path) -> Path:
    """The bearer token Alertmanager sends and the service expects; created on first use."""
    path = state_dir / "remediate" / "token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32) + "\n")
    return path


def webhook(listen: str, state_dir: Path) -> tuple[str, Path]:
    """What Alertmanager's remediation receiver posts to: URL and token file."""
    return f"http://{listen}/webhook", token_file(state_dir)


def remediation_process(
    state_dir: Path,
    user_config: RaylensConfig,
    listen: str,
    urls: dict[str, str],
    dashboard_url: str,
    exporter_address: str,
    act: bool,
    demo: bool,
) -> ManagedProcess:
    section = user_config.remediation.model_dump(mode="json", exclude_none=True, exclude_unset=True)
    section.update(
        listen_address=listen,
        bearer_token_file=str(token_file(state_dir)),
        dry_run=not act,
        database=section.get("database") or str(state_dir / "incidents.sqlite"),
        prometheus_url=urls["prometheus"],
        alertmanager_url=urls["alertmanager"],
    )
    if not section.get("clusters"):
        # Exporter alerts carry its address as `instance`; Ray's own (Serve) series carry SessionName.
        cluster: dict = {"name": "local", "dashboard_url": dashboard_url}
        cluster["match"] = [{"instance": exporter_address}, {"SessionName": ".+"}]
        section["clusters"] = [cluster]
    if demo and "over_budget_budgets" not in section:
        section["over_budget_budgets"] = list(DEMO_OVER_BUDGET)
    data = user_config.model_dump(mode="json", exclude_none=True)
    data["remediation"] = section
    path = state_dir / "remediate" / "raylens.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=True))
    load_config(path)  # fail here, naming the field, rather than in the service's log
    argv = [sys.executable, "-m", "raylens", "remediate", f"--config.file={path}"]
    audit = os.environ.get("RAYLENS_AUDIT_LOG") or str(state_dir / "audit.jsonl")
    return ManagedProcess(
        "remediate",
        argv,
        state_dir / "logs" / "remediate.log",
        f"http://{listen}/healthz",
        env={"RAYLENS_AUDIT_LOG": audit},
    )
