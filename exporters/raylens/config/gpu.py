"""The ``gpu`` section."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from raylens.config.base import _Section


class GpuConfig(_Section):
    """The ``gpu`` collector: NVML readings, and GPU processes attributed to Ray (docs/gpu.md)."""

    max_process_series: int = Field(
        200,
        ge=0,
        description="Most raylens_gpu_process_memory_used_bytes series per scrape; the biggest holders are "
        "kept and the rest counted in raylens_gpu_process_series_dropped_total. Raise it on nodes that "
        "run many small GPU processes (MPS).",
    )
    attribution_cache_seconds: float = Field(
        10.0,
        ge=0,
        description="How long a process's Ray job/actor/task labels (and the Ray state API's answer) are "
        "reused. Lower it to see short tasks; raise it to ask the dashboard less often.",
    )
    proc_root: Path = Field(
        Path("/proc"),
        description="Where the host's /proc is; NVML reports host PIDs. In a container, mount the host's "
        "/proc (e.g. at /host/proc) or share the host PID namespace.",
    )
    ray_dashboard_url: str | None = Field(
        None,
        description="Ray dashboard URL (e.g. http://127.0.0.1:8265) for the state API, which adds actor ids "
        "and job ids of pre-started workers. Needs node.ray_node_id; unset: /proc only.",
    )
    ray_state_timeout_seconds: float = Field(
        2.0, gt=0, le=30, description="Deadline of one state API request (made in the background, never in a scrape)."
    )
    nvml_retry_initial_seconds: float = Field(
        1.0,
        gt=0,
        description="First wait before NVML is tried again after it failed; doubles on each failure.",
    )
    nvml_retry_max_seconds: float = Field(
        300.0, gt=0, description="Longest wait between NVML attempts (no library, no GPU, driver error)."
    )

    @field_validator("ray_dashboard_url")
    @classmethod
    def _dashboard_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL, e.g. 'http://127.0.0.1:8265'")
        return value.rstrip("/") if value is not None else None
