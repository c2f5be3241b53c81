"""The ``recommendations`` section: thresholds of the savings recommendations (docs/reports.md).

The same values drive ``raylens recommend`` and the exporter's ``recommend`` collector, so the
command line and the alerts always agree on what is worth changing.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from raylens.config.alerts import Duration
from raylens.config.base import _Section

RecommendationKind = Literal["idle_gpu", "rightsizing", "spot", "auto_termination", "serve_overprovisioned"]
RECOMMENDATION_KINDS: tuple[RecommendationKind, ...] = (
    "idle_gpu",
    "rightsizing",
    "spot",
    "auto_termination",
    "serve_overprovisioned",
)
WholePercent = Annotated[float, Field(ge=0, le=100)]


class RecommendationsConfig(_Section):
    kinds: tuple[RecommendationKind, ...] = Field(
        RECOMMENDATION_KINDS, description="Kinds to look for; drop one you act on elsewhere.", min_length=1
    )
    top_per_kind: int = Field(
        10,
        ge=1,
        le=100,
        description="Recommendations exported per kind, largest savings first: bounds the metric's series.",
    )
    refresh_seconds: float = Field(
        300.0,
        ge=10,
        description="How often the recommend collector re-reads Prometheus; results are served from memory "
        "between refreshes, so scrapes stay fast.",
    )
    min_savings_dollars_per_month: float = Field(
        1.0, ge=0, description="Recommendations saving less than this (US dollars a month) are not shown."
    )
    idle_gpu_utilisation_percent: WholePercent = Field(
        10,
        description="Held GPUs busier than this on average over `idle_gpu_window` are not idle. Raise it for "
        "jobs that keep GPUs barely busy on purpose.",
    )
    idle_gpu_window: Duration = Field("6h", description="GPUs must have been held, and idle, over this whole window.")
    rightsizing_window: Duration = Field(
        "7d", description="Look-back of right-sizing; nodes younger than it are left out. A week sees weekly peaks."
    )
    rightsizing_quantile_percent: float = Field(
        95, ge=50, le=100, description="Quantile of held CPU, GPU and memory over the window that must fit."
    )
    rightsizing_headroom_percent: WholePercent = Field(
        20, description="Margin above that quantile the smaller instance must still offer."
    )
    spot_window: Duration = Field(
        "24h", description="An on-demand node must have run only interruption-tolerant work for this long."
    )
    spot_tolerant_workloads: tuple[str, ...] = Field(
        ("data", "tasks", "train"),
        description="Workload types (job metadata `workload`, or inferred) that survive losing a node: Ray Data "
        "and plain tasks retry, Train resumes from checkpoints. Remove `train` if your runs do not checkpoint; add "
        "your own metadata values.",
    )
    auto_termination_idle_for: Duration = Field(
        "2h",
        description="A cluster on which no job has held anything for this long is a termination candidate.",
    )
    auto_termination_lookback: Duration = Field(
        "7d",
        description="How far back to look for the last busy moment; a cluster idle for longer shows this much.",
    )
    serve_window: Duration = Field("24h", description="Look-back of Serve replica demand.")
    serve_target_ongoing_requests: float = Field(
        2.0,
        gt=0,
        description="Ongoing requests one replica should handle (Ray Serve's `target_ongoing_requests`, default "
        "2). Set it to your deployments' value.",
    )
    serve_min_replicas: int = Field(1, ge=0, description="Replicas never recommended away (availability floor).")

    @field_validator("kinds")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("expected each kind at most once")
        return value

    @field_validator("spot_tolerant_workloads")
    @classmethod
    def _workload_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import re

        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_.:-]+", name):
                raise ValueError(f"expected workload names of letters, digits, _ . : -; got {name!r}")
        return value
