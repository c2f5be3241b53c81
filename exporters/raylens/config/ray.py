"""The ``ray`` section: how the ray collector and ``raylens sd`` reach a cluster."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from raylens.config.base import _Section

RaySourceName = Literal["version", "nodes", "node_details", "resource_usage", "jobs", "actors", "tasks", "serve"]
# How often each source is read by default: cheap, fast-changing state often; the task listing,
# which costs the dashboard about 2 s per 10,000 task events, least often (docs/ray.md).
DEFAULT_SOURCE_INTERVALS: dict[str, float] = {
    "version": 60.0,
    "nodes": 5.0,
    "node_details": 15.0,
    "resource_usage": 5.0,
    "jobs": 5.0,
    "actors": 10.0,
    "tasks": 15.0,
    "serve": 30.0,
}


class SourceSchedule(_Section):
    """When and how long one Ray state source is read in the background."""

    interval_seconds: float | None = Field(
        None, ge=0.5, le=3600, description="Seconds between reads; unset: the source's default."
    )
    timeout_seconds: float | None = Field(
        None, gt=0, le=300, description="Deadline of one read; unset: ray.timeout_seconds."
    )


_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Labels raylens_ray_job_info carries itself; metadata keys must not shadow them.
RAY_JOB_INFO_LABELS = ("SessionName", "job_id", "submission_id", "type", "entrypoint")


class RayConfig(_Section):
    """How the ``ray`` collector and ``raylens sd`` reach a Ray cluster and shape its series."""

    address: str = Field(
        "auto",
        description="Cluster to read: `auto` (RAY_ADDRESS, else the cluster started on this machine), a GCS "
        "address `host:6379`, or the dashboard URL `http://host:8265`. A URL needs no Ray install to "
        "resolve; the others ask the GCS once for the dashboard URL.",
    )
    temp_dir: Path | None = Field(
        None, description="Ray's --temp-dir, where `auto` looks for the local cluster; unset: /tmp/ray."
    )
    timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=120,
        description="Deadline of one read of one source (reads run in the background, never inside a "
        "scrape). Raise it for clusters with tens of thousands of tasks; see ray.sources for per-source values.",
    )
    sources: dict[RaySourceName, SourceSchedule] = Field(
        default_factory=dict,
        description="Per-source interval and timeout, e.g. {tasks: {interval_seconds: 60}}. Defaults: version "
        "60 s, nodes 5 s, node_details 15 s, resource_usage 5 s, jobs 5 s, actors 10 s, tasks 15 s, serve 30 s.",
    )
    refresh_jitter_ratio: float = Field(
        0.1,
        ge=0,
        le=0.5,
        description="Each interval is stretched or shrunk at random by up to this fraction, so sources and "
        "many exporters do not hit the dashboard in step.",
    )
    backoff_max_seconds: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="After failures a source waits its interval doubled per consecutive failure, at most this.",
    )
    max_state_age_seconds: float = Field(
        300.0,
        ge=10,
        description="An answer older than this (its source kept failing) is no longer served: its series "
        "leave the exposition instead of showing a stale cluster. Cost accounting waits for fresh answers.",
    )
    max_response_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        description="Largest answer read from the dashboard, per source; a larger one fails that read. "
        "Answers are parsed row by row, so memory stays well below this.",
    )
    cache_seconds: float = Field(
        5.0,
        ge=0,
        description="One-shot commands (`raylens sd`) reuse an answer this long; the exporter reads in "
        "the background on the ray.sources schedule instead.",
    )
    max_jobs: int = Field(
        10000, ge=1, description="Rows read from the Job API's job list (it has no limit of its own)."
    )
    max_actors: int = Field(
        10000,
        ge=0,
        description="Rows asked from the actor listing; 0 skips actors. Ray's API server refuses more than "
        "RAY_MAX_LIMIT_FROM_API_SERVER (10000).",
    )
    max_tasks: int = Field(
        10000,
        ge=0,
        description="Task attempts asked from the task listing (GCS task events, itself bounded); 0 skips "
        "tasks. Lower it when the listing is slow.",
    )
    serve_routes: bool = Field(
        True,
        description="Read Serve's applications and HTTP ingress (`GET /api/serve/applications/`, source `serve`) "
        "for the Serve probe targets of `raylens sd` and the exporter's /sd/serve; false skips the call.",
    )
    object_store: bool = Field(
        True,
        description="Export object-store stats per node, from the dashboard's node summary (which the "
        "dashboard refreshes from every raylet each 15 s); no route to the raylets is needed.",
    )
    top_names: int = Field(
        20,
        ge=1,
        le=1000,
        description="Task function and actor class names kept as label values, most frequent first; "
        "the rest are summed under `other`. Bounds cardinality.",
    )
    job_attribution_labels: tuple[str, ...] = Field(
        ("user", "project", "team", "workload"),
        description="Job metadata keys copied as labels onto raylens_ray_job_info (cost attribution). "
        "Each must be a valid label name; missing keys give empty values.",
    )
    entrypoint_max_length: int = Field(
        120, ge=0, description="Characters of a job's entrypoint kept in raylens_ray_job_info."
    )
    finished_grace_seconds: float = Field(
        600.0,
        ge=0,
        description="How long a finished job (from its end time) and a dead node keep their own series "
        "before leaving the exposition. Counters are not affected.",
    )
    node_type_labels: tuple[str, ...] = Field(
        ("ray.io/node-group",),
        description="Node labels read, in order, for a node's type; the autoscaler's node type, then "
        "`head`/`worker`, when none is set.",
    )
    market_labels: tuple[str, ...] = Field(
        ("ray.io/market-type",),
        description="Node labels read, in order, for the capacity market (spot, on-demand and cloud "
        "spellings are understood); set with `ray start --labels` or RAY_NODE_MARKET_TYPE.",
    )
    market_by_node_type: dict[str, Literal["on_demand", "spot"]] = Field(
        default_factory=dict,
        description="Market per node type, for clusters whose nodes carry no market label.",
    )
    default_market: Literal["on_demand", "spot"] | None = Field(
        None, description="Market of nodes nothing else classifies; unset leaves the label empty."
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.strip()
        if value == "auto" or value.startswith(("http://", "https://")):
            return value.rstrip("/")
        host, sep, port = value.rpartition(":")
        if sep and host and port.isdigit():
            return value
        raise ValueError("expected `auto`, a GCS address host:port, or a dashboard URL http://host:port")

    @field_validator("job_attribution_labels")
    @classmethod
    def _label_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _LABEL_NAME.match(name) or name.startswith("__"):
                raise ValueError(f"expected label names ([a-zA-Z_][a-zA-Z0-9_]*), got {name!r}")
            if name in RAY_JOB_INFO_LABELS:
                raise ValueError(f"{name!r} is already a label of raylens_ray_job_info")
        if len(set(value)) != len(value):
            raise ValueError("expected each metadata key at most once")
        return value

    def source_interval(self, source: str) -> float:
        schedule = self.sources.get(source)  # type: ignore[call-overload]
        if schedule is not None and schedule.interval_seconds is not None:
            return schedule.interval_seconds
        return DEFAULT_SOURCE_INTERVALS[source]

    def source_timeout(self, source: str) -> float:
        schedule = self.sources.get(source)  # type: ignore[call-overload]
        if schedule is not None and schedule.timeout_seconds is not None:
            return schedule.timeout_seconds
        return self.timeout_seconds
