"""Workspace events: what changed in a Ray cluster between two snapshots, as discrete events.

``derive_events(previous, current)`` is a pure function of two ``ClusterSnapshot``s (and
``derive_serve_events`` of two ``ServeSnapshot``s): no clock, no I/O, so it is tested with snapshots
built by hand and runs wherever snapshots are made. ``raylens.ray.event_log`` persists, writes and
counts what it returns.

=============================  ======================================================  ===========
kind                           when                                                    cause
=============================  ======================================================  ===========
``cluster_session_started``    the session name changed (a new or restarted head)      ``""``
``node_joined``                a node id appears                                       ``""``
``node_left``                  a node died with ``EXPECTED_TERMINATION``               reason
``node_died``                  unexpected termination, unspecified, or vanished        reason
``node_preempted``             the autoscaler drained it for preemption (spot)         ``preempted``
``node_scaled_down``           the autoscaler terminated it as idle (scale down)       ``idle_terminated``
``job_started``                a job is seen RUNNING (or finished) for the first time  ``""``
``job_succeeded`` / ``job_failed`` / ``job_stopped``  a job reached that final status   error type
``serve_application_status``   a Serve application changed status                      new status
``serve_deployment_status``    a Serve deployment changed status                       new status
=============================  ======================================================  ===========

Ids are deterministic (session, subject, transition), so the same change derived twice — after an
exporter restart that re-reads a persisted previous snapshot — is recognised as already emitted.
A source is compared only when both snapshots hold an answer of it (``ClusterSnapshot.has``);
absence is read only from complete (untruncated) listings. Autoscaler scale-up is not told apart
from any other join: Ray's node table does not say who started a node; ``node_joined`` carries the
node type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from raylens.ray.lifecycle import NODE_REMOVAL_REASONS, VANISHED
from raylens.ray.serve_status import ServeSnapshot
from raylens.ray.snapshot import ClusterSnapshot, JobSnapshot, NodeSnapshot

EVENT_KINDS = (
    "cluster_session_started",
    "node_joined",
    "node_left",
    "node_died",
    "node_preempted",
    "node_scaled_down",
    "job_started",
    "job_succeeded",
    "job_failed",
    "job_stopped",
    "serve_application_status",
    "serve_deployment_status",
)
# Causes each kind is known to carry (label values, lower case). The counter starts every one of
# them at 0 for each session, so the first event of a kind is an increase PromQL can see.
KNOWN_CAUSES: dict[str, tuple[str, ...]] = {
    "cluster_session_started": ("",),
    "node_joined": ("",),
    "node_left": ("expected_termination",),
    "node_died": ("unexpected_termination", "unspecified", "vanished"),
    "node_preempted": ("preempted",),
    "node_scaled_down": ("idle_terminated",),
    "job_started": ("",),
    "job_succeeded": ("",),
    "job_failed": (
        "",
        "job_entrypoint_command_error",
        "job_entrypoint_command_start_error",
        "job_supervisor_actor_died",
        "job_supervisor_actor_start_failure",
        "job_supervisor_actor_start_timeout",
        "job_supervisor_actor_unschedulable",
    ),
    "job_stopped": ("",),
    "serve_application_status": ("deploying", "deploy_failed", "running", "unhealthy", "deleting"),
    "serve_deployment_status": ("updating", "healthy", "unhealthy", "deploy_failed", "upscaling", "downscaling"),
}
_NODE_DEATH_KINDS = {
    "EXPECTED_TERMINATION": "node_left",
    "AUTOSCALER_DRAIN_PREEMPTED": "node_preempted",
    "AUTOSCALER_DRAIN_IDLE": "node_scaled_down",
}
_JOB_FINAL_KINDS = {"SUCCEEDED": "job_succeeded", "FAILED": "job_failed", "STOPPED": "job_stopped"}
_WARNING_KINDS = {"node_died", "node_preempted", "job_failed"}
_SERVE_BAD_STATUSES = {"DEPLOY_FAILED", "UNHEALTHY"}
# Label values stay a bounded, known alphabet (Ray's enum names); anything else becomes "other".
_CAUSE = re.compile(r"^[A-Za-z_]{1,64}$")


@dataclass(frozen=True)
class Event:
    id: str
    kind: str
    time: float
    """When it happened (Ray's own start/end time where it has one, else when it was observed)."""
    session: str
    subject: str
    """What changed, for people: ``node 10.0.0.5``, ``job raysubmit_x``, ``serve app/deployment``."""
    cause: str = ""
    severity: str = "info"
    message: str = ""
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def cause_label(self) -> str:
        """``cause`` as a bounded label value."""
        if not self.cause:
            return ""
        return self.cause.lower() if _CAUSE.match(self.cause) else "other"


def _event(kind: str, time: float, session: str, key: str, subject: str, cause: str, message: str, **details: Any):
    severity = "warning" if kind in _WARNING_KINDS else "info"
    clean = {name: value for name, value in details.items() if value not in (None, "")}
    return Event(f"{session}/{key}", kind, time, session, subject, cause, severity, message, MappingProxyType(clean))


def derive_events(previous: ClusterSnapshot | None, current: ClusterSnapshot) -> list[Event]:
    """What happened between ``previous`` and ``current``; ``[]`` without a previous snapshot
    (what already existed when raylens first looked is history, not news)."""
    if previous is None:
        return []
    events: list[Event] = []
    session = current.session_name
    # An empty name means the version call failed this round, not that the cluster changed.
    same_session = previous.session_name == session or not session or not previous.session_name
    if not same_session:
        events.append(
            _event(
                "cluster_session_started",
                _session_start(current),
                session,
                "session/started",
                f"session {session}",
                "",
                f"Ray session {session} started (previous: {previous.session_name or 'unknown'})",
                previous_session=previous.session_name,
                ray_version=current.ray_version,
            )
        )
    if current.has("nodes") and previous.has("nodes"):
        events += _node_events(previous if same_session else None, current)
    if current.has("jobs") and previous.has("jobs"):
        events += _job_events(previous if same_session else None, current)
    return sorted(events, key=lambda event: (event.time, event.id))


def _session_start(snapshot: ClusterSnapshot) -> float:
    heads = [node.start_time for node in snapshot.nodes if node.is_head and node.start_time is not None]
    return min(heads) if heads else snapshot.taken_at


def _node_details(node: NodeSnapshot) -> dict[str, Any]:
    return {
        "node_id": node.node_id,
        "ip": node.ip,
        "node_type": node.node_type,
        "market": node.market,
        "instance_type": node.instance_type,
        "is_head": node.is_head,
    }


def _node_events(previous: ClusterSnapshot | None, current: ClusterSnapshot) -> list[Event]:
    session = current.session_name
    before = {node.node_id: node for node in previous.nodes} if previous is not None else {}
    events = []
    for node in current.nodes:
        old = before.get(node.node_id)
        subject = f"node {node.ip} ({node.node_id[:8]})"
        if old is None and node.start_time is not None:
            events.append(
                _event(
                    "node_joined",
                    node.start_time,
                    session,
                    f"node/{node.node_id}/joined",
                    subject,
                    "",
                    f"{'head ' if node.is_head else ''}node {node.ip} joined"
                    + (f" as {node.node_type}" if node.node_type else ""),
                    **_node_details(node),
                )
            )
        if not node.alive and (old is None or old.alive):
            events.append(_node_death(node, session, subject, node.death_reason or "UNSPECIFIED"))
    status = current.sources.get("nodes")
    if previous is not None and status is not None and status.truncated == 0:
        listed = {node.node_id for node in current.nodes}
        for node_id, old in before.items():
            if node_id not in listed and old.alive:
                subject = f"node {old.ip} ({node_id[:8]})"
                events.append(_node_death(old, session, subject, VANISHED, observed=current.taken_at))
    return events


def _node_death(node: NodeSnapshot, session: str, subject: str, reason: str, observed: float | None = None) -> Event:
    kind = _NODE_DEATH_KINDS.get(reason, "node_died")
    cause = NODE_REMOVAL_REASONS.get(reason, reason)
    when = observed if observed is not None else (node.end_time or node.start_time or 0.0)
    why = node.state_message or (
        "gone from Ray's node table while alive" if reason == VANISHED else reason.lower().replace("_", " ")
    )
    return _event(
        kind,
        when,
        session,
        f"node/{node.node_id}/died",
        subject,
        cause,
        f"node {node.ip} {kind.removeprefix('node_').replace('_', ' ')}: {why}",
        **_node_details(node),
        state_message=node.state_message,
    )


def _job_details(job: JobSnapshot) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "submission_id": job.submission_id,
        "type": job.type,
        "status": job.status,
        "entrypoint": job.entrypoint[:200],
        **{f"metadata_{key}": value for key, value in sorted(job.metadata.items())[:10]},
    }


def _job_events(previous: ClusterSnapshot | None, current: ClusterSnapshot) -> list[Event]:
    session = current.session_name
    before = {job.key: job for job in previous.jobs} if previous is not None else {}
    events = []
    for job in current.jobs:
        old = before.get(job.key)
        subject = f"job {job.key}"
        started = job.status == "RUNNING" or (job.finished and job.start_time is not None and job.job_id)
        was_started = old is not None and (old.status == "RUNNING" or old.finished)
        if started and not was_started:
            events.append(
                _event(
                    "job_started",
                    job.start_time or current.taken_at,
                    session,
                    f"job/{job.key}/started",
                    subject,
                    "",
                    f"job {job.key} started: {job.entrypoint[:120]}",
                    **_job_details(job),
                )
            )
        if job.finished and (old is None or not old.finished):
            kind = _JOB_FINAL_KINDS[job.status]
            tail = f" ({job.error_type})" if job.error_type else ""
            events.append(
                _event(
                    kind,
                    job.end_time or current.taken_at,
                    session,
                    f"job/{job.key}/{job.status.lower()}",
                    subject,
                    job.error_type if job.status == "FAILED" else "",
                    f"job {job.key} {job.status.lower()}{tail}",
                    **_job_details(job),
                    error_type=job.error_type,
                    driver_exit_code=job.driver_exit_code,
                )
            )
    return events


def derive_serve_events(
    previous: ServeSnapshot | None, current: ServeSnapshot, session: str, observed_at: float
) -> list[Event]:
    """Status changes of Serve applications and deployments (new ones count as changes from
    ``NONE``; deleted ones are not events: their last status was ``DELETING``)."""
    if previous is None:
        return []
    events = []
    for name, app in current.applications.items():
        old = previous.applications.get(name)
        old_status = old.status if old is not None else "NONE"
        deployed = f"{app.last_deployed_time:.3f}" if app.last_deployed_time is not None else "-"
        if app.status != old_status:
            events.append(
                Event(
                    f"{session}/serve/{name}/{old_status}->{app.status}/{deployed}",
                    "serve_application_status",
                    observed_at,
                    session,
                    f"serve {name}",
                    app.status,
                    "warning" if app.status in _SERVE_BAD_STATUSES else "info",
                    f"Serve application {name}: {old_status} -> {app.status}"
                    + (f": {app.message[:200]}" if app.message else ""),
                    MappingProxyType({"application": name, "status": app.status, "previous_status": old_status}),
                )
            )
        old_deployments = old.deployments if old is not None else {}
        for deployment, status in app.deployments.items():
            previous_status = old_deployments[deployment].status if deployment in old_deployments else "NONE"
            if status.status == previous_status:
                continue
            events.append(
                Event(
                    f"{session}/serve/{name}/{deployment}/{previous_status}->{status.status}/{deployed}",
                    "serve_deployment_status",
                    observed_at,
                    session,
                    f"serve {name}/{deployment}",
                    status.status,
                    "warning" if status.status in _SERVE_BAD_STATUSES else "info",
                    f"Serve deployment {name}/{deployment}: {previous_status} -> {status.status}"
                    + (f" ({status.trigger})" if status.trigger else ""),
                    MappingProxyType(
                        {
                            "application": name,
                            "deployment": deployment,
                            "status": status.status,
                            "previous_status": previous_status,
                            "trigger": status.trigger,
                        }
                    ),
                )
            )
    return events
