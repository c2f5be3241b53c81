"""The remediation actions. Each one re-reads the live state (Prometheus, Ray), builds a plan of
steps, and either carries it out or, in a dry run, returns what it would do.

=========================  ====================================================================
action                     what it does (after its live check)
=========================  ====================================================================
scale-down                 idle share still >= idle_ratio_min: shut down Serve, stop running jobs
terminate-idle-cluster     the same, then the cluster's ``terminate_command`` (e.g. ``ray down``)
restart-serve-deployment   rolling restart of a config-deployed Serve deployment (restarts.py)
restart-failed-job         resubmit a FAILED job with its entrypoint and metadata (restarts.py)
stop-over-budget-jobs      budget still >= 100 %: stop the newest running jobs of its scope
run-command                a configured command, alert labels as environment variables
=========================  ====================================================================
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raylens.config.remediation import RemediationConfig, labels_match
from raylens.remediation.policy import Decision
from raylens.remediation.prometheus import Prometheus, PrometheusError, selector
from raylens.remediation.ray_api import ACTIVE_JOB_STATUSES, RayApiError, RayDashboard, job_sort_key

# Labels of the cost exporter's target: what names a cluster's series in the recording rules.
TARGET_LABELS = ("job", "instance", "cluster")


class Skip(Exception):
    """The live state says not to act (no longer idle, nothing to stop, ...): a reason, not a failure."""


class ActionFailed(Exception):
    """A step of the plan failed; the message says which and why."""


@dataclass
class ActionResult:
    outcome: str  # acted | dry_run | skipped | failed
    reason: str = ""
    steps: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class ActionContext:
    decision: Decision
    config: RemediationConfig
    dry_run: bool
    deadline: float
    prometheus: Prometheus | None
    dashboard: RayDashboard | None

    @property
    def labels(self) -> dict[str, str]:
        return self.decision.alert.labels

    def ray(self) -> RayDashboard:
        if self.dashboard is None:
            raise Skip("no allow-listed cluster for this alert")
        return self.dashboard

    def need_prometheus(self) -> Prometheus:
        if self.prometheus is None:
            raise Skip("no remediation.prometheus_url to re-check the condition against; not acting blind")
        return self.prometheus


class Plan:
    """Named steps, run in order; a dry run lists them instead."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], str | None]]] = []
        self.detail: dict[str, Any] = {}

    def add(self, description: str, run: Callable[[], str | None]) -> None:
        self.steps.append((description, run))

    def carry_out(self, dry_run: bool) -> ActionResult:
        if dry_run:
            return ActionResult("dry_run", "dry run: nothing was changed", [f"would {text}" for text, _ in self.steps])
        done: list[str] = []
        for description, run in self.steps:
            try:
                note = run()
            except (RayApiError, ActionFailed, OSError, subprocess.SubprocessError) as error:
                return ActionResult("failed", f"{description}: {error}", done, self.detail)
            done.append(description + (f" ({note})" if note else ""))
        return ActionResult("acted", "", done, self.detail)


def protected(job: dict[str, Any], config: RemediationConfig) -> bool:
    metadata = job.get("metadata") or {}
    return any(labels_match({key: pattern}, metadata) for key, pattern in config.protected_job_metadata.items())


def _job_name(job: dict[str, Any]) -> str:
    metadata = job.get("metadata") or {}
    owner = ", ".join(f"{key} {metadata[key]}" for key in ("project", "team", "user") if metadata.get(key))
    return f"{job.get('submission_id') or job.get('job_id')}" + (f" ({owner})" if owner else "")


def _stop(dashboard: RayDashboard, job_id: str) -> Callable[[], str | None]:
    def run() -> str | None:
        return None if dashboard.stop_job(job_id) else "it had already finished"

    return run


def command_environment(context: ActionContext) -> dict[str, str]:
    """Alert labels as ``RAYLENS_LABEL_<NAME>``, annotations as ``RAYLENS_ANNOTATION_<NAME>``, and context."""
    alert = context.decision.alert
    environment = {f"RAYLENS_LABEL_{name.upper()}": value for name, value in alert.labels.items()}
    environment.update({f"RAYLENS_ANNOTATION_{name.upper()}": value for name, value in alert.annotations.items()})
    cluster = context.decision.cluster
    environment.update(
        RAYLENS_ACTION=context.decision.action,
        RAYLENS_GROUP_KEY=context.decision.group_key,
        RAYLENS_INCIDENT_ID=str(context.decision.incident_id or ""),
        RAYLENS_CLUSTER=cluster.name if cluster else "",
        RAYLENS_DASHBOARD_URL=cluster.dashboard_url if cluster else "",
    )
    return environment


def _command(argv: tuple[str, ...], context: ActionContext, timeout: float) -> Callable[[], str | None]:
    def run() -> str | None:
        remaining = max(1.0, min(timeout, context.deadline - time.monotonic()))
        try:
            finished = subprocess.run(
                list(argv),
                env={**os.environ, **command_environment(context)},
                capture_output=True,
                text=True,
                timeout=remaining,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise ActionFailed(f"still running after {remaining:.0f}s; killed") from None
        output = (finished.stdout + finished.stderr).strip()[-500:]
        if finished.returncode != 0:
            raise ActionFailed(f"exit code {finished.returncode}: {output}")
        return f"exit code 0{': ' + output if output else ''}"

    return run


def _recheck(context: ActionContext, record: str, minimum: float, what: str) -> float:
    """The live value of ``record`` for the alert's target, which must be at least ``minimum``."""
    prometheus = context.need_prometheus()
    target = {label: context.labels[label] for label in TARGET_LABELS if context.labels.get(label)}
    if record.startswith("budget:"):
        target["budget"] = context.labels["budget"]
    expr = record + selector(target)
    try:
        value = prometheus.value(expr)
    except PrometheusError as error:
        raise Skip(f"cannot re-check {what} ({error}); not acting blind") from None
    if value is None:
        raise Skip(f"cannot confirm {what}: {expr} returned nothing")
    if value < minimum:
        raise Skip(f"no longer {what}: {expr} is {value:.3f}, below {minimum:g}")
    return value


def scale_down(context: ActionContext, terminate: bool = False) -> Plan:
    idle = _recheck(context, "cluster:raylens_cost_idle:ratio_rate5m", context.config.idle_ratio_min, "idle")
    dashboard = context.ray()
    plan = Plan()
    plan.detail["idle_ratio"] = round(idle, 4)
    applications = sorted((dashboard.serve().get("applications") or {}).keys())
    if applications:
        plan.add(f"shut down Serve and its applications {', '.join(applications)}", _shutdown(dashboard))
    jobs = [job for job in dashboard.jobs() if job.get("status") in ACTIVE_JOB_STATUSES]
    for job in sorted(jobs, key=job_sort_key, reverse=True):
        if protected(job, context.config):
            plan.detail.setdefault("protected_jobs", []).append(job.get("submission_id"))
            continue
        plan.add(f"stop job {_job_name(job)}", _stop(dashboard, str(job.get("submission_id") or job["job_id"])))
    cluster = context.decision.cluster
    if terminate and cluster is not None and cluster.terminate_command:
        argv = cluster.terminate_command
        plan.add(f"run {' '.join(argv)}", _command(argv, context, context.config.action_timeout_seconds))
    elif terminate:
        plan.detail["note"] = f"no terminate_command for cluster {cluster.name if cluster else '?'}: work stopped only"
    if not plan.steps:
        raise Skip(f"nothing to stop: idle share {idle:.3f}, no Serve applications, no running jobs")
    return plan


def _shutdown(dashboard: RayDashboard) -> Callable[[], str | None]:
    def run() -> str | None:
        dashboard.shutdown_serve()
        left = sorted((dashboard.serve().get("applications") or {}).keys())
        if left:
            raise ActionFailed(f"applications still listed after shutdown: {', '.join(left)}")
        return None

    return run


def stop_over_budget_jobs(context: ActionContext) -> Plan:
    labels = context.labels
    ratio = _recheck(context, "budget:raylens_budget_spend:ratio", 1.0, f"over budget {labels['budget']}")
    scope, match = labels.get("scope", ""), labels.get("match", "")
    if scope not in ("org", "project", "team", "user"):
        raise Skip(f"a {scope or 'budget without a'} scope names no jobs to stop")
    dashboard = context.ray()
    jobs = [
        job
        for job in dashboard.jobs()
        if job.get("status") in ACTIVE_JOB_STATUSES
        and (scope == "org" or (job.get("metadata") or {}).get(scope) == match)
        and not protected(job, context.config)
    ]
    if not jobs:
        raise Skip(f"budget at {ratio:.0%} but no running job of {scope} {match or ''}".rstrip())
    plan = Plan()
    plan.detail["budget_ratio"] = round(ratio, 4)
    newest = sorted(jobs, key=job_sort_key, reverse=True)[: context.config.over_budget_jobs_per_alert]
    for job in newest:
        plan.add(
            f"stop job {_job_name(job)}, the newest of {scope} {match}".rstrip(), _stop(dashboard, job["submission_id"])
        )
    plan.detail["kept_running"] = [job.get("submission_id") for job in jobs if job not in newest]
    return plan


def run_command(context: ActionContext) -> Plan:
    rule = context.decision.rule
    assert rule is not None and rule.command is not None
    spec = context.config.commands[rule.command]
    plan = Plan()
    plan.detail["environment"] = sorted(command_environment(context))
    plan.add(f"run {rule.command}: {' '.join(spec.argv)}", _command(spec.argv, context, spec.timeout_seconds))
    return plan


def build_plan(context: ActionContext) -> Plan:
    from raylens.remediation.restarts import restart_failed_job, restart_serve_deployment

    builders: dict[str, Callable[[ActionContext], Plan]] = {
        "scale-down": scale_down,
        "terminate-idle-cluster": lambda context: scale_down(context, terminate=True),
        "restart-serve-deployment": restart_serve_deployment,
        "restart-failed-job": restart_failed_job,
        "stop-over-budget-jobs": stop_over_budget_jobs,
        "run-command": run_command,
    }
    return builders[context.decision.action](context)


def run_action(context: ActionContext) -> ActionResult:
    """Check, plan and (unless a dry run) act; never raises."""
    try:
        plan = build_plan(context)
    except Skip as reason:
        return ActionResult("skipped", str(reason))
    except (RayApiError, PrometheusError) as error:
        return ActionResult("failed", f"reading the live state: {error}")
    result = plan.carry_out(context.dry_run)
    result.detail = {**plan.detail, **result.detail}
    return result
