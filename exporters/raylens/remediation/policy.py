"""Deciding, per firing alert, whether an action may run: the safety rails in one place.

In order: a rule maps the alert's labels to an action; the same alert episode (group key,
fingerprint, start time) is decided once, so re-sent notifications never repeat an action; the
target must be on the allow-list (a configured cluster, an opted-in budget); at most
``max_actions_per_hour`` actions run per rolling hour; restarts of one target back off (the
restart is deferred until its backoff has passed, like Kubernetes' CrashLoopBackOff) and are
capped per hour; and one action at a time runs per target (a cluster-wide action excludes every
action inside that cluster). Each decision is stored before it is acted on.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from raylens.config.remediation import ClusterTarget, RemediationConfig, RemediationRule, labels_match
from raylens.remediation.payload import Alert, Notification
from raylens.remediation.store import Store

RAY_ACTIONS = (
    "scale-down",
    "terminate-idle-cluster",
    "restart-serve-deployment",
    "restart-failed-job",
    "stop-over-budget-jobs",
)
RESTART_ACTIONS = ("restart-serve-deployment", "restart-failed-job")
HOUR = 3600.0
_RESTART_SUFFIX = re.compile(r"^(.+?)(-restart-\d+)+$")


def _clock(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) + " UTC"


def restart_root(submission_id: str) -> str:
    """The job a chain of restarts started from: ``train-7-restart-2`` -> ``train-7``."""
    match = _RESTART_SUFFIX.match(submission_id)
    return match.group(1) if match else submission_id


@dataclass
class Decision:
    action: str
    alert: Alert
    group_key: str
    incident_id: int | None
    rule: RemediationRule | None
    target: str
    cluster: ClusterTarget | None = None
    action_id: int | None = None
    skip_reason: str | None = None
    duplicate_of: dict | None = None
    defer_until: float | None = None
    holds_target: bool = field(default=False, repr=False)

    @property
    def runs(self) -> bool:
        return self.skip_reason is None and self.duplicate_of is None and self.defer_until is None


class Policy:
    def __init__(self, config: RemediationConfig, store: Store, clock: Callable[[], float] = time.time):
        self.config = config
        self.store = store
        self.clock = clock
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def rule_for(self, labels: dict[str, str]) -> RemediationRule | None:
        return next((rule for rule in self.config.rules if labels_match(rule.match, labels)), None)

    def cluster_for(self, labels: dict[str, str]) -> ClusterTarget | None:
        for cluster in self.config.clusters:
            if any(labels_match(matchers, labels) for matchers in cluster.match):
                return cluster
        return None

    def decide(self, notification: Notification, alert: Alert, incident_id: int | None) -> Decision | None:
        """``None`` for alerts no rule maps (and without a ``remediation`` label): not ours to act on."""
        labels = alert.labels
        rule = self.rule_for(labels)
        if rule is None and "remediation" not in labels:
            return None
        action = rule.action if rule else labels["remediation"]
        cluster = self.cluster_for(labels)
        if rule is None:
            target, problem = "-", f"no rule maps remediation={action!r} (remediation.rules)"
        else:
            target, problem = self._target(action, rule, labels, cluster)
        decision = Decision(action, alert, notification.group_key, incident_id, rule, target, cluster)
        now = self.clock()
        key = "\x1f".join((notification.group_key, alert.fingerprint, f"{alert.starts_at:.3f}", action))
        decision.action_id = self.store.claim_action(
            key, incident_id, action, target, cluster.name if cluster else None, now
        )
        if decision.action_id is None:
            decision.duplicate_of = self.store.action_by_key(key)
            return decision
        if problem:
            decision.skip_reason = problem
            self.store.update_action(decision.action_id, "skipped", now, problem)
            return decision
        return self.recheck(decision)

    def recheck(self, decision: Decision) -> Decision:
        """Limits, backoff and the target lock, now: a decision made earlier and deferred comes back here."""
        now = self.clock()
        assert decision.action_id is not None
        decision.defer_until = None
        limit = self._limits(decision.action, decision.target, now)
        if isinstance(limit, float):
            decision.defer_until = limit
            reason = f"backoff: restart of {decision.target} deferred {limit - now:.0f}s, until {_clock(limit)}"
            self.store.update_action(decision.action_id, "deferred", now, reason)
            return decision
        problem = limit or self._claim_target(decision.target)
        if problem:
            decision.skip_reason = problem
            self.store.update_action(decision.action_id, "skipped", now, problem)
        else:
            decision.holds_target = True
        return decision

    def _target(
        self, action: str, rule: RemediationRule, labels: dict[str, str], cluster: ClusterTarget | None
    ) -> tuple[str, str | None]:
        if action == "run-command":
            return f"command/{rule.command}/{cluster.name if cluster else '-'}", None
        if cluster is None:
            return "-", "no allow-listed cluster matches the alert's labels (remediation.clusters)"
        if action in ("scale-down", "terminate-idle-cluster"):
            return cluster.name, None
        needed = {
            "restart-serve-deployment": "application",
            "restart-failed-job": "submission_id",
            "stop-over-budget-jobs": "budget",
        }[action]
        value = labels.get(needed)
        if not value:
            return f"{cluster.name}/?", f"the alert has no {needed} label to act on"
        if action == "restart-serve-deployment":
            return f"{cluster.name}/serve/{value}/{labels.get('deployment') or '*'}", None
        if action == "restart-failed-job":
            return f"{cluster.name}/job/{restart_root(value)}", None
        if value not in self.config.over_budget_budgets:
            return (
                f"{cluster.name}/budget/{value}",
                f"budget {value} has not opted in (remediation.over_budget_budgets)",
            )
        return f"{cluster.name}/budget/{value}", None

    def _limits(self, action: str, target: str, now: float) -> str | float | None:
        """Why the action may not run (text), or when it may (a restart backing off), or ``None``."""
        if self.config.dry_run:
            return None  # nothing runs, so nothing is rate limited; the dry run says what would happen
        recent = self.store.acted_since(now - HOUR)
        if len(recent) >= self.config.max_actions_per_hour:
            return f"rate limit: {len(recent)} actions in the last hour (max_actions_per_hour)"
        if action not in RESTART_ACTIONS:
            return None
        restarts = self.store.acted_since(now - HOUR, target)
        if len(restarts) >= self.config.max_restarts_per_hour:
            return f"{len(restarts)} restarts of {target} in the last hour (max_restarts_per_hour)"
        if restarts:
            allowed_at = restarts[-1] + self.config.restart_backoff_seconds * 2 ** (len(restarts) - 1)
            if now < allowed_at:
                return float(allowed_at)
        return None

    def _claim_target(self, target: str) -> str | None:
        with self._lock:
            for busy in self._busy:
                if busy == target or target.startswith(busy + "/") or busy.startswith(target + "/"):
                    return f"another action on {busy} is in progress (one action at a time per target)"
            self._busy.add(target)
        return None

    def release(self, decision: Decision) -> None:
        if decision.holds_target:
            with self._lock:
                self._busy.discard(decision.target)
            decision.holds_target = False
