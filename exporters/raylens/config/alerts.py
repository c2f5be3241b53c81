"""The ``alerts`` section: what the alerting rules are rendered from."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from raylens.config.base import _Section

Duration = Annotated[str, Field(pattern=r"^([0-9]+(ms|s|m|h|d|w|y))+$")]
Percent = Annotated[int, Field(ge=1, le=1000)]


class AlertsConfig(_Section):
    """Selectors, thresholds and windows the alerting rules are rendered from (`raylens rules build`).

    Thresholds are whole percents so the same numbers read cleanly in PromQL, YAML and jsonnet.
    """

    exporter_selector: str = Field(
        'job="raylens"',
        description="PromQL matchers selecting raylens exporter targets; change when your scrape job has another name.",
    )
    runbook_url_base: str = Field(
        "https://github.com/raylens/raylens/blob/main/docs/runbooks/",
        description="Prefix of every alert's runbook_url; the alert name and `.md` are appended. Point it at "
        "your fork or wiki.",
    )
    exporter_down_for: Duration = Field("5m", description="How long a target must be down before alerting.")
    collector_failing_for: Duration = Field(
        "15m", description="How long a collector must keep failing; shorter pages on blips."
    )
    memory_utilisation_warning_percent: Percent = Field(
        90, description="Node memory in use (1 - MemAvailable/MemTotal) that warns."
    )
    filesystem_used_warning_percent: Percent = Field(
        90, description="Filesystem space in use (non-root view) that warns."
    )
    resource_alert_for: Duration = Field(
        "15m", description="`for` of resource alerts (memory, filesystem, object store)."
    )
    # --- Ray core, GPU and workload performance (rules/groups/ray.py, gpu.py, performance.py) ---
    ray_unreachable_for: Duration = Field(
        "5m",
        description="How long the exporter must fail to reach Ray's dashboard before alerting; raise it if "
        "head-node restarts are routine.",
    )
    node_down_for: Duration = Field(
        "1m",
        description="How long a Ray node must be listed dead before alerting. Keep it below "
        "`ray.finished_grace_seconds`, after which the dead node's series are gone.",
    )
    event_alert_window: Duration = Field(
        "15m",
        description="Look-back of event alerts (OOM kills, node losses and preemptions, Train runs erroring): "
        "how long one event keeps its alert firing. Lengthen it to see events on slower evaluation.",
    )
    object_store_pressure_warning_percent: Percent = Field(
        90,
        description="Object store in use on a node that warns; Ray spills from 80 %, so lower it only for "
        "workloads that should never spill.",
    )
    object_store_spill_warning_mib_per_second: int = Field(
        10,
        ge=1,
        description="Spill rate per node (MiB/s, sustained for `resource_alert_for`) that warns; raise it "
        "for shuffle-heavy Ray Data jobs that spill by design.",
    )
    gpu_hardware_alert_for: Duration = Field(
        "2m",
        description="`for` of GPU health alerts (lost GPU, uncorrectable ECC, row remapping); these states "
        "last until a reset, so this only filters misreads.",
    )
    gpu_xid_window: Duration = Field(
        "1h", description="How long an XID error keeps its alert firing after it was last seen."
    )
    gpu_xid_critical_codes: str = Field(
        "48|62|64|74|79|95|119|120",
        pattern=r"^[0-9]+(\|[0-9]+)*$",
        description="XID codes that page (|-separated): double-bit ECC, firmware halts, row-remap failure, "
        "NVLink, fallen off the bus, uncontained ECC, GSP errors. Every other code warns.",
    )
    gpu_xid_ignored_codes: str = Field(
        "",
        pattern=r"^([0-9]+(\|[0-9]+)*)?$",
        description="XID codes never alerted on (|-separated), e.g. `45` where killing CUDA processes "
        "(preemptive cleanup) is routine.",
    )
    gpu_throttling_for: Duration = Field(
        "15m",
        description="How long a GPU must keep being slowed by heat or a hardware power brake before warning "
        "(power capping at load is normal and never alerts).",
    )
    gpu_idle_percent: Percent = Field(
        5,
        description="GPU utilisation (5-minute mean) below which a GPU held by a Ray job counts as idle; "
        "raise it for jobs that keep a GPU barely busy.",
    )
    gpu_idle_for: Duration = Field(
        "30m",
        description="How long a GPU held by a job must stay idle before warning; lengthen it for "
        "interactive sessions and jobs with long CPU phases.",
    )
    job_running_warning_hours: int = Field(
        24, ge=1, description="Hours a Ray job may stay RUNNING before it is reported as slow or stuck."
    )
    long_running_job_exclude_selector: str = Field(
        'workload="serve"',
        description="PromQL matchers on raylens_ray_job_info naming jobs that run forever by design (Serve "
        'apps, notebooks); they never count as running too long. Use `job_id="none"` to exclude nothing.',
    )
    data_pipeline_stalled_for: Duration = Field(
        "15m",
        description="How long a running Ray Data dataset may output no rows before warning; raise it for "
        "operators that take longer per block (large GPU batches, slow reads).",
    )
    serve_slo_selector: str = Field(
        'application!=""',
        description="PromQL matchers choosing the Serve applications the SLO burn-rate alerts watch, e.g. "
        '`application!~"llm.*"` to leave streaming apps out of the latency SLO.',
    )
    serve_availability_slo_percent: str = Field(
        "99.9",
        pattern=r"^[1-9][0-9]?(\.[0-9]{1,4})?$",
        description="Share of Serve HTTP requests that must not fail with 5xx over 30 days. Text, so "
        "99.9 stays 99.9 in jsonnet.",
    )
    serve_latency_slo_percent: str = Field(
        "99",
        pattern=r"^[1-9][0-9]?(\.[0-9]{1,4})?$",
        description="Share of Serve HTTP requests that must finish within `serve_latency_threshold_ms`.",
    )
    serve_latency_threshold_ms: int = Field(
        1000,
        ge=1,
        description="Latency SLO threshold (end to end at the proxy, ms). Use one of Ray Serve's bucket "
        "bounds (… 500, 1000, 2000, 5000 …), where the histogram is exact.",
    )
    # --- Serve uptime from the blackbox exporter's probes (rules/groups/uptime.py) ---
    serve_probe_selector: str = Field(
        'job="serve-probe"',
        description="PromQL matchers selecting the blackbox probes of Serve routes (Prometheus' serve-probe job); "
        "change when your scrape job has another name.",
    )
    serve_probe_down_for: Duration = Field(
        "2m",
        description="How long every probe of a Serve route must fail before it is down; at a 15 s scrape that is "
        "8 failures in a row, so single slow answers never page.",
    )
    serve_uptime_slo_percent: str = Field(
        "99.5",
        pattern=r"^[1-9][0-9]?(\.[0-9]{1,4})?$",
        description="Share of probes over 30 days that must succeed (the uptime SLA of Serve routes). Text, so "
        "99.5 stays 99.5 in jsonnet.",
    )
    serve_uptime_for: Duration = Field(
        "1h", description="How long a route must stay below its uptime SLO (30 days and last day) before warning."
    )
    # --- Cost, budgets, quotas and optimisation (rules/groups/cost.py, rules/budgets.py) ---
    budget_warning_percent: Percent = Field(
        80,
        description="Budget thresholds (budgets.yaml `thresholds_percent`) from this percent up alert as "
        "warning (the team's channel); lower ones are info (dashboards only). Lower it to hear of spend earlier.",
    )
    budget_critical_percent: Percent = Field(
        100,
        description="Budget thresholds from this percent up are critical (the team's channel and on-call). "
        "Raise it (e.g. 120) where overspending a budget should not wake anyone.",
    )
    budget_threshold_for: Duration = Field(
        "5m",
        description="`for` of budget threshold alerts. Spend only grows within a period, so a crossing stays "
        "crossed; this only rides out a glitch in the exporter's figures.",
    )
    budget_projection_for: Duration = Field(
        "1h",
        description="How long the period-end projection (spend so far + the last hour's rate times the time left) "
        "must stay above the amount; lengthen it where short bursts of spend are normal.",
    )
    cost_anomaly_percent: Percent = Field(
        50,
        description="Rise of a project's spend rate (last hour) over its trailing 7-day average that warns, "
        "in percent; raise it for bursty projects.",
    )
    cost_anomaly_for: Duration = Field(
        "30m", description="How long the rise must last; shorter catches runaways sooner but sees more bursts."
    )
    cost_alert_min_dollars_per_hour: int = Field(
        5,
        ge=0,
        description="Spend rates (US dollars per hour) below which cost anomalies and idle clusters never alert: "
        "a 50 % rise on cents is noise. Raise it for large fleets.",
    )
    cluster_idle_percent: Percent = Field(
        90,
        description="Share of a cluster's cost that pays for resources nothing holds (idle) above which the "
        'cluster is a scale-down candidate; the alert carries `remediation="scale-down"`.',
    )
    cluster_idle_for: Duration = Field(
        "1h",
        description="How long a cluster must stay that idle; lengthen it for interactive clusters that sit "
        "idle between sessions on purpose.",
    )
    node_overprovisioned_percent: Percent = Field(
        25,
        description="A node whose GPUs (or CPUs, on nodes without GPUs) were never more than this percent held "
        "by tasks and actors over `node_overprovisioned_window` is reported as over-provisioned.",
    )
    node_overprovisioned_window: Duration = Field(
        "6h",
        description="Look-back for over-provisioned nodes: their peak holding over it counts, and younger nodes "
        "are left out. Use a day for workloads with a daily cycle.",
    )

    # --- Savings recommendations (rules/groups/recommendations.py; thresholds: the recommendations section) ---
    recommendation_min_dollars_per_month: int = Field(
        100,
        ge=0,
        description="Recommendations saving less than this (US dollars a month) stay on the dashboard's Savings "
        "row and never alert. Raise it for large fleets.",
    )
    recommendation_for: Duration = Field(
        "1h",
        description="How long a recommendation must stand before it alerts; its evidence already covers its own "
        "window (recommendations.*_window), so this only rides out refreshes.",
    )

    @field_validator(
        "serve_availability_slo_percent", "serve_latency_slo_percent", "serve_uptime_slo_percent", mode="before"
    )
    @classmethod
    def _slo_as_text(cls, value: Any) -> Any:
        # YAML reads 99.9 as a float; keep its shortest spelling rather than jsonnet's 99.900000000000006.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return format(value, "g")
        return value
