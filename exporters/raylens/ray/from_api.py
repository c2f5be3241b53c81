"""Ray's dashboard JSON rows turned into snapshot records (``raylens.ray.snapshot``).

The parsers (``*_from_api``) take the JSON rows of the dashboard's HTTP APIs exactly as Ray 2.60
returns them (``/api/v0/nodes?detail=1``, ``/api/jobs/``, ``/api/v0/actors?detail=1``,
``/api/v0/tasks?detail=1``, ``/nodes?view=summary``, ``/api/serve/applications/``) and tolerate
missing fields. They apply the snapshot's conventions on the way in: epoch seconds, read-only
mappings, Ray's implicit ``node:`` resources dropped, user text under the label-value policy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from raylens.labels import (
    RAY_ACTOR_CLASS,
    RAY_ENTRYPOINT,
    RAY_JOB_ID,
    RAY_JOB_METADATA,
    RAY_NODE,
    RAY_TASK_NAME,
    label_value,
)
from raylens.ray.snapshot import (
    ActorSnapshot,
    JobSnapshot,
    NodeSnapshot,
    ObjectStoreStats,
    ServeApplication,
    ServeState,
    TaskSnapshot,
    frozen_mapping,
)

# Node death reasons (gcs.proto NodeDeathInfo.Reason), recovered from the state API's
# ``state_message`` (ray.dashboard.utils.compose_state_message writes these prefixes).
_NODE_DEATH_PREFIXES = (
    ("Expected termination", "EXPECTED_TERMINATION"),
    ("Unexpected termination", "UNEXPECTED_TERMINATION"),
    ("Terminated due to preemption", "AUTOSCALER_DRAIN_PREEMPTED"),
    ("Terminated due to idle", "AUTOSCALER_DRAIN_IDLE"),
)
_WORKER_EXIT_TYPE = re.compile(r"[Ww]orker exit type: ([A-Z_]+)")
# ActorDeathCause's other contexts (common.proto), named the way Ray names the matching ErrorType.
_ACTOR_DEATH_CONTEXTS = {
    "creation_task_failure_context": "ACTOR_CREATION_FAILED",
    "runtime_env_failed_context": "RUNTIME_ENV_SETUP_FAILED",
    "actor_unschedulable_context": "ACTOR_UNSCHEDULABLE_ERROR",
    "oom_context": "OUT_OF_MEMORY",
}

# Entrypoints are command lines; enough is kept for any sensible ray.entrypoint_max_length.
ENTRYPOINT_KEPT_MAX = 4096


def _seconds(milliseconds: Any) -> float | None:
    """Ray's epoch milliseconds (number or string; 0 means unknown) as epoch seconds."""
    try:
        value = float(milliseconds)
    except (TypeError, ValueError):
        return None
    return value / 1000.0 if value > 0 else None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def clean_resources(resources: Mapping[str, Any] | None) -> Mapping[str, float]:
    """Ray resource map without the implicit per-node markers, values as floats."""
    cleaned = {}
    for name, amount in (resources or {}).items():
        if name.startswith("node:"):
            continue
        try:
            cleaned[name] = float(amount)
        except (TypeError, ValueError):
            continue
    return frozen_mapping(cleaned)


def node_death_reason(state: str, state_message: str | None) -> str:
    if state != "DEAD":
        return ""
    for prefix, reason in _NODE_DEATH_PREFIXES:
        if (state_message or "").startswith(prefix):
            return reason
    return "UNSPECIFIED"


def node_from_api(row: Mapping[str, Any], **extra: Any) -> NodeSnapshot:
    """A row of ``/api/v0/nodes?detail=1``; ``extra`` sets fields from other sources."""
    state = str(row.get("state") or "")
    message = row.get("state_message") or ""
    values: dict[str, Any] = {
        "node_id": str(row.get("node_id") or ""),
        "ip": str(row.get("node_ip") or ""),
        "is_head": bool(row.get("is_head_node")),
        "state": state,
        "node_name": label_value(row.get("node_name") or "", RAY_NODE),
        "labels": frozen_mapping(
            {label_value(k, RAY_NODE): label_value(v, RAY_NODE) for k, v in (row.get("labels") or {}).items()}
        ),
        "resources_total": clean_resources(row.get("resources_total")),
        "start_time": _seconds(row.get("start_time_ms")),
        "end_time": _seconds(row.get("end_time_ms")),
        "death_reason": node_death_reason(state, message),
        "state_message": str(message),
    }
    values.update(extra)
    return NodeSnapshot(**values)


def object_store_from_dashboard(stats: Mapping[str, Any]) -> ObjectStoreStats:
    """A raylet's ``storeStats`` as the dashboard's node summary gives it (protobuf JSON: camelCase
    names, 64-bit integers as strings, zero values left out)."""

    def number(key: str) -> float:
        try:
            return float(stats.get(key) or 0)
        except (TypeError, ValueError):
            return 0.0

    return ObjectStoreStats(
        used_bytes=number("objectStoreBytesUsed"),
        # Ray names the capacity "avail" (object_manager.cc); the dashboard reads it the same way.
        capacity_bytes=number("objectStoreBytesAvail"),
        primary_copy_bytes=number("objectStoreBytesPrimaryCopy"),
        fallback_bytes=number("objectStoreBytesFallback"),
        local_objects=int(number("numLocalObjects")),
        primary_copies=int(number("numObjectStorePrimaryCopies")),
        pulls_queued=int(number("objectPullsQueued")),
        spilled_bytes_total=number("spilledBytesTotal"),
        spilled_objects_total=number("spilledObjectsTotal"),
        spill_seconds_total=number("spillTimeTotalS"),
        restored_bytes_total=number("restoredBytesTotal"),
        restored_objects_total=number("restoredObjectsTotal"),
        restore_seconds_total=number("restoreTimeTotalS"),
    )


def job_from_api(row: Mapping[str, Any]) -> JobSnapshot:
    """An element of ``GET /api/jobs/`` (``JobDetails``)."""
    metadata = {
        label_value(k, RAY_JOB_METADATA): label_value(v, RAY_JOB_METADATA)
        for k, v in (row.get("metadata") or {}).items()
    }
    job_id, submission_id = row.get("job_id"), row.get("submission_id")
    return JobSnapshot(
        job_id=label_value(job_id, RAY_JOB_ID) if job_id else None,
        submission_id=label_value(submission_id, RAY_JOB_ID) if submission_id else None,
        type=str(row.get("type") or ""),
        status=str(row.get("status") or ""),
        # Kept longer here: the ray collector cuts it to ray.entrypoint_max_length under the same policy.
        entrypoint=label_value(row.get("entrypoint") or "", RAY_ENTRYPOINT, ENTRYPOINT_KEPT_MAX, digest=False),
        metadata=frozen_mapping(metadata),
        start_time=_seconds(row.get("start_time")),
        end_time=_seconds(row.get("end_time")),
        error_type=str(row.get("error_type") or ""),
        driver_node_id=str(row.get("driver_node_id") or ""),
        driver_exit_code=_int_or_none(row.get("driver_exit_code")),
    )


def actor_death(death_cause: Mapping[str, Any] | None) -> tuple[str, str]:
    """(reason, worker exit type) from an actor's ``death_cause``."""
    if not death_cause:
        return "", ""
    context = death_cause.get("actor_died_error_context")
    if isinstance(context, Mapping):
        match = _WORKER_EXIT_TYPE.search(str(context.get("error_message") or ""))
        return str(context.get("reason") or "UNSPECIFIED"), match.group(1) if match else ""
    for key, reason in _ACTOR_DEATH_CONTEXTS.items():
        if key in death_cause:
            return reason, ""
    return "UNSPECIFIED", ""


def actor_from_api(row: Mapping[str, Any]) -> ActorSnapshot:
    """A row of ``/api/v0/actors?detail=1``."""
    reason, exit_type = actor_death(row.get("death_cause"))
    return ActorSnapshot(
        actor_id=str(row.get("actor_id") or ""),
        class_name=label_value(row.get("class_name") or "", RAY_ACTOR_CLASS),
        state=str(row.get("state") or ""),
        job_id=str(row.get("job_id") or ""),
        node_id=str(row.get("node_id") or ""),
        pid=_int_or_none(row.get("pid")) or None,
        name=str(row.get("name") or ""),
        ray_namespace=str(row.get("ray_namespace") or ""),
        is_detached=bool(row.get("is_detached")),
        required_resources=clean_resources(row.get("required_resources")),
        placement_group_id=str(row.get("placement_group_id") or ""),
        num_restarts=_int_or_none(row.get("num_restarts")) or 0,
        death_reason=reason,
        death_exit_type=exit_type,
    )


def task_from_api(row: Mapping[str, Any]) -> TaskSnapshot:
    """A row of ``/api/v0/tasks?detail=1``."""
    return TaskSnapshot(
        task_id=str(row.get("task_id") or ""),
        attempt_number=_int_or_none(row.get("attempt_number")) or 0,
        name=label_value(row.get("name") or "", RAY_TASK_NAME),
        func_or_class_name=label_value(row.get("func_or_class_name") or row.get("name") or "", RAY_TASK_NAME),
        state=str(row.get("state") or ""),
        job_id=str(row.get("job_id") or ""),
        type=str(row.get("type") or ""),
        actor_id=str(row.get("actor_id") or ""),
        node_id=str(row.get("node_id") or ""),
        worker_pid=_int_or_none(row.get("worker_pid")),
        required_resources=clean_resources(row.get("required_resources")),
        start_time=_seconds(row.get("start_time_ms")),
        end_time=_seconds(row.get("end_time_ms")),
        error_type=str(row.get("error_type") or ""),
        placement_group_id=str(row.get("placement_group_id") or ""),
    )


def serve_from_api(body: Mapping[str, Any]) -> ServeState:
    """``GET /api/serve/applications/`` (Ray 2.60): empty maps when Serve is not running."""
    http = body.get("http_options") or {}
    proxies = body.get("proxies") or {}
    applications = body.get("applications") or {}
    return ServeState(
        http_host=str(http.get("host") or ""),
        http_port=_int_or_none(http.get("port")),
        proxy_ips=tuple(
            sorted(
                {
                    str(proxy.get("node_ip"))
                    for proxy in proxies.values()
                    if proxy.get("node_ip") and proxy.get("status", "HEALTHY") == "HEALTHY"
                }
            )
        ),
        applications=tuple(
            ServeApplication(str(name), str(app.get("route_prefix") or ""), str(app.get("status") or ""))
            for name, app in sorted(applications.items())
        ),
    )


def normalise_market(value: str | None) -> str:
    """``spot``/``on_demand`` from the spellings clouds and KubeRay use; ``""`` when unknown."""
    text = (value or "").strip().lower().replace("-", "_").replace(" ", "_")
    if text in {"spot", "preemptible", "preemptable", "low_priority", "lowpriority"}:
        return "spot"
    if text in {"on_demand", "ondemand", "regular", "standard", "reserved", "dedicated"}:
        return "on_demand"
    return ""


def first_label(labels: Mapping[str, str], keys: Iterable[str]) -> str:
    for key in keys:
        value = labels.get(key)
        if value:
            return value
    return ""
