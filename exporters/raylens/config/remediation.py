"""The ``remediation`` section: what ``raylens remediate`` may do, to which clusters, and how carefully.

Everything that can change a cluster is off or narrow by default: ``dry_run`` is on, no cluster is
allow-listed, no budget has opted in to job stops, and no command is defined. docs/remediation.md
walks through each action and its safety rails.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from raylens.config.alerts import Duration
from raylens.config.base import _Section, parse_listen_address

ActionName = Literal[
    "scale-down",
    "terminate-idle-cluster",
    "restart-serve-deployment",
    "restart-failed-job",
    "stop-over-budget-jobs",
    "run-command",
]
ACTION_NAMES: tuple[str, ...] = ActionName.__args__  # type: ignore[attr-defined]
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def duration_seconds(value: str) -> float:
    """Seconds in a Prometheus duration such as ``1h30m``."""
    return sum(int(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(value))


def _label_regexes(matchers: dict[str, str]) -> dict[str, str]:
    if not matchers:
        raise ValueError("expected at least one label: regex pair")
    for label, pattern in matchers.items():
        if not _LABEL_NAME.match(label):
            raise ValueError(f"expected a Prometheus label name, got {label!r}")
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"expected a valid regular expression for {label!r} ({error})") from None
    return matchers


def labels_match(matchers: dict[str, str], labels: dict[str, str]) -> bool:
    """Alertmanager's ``=~``: each regex anchored at both ends; a missing label is the empty string."""
    return all(re.fullmatch(pattern, labels.get(label, "")) for label, pattern in matchers.items())


class ClusterTarget(_Section):
    """One Ray cluster remediation may act on (the allow-list), and how alerts name it."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    dashboard_url: str = Field(pattern=r"^https?://[^/\s]+/?$", description="Ray dashboard (Job and Serve APIs).")
    match: tuple[dict[str, str], ...] = Field(
        min_length=1,
        description="Label sets (label: anchored regex) of alerts about this cluster; any one set matching "
        "names the cluster, e.g. `{instance: '10.0.0.5:9965'}` for the exporter's alerts.",
    )
    terminate_command: tuple[str, ...] = Field(
        (), description="argv `terminate-idle-cluster` runs after stopping the work, e.g. ray down -y cluster.yaml."
    )

    @field_validator("match")
    @classmethod
    def _matchers(cls, value: tuple[dict[str, str], ...]) -> tuple[dict[str, str], ...]:
        return tuple(_label_regexes(item) for item in value)


class RemediationRule(_Section):
    """Alerts whose labels match run ``action``; the first matching rule wins."""

    match: dict[str, str]
    action: ActionName
    command: str | None = Field(None, description="For run-command: the name of an entry of `commands`.")

    _matchers = field_validator("match")(_label_regexes)


class CommandSpec(_Section):
    argv: tuple[str, ...] = Field(min_length=1, description="Run without a shell; alert labels arrive as env vars.")
    timeout_seconds: float = Field(60.0, gt=0, le=3600)


class EscalationLevel(_Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    after: Duration


DEFAULT_RULES = (
    RemediationRule(match={"remediation": "scale-down"}, action="scale-down"),
    RemediationRule(match={"remediation": "terminate-idle-cluster"}, action="terminate-idle-cluster"),
    RemediationRule(match={"remediation": "restart-serve-deployment"}, action="restart-serve-deployment"),
    RemediationRule(match={"remediation": "restart-failed-job"}, action="restart-failed-job"),
    RemediationRule(
        match={"alertname": "RaylensBudgetThresholdCrossed", "threshold": "100"}, action="stop-over-budget-jobs"
    ),
)


class RemediationConfig(_Section):
    """``raylens remediate``: the Alertmanager webhook receiver that records incidents and runs actions."""

    listen_address: str = Field(
        "127.0.0.1:9098", description="Address the remediation service listens on (Alertmanager posts to /webhook)."
    )
    web_config_file: Path | None = Field(
        None, description="Exporter-toolkit web config: TLS and bcrypt basic auth, as for the exporter."
    )
    bearer_token_file: Path | None = Field(
        None,
        description="File holding the token Alertmanager sends as `Authorization: Bearer` (its "
        "`http_config.authorization.credentials_file`). Either this or basic auth is required.",
    )
    dry_run: bool = Field(
        True, description="Record what each action would do and change nothing. Turn off once the records look right."
    )
    allow_unauthenticated: bool = Field(
        False, description="Accept webhooks without credentials. Only for a loopback experiment; never with actions."
    )
    database: Path | None = Field(
        None, description="SQLite file for incidents and actions; unset: $XDG_STATE_HOME/raylens/incidents.sqlite."
    )
    prometheus_url: str | None = Field(
        None,
        description="Prometheus that idle and budget conditions are re-checked against at action time, and that "
        "incident impact figures are computed from. Without it those actions are skipped.",
    )
    alertmanager_url: str | None = Field(
        None, description="Alertmanager that escalation alerts are posted to; unset: no escalation."
    )
    clusters: tuple[ClusterTarget, ...] = Field((), description="The allow-list: the only clusters acted on.")
    commands: dict[str, CommandSpec] = Field(default_factory=dict, description="Commands run-command may run.")
    rules: tuple[RemediationRule, ...] = Field(
        DEFAULT_RULES,
        description="Label matchers to actions, first match wins. Default: the `remediation` label names the "
        "action, and a budget's 100 % alert maps to stop-over-budget-jobs.",
    )
    idle_ratio_min: float = Field(
        0.9,
        gt=0,
        le=1,
        description="scale-down and terminate-idle-cluster act only while the cluster's live idle share "
        "(cluster:raylens_cost_idle:ratio_rate5m) is at least this.",
    )
    protected_job_metadata: dict[str, str] = Field(
        default_factory=dict,
        description="Jobs whose metadata matches any key: regex here are never stopped (e.g. workload: notebook).",
    )
    over_budget_budgets: tuple[str, ...] = Field(
        (), description="Budgets that opted in to stop-over-budget-jobs; alerts of other budgets are skipped."
    )
    over_budget_jobs_per_alert: int = Field(
        1, ge=1, le=100, description="Newest running jobs of the budget's scope stopped per alert."
    )
    restart_backoff_seconds: float = Field(
        60.0,
        ge=0,
        description="A target's second restart within an hour waits this long after its first, the third "
        "twice as long, and so on.",
    )
    max_restarts_per_hour: int = Field(3, ge=1, description="Restarts of one job or deployment per rolling hour.")
    max_actions_per_hour: int = Field(
        20, ge=1, description="Actions actually run (not dry runs) per rolling hour, all targets together."
    )
    action_timeout_seconds: float = Field(
        120.0, gt=0, le=3600, description="Deadline for one action, including waiting for a Serve rollout."
    )
    escalation_levels: tuple[EscalationLevel, ...] = Field(
        (EscalationLevel(name="secondary-oncall", after="30m"),),
        description="An unacknowledged incident of an escalated severity is escalated to each level once it has "
        "been open `after`; posted to Alertmanager as RaylensIncidentEscalated{escalation_level=name}.",
    )
    escalation_severities: tuple[Literal["critical", "warning"], ...] = Field(
        ("critical",), description="Severities whose incidents escalate."
    )
    escalation_check_seconds: float = Field(
        30.0, gt=0, le=3600, description="How often open incidents are checked for escalation."
    )

    @field_validator("listen_address")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        parse_listen_address(value)
        return value

    @field_validator("protected_job_metadata")
    @classmethod
    def _protected(cls, value: dict[str, str]) -> dict[str, str]:
        return _label_regexes(value) if value else value

    @field_validator("escalation_levels")
    @classmethod
    def _increasing(cls, levels: tuple[EscalationLevel, ...]) -> tuple[EscalationLevel, ...]:
        afters = [duration_seconds(level.after) for level in levels]
        if afters != sorted(set(afters)) or len({level.name for level in levels}) != len(levels):
            raise ValueError("expected levels with distinct names and strictly increasing `after`")
        return levels

    @field_validator("clusters")
    @classmethod
    def _unique_names(cls, clusters: tuple[ClusterTarget, ...]) -> tuple[ClusterTarget, ...]:
        names = [cluster.name for cluster in clusters]
        if len(set(names)) != len(names):
            raise ValueError("expected each cluster name at most once")
        return clusters

    @field_validator("rules")
    @classmethod
    def _known_commands(cls, rules: tuple[RemediationRule, ...], info: ValidationInfo) -> tuple[RemediationRule, ...]:
        commands = info.data.get("commands") or {}
        for index, rule in enumerate(rules):
            if rule.action == "run-command" and rule.command not in commands:
                known = ", ".join(sorted(commands)) or "none defined"
                raise ValueError(
                    f"rule {index} runs command {rule.command!r}; expected a name from `commands` ({known})"
                )
        return rules

    @field_validator("allow_unauthenticated")
    @classmethod
    def _only_for_dry_runs(cls, allowed: bool, info: ValidationInfo) -> bool:
        if allowed and info.data.get("dry_run") is False:
            raise ValueError("expected false when dry_run is off: configure bearer_token_file or basic auth")
        return allowed
