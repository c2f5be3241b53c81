"""The one typed configuration object, read from ``raylens.yaml``, the environment and flags.

Precedence, lowest first: built-in defaults, the YAML file, ``RAYLENS_*`` environment variables,
command-line flags. Every value is validated before anything starts; all problems are reported at
once, each naming where the value came from (file, variable or flag), the field path, the bad value
and what was expected. Nothing is half-applied: either the whole configuration is valid or the
process exits non-zero.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_PORT = 9965
DEFAULT_LISTEN_ADDRESS = f":{DEFAULT_PORT}"

# node_exporter's default exclusions, so both exporters report the same devices and mounts.
DEFAULT_DISK_DEVICE_EXCLUDE = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"
DEFAULT_MOUNT_POINTS_EXCLUDE = (
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
DEFAULT_FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue"
    r"|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$"
)

KNOWN_COLLECTORS = ("node", "ray", "cost", "gpu")
CollectorName = Literal["node", "ray", "cost", "gpu"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"expected a valid regular expression ({error})") from None
    return value


def parse_listen_address(value: str) -> tuple[str, int]:
    """Split ``host:port`` (host may be empty for all interfaces, or a bracketed IPv6 address)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("expected host:port with a port from 1 to 65535, e.g. ':9965' or '127.0.0.1:9965'")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("expected an IPv6 host in brackets, e.g. '[::1]:9965'")
    return host, int(port_text)


class ExporterConfig(_Section):
    listen_address: str = Field(
        DEFAULT_LISTEN_ADDRESS,
        description="Address the exporter listens on, host:port. Empty host means all interfaces; "
        "use 127.0.0.1 when Prometheus runs on the same machine.",
    )
    web_config_file: Path | None = Field(
        None,
        description="Exporter-toolkit web config (TLS, basic auth). Unset: plain HTTP.",
    )
    collectors: tuple[CollectorName, ...] = Field(
        ("node",), description="Collectors to run on each scrape.", min_length=1
    )

    @field_validator("listen_address")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        parse_listen_address(value)
        return value

    @field_validator("collectors")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("expected each collector at most once")
        return value


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Lowest level logged.")
    format: Literal["json", "text"] = Field(
        "json", description="json: one JSON object a line on stderr; text: for humans."
    )


class NodeConfig(_Section):
    hostname: str | None = Field(None, description="Reported in raylens_node_info; default: the host name.")
    ray_node_id: str | None = Field(None, description="Ray node id reported in raylens_node_info, when known.")
    instance_type: str | None = Field(
        None, description="Cloud instance type (e.g. g5.xlarge), reported in raylens_node_info."
    )
    market: Literal["on_demand", "spot"] | None = Field(
        None, description="Capacity market of this node, reported in raylens_node_info."
    )
    disk_device_exclude: str = Field(
        DEFAULT_DISK_DEVICE_EXCLUDE, description="Regex of block devices to skip (partitions, loop, ram)."
    )
    filesystem_mount_points_exclude: str = Field(
        DEFAULT_MOUNT_POINTS_EXCLUDE, description="Regex of mount points to skip."
    )
    filesystem_fs_types_exclude: str = Field(
        DEFAULT_FS_TYPES_EXCLUDE, description="Regex of filesystem types to skip (pseudo filesystems)."
    )
    network_device_exclude: str = Field("^$", description="Regex of network interfaces to skip.")

    _regex = field_validator(
        "disk_device_exclude",
        "filesystem_mount_points_exclude",
        "filesystem_fs_types_exclude",
        "network_device_exclude",
    )(_check_regex)

    @field_validator("hostname", "ray_node_id", "instance_type")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("expected a non-empty string, or leave the field out")
        return value


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

    @field_validator("serve_availability_slo_percent", "serve_latency_slo_percent", mode="before")
    @classmethod
    def _slo_as_text(cls, value: Any) -> Any:
        # YAML reads 99.9 as a float; keep its shortest spelling rather than jsonnet's 99.900000000000006.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return format(value, "g")
        return value


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
        5.0,
        gt=0,
        le=120,
        description="Deadline for one round of calls to Ray. Keep it below Prometheus' scrape_timeout; "
        "raise it for clusters with tens of thousands of tasks.",
    )
    cache_seconds: float = Field(
        5.0,
        ge=0,
        description="Answers of a round are reused this long, so HA Prometheus pairs and short scrape "
        "intervals do not multiply load on the dashboard (Ray records its own metrics every 5 s).",
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
    object_store: bool = Field(
        True,
        description="Ask every alive raylet for object-store stats (gRPC to its node-manager port). Needs "
        "the `ray` extra and network reach to every node; turn off when the exporter cannot reach them.",
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


class NodeMatch(_Section):
    """Which Ray nodes a pricing rule or volume applies to; every given condition must hold."""

    labels: dict[str, str] = Field(
        default_factory=dict, description="Ray node labels; values are shell-style globs ('g5.*')."
    )
    ip: str | None = Field(None, description="Node IP: an address, a CIDR block ('10.1.0.0/16') or a glob.")
    resources: dict[str, float] = Field(
        default_factory=dict, description="Minimum amounts of Ray resources, e.g. {GPU: 8}."
    )
    head: bool | None = Field(None, description="Only the head node (true) or only workers (false).")

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        import ipaddress

        if value is not None and "/" in value:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError("expected an address, a CIDR block such as '10.0.0.0/8', or a glob") from None
        return value


class NodeRule(_Section):
    """Sets what the node's labels cannot tell: instance type, market, region, or resource pricing."""

    match: NodeMatch = NodeMatch()
    instance_type: str | None = None
    market: Literal["on_demand", "spot"] | None = None
    cloud: str | None = None
    region: str | None = None
    resource_price: str | None = Field(None, description="Price by resources with this resource_prices entry.")

    @field_validator("instance_type", "cloud", "region", "resource_price")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("expected a non-empty string, or leave the field out")
        return value


class VolumeConfig(_Section):
    """A disk attached to every node the match selects (each node pays for its own copy)."""

    name: str = Field(min_length=1)
    size_gib: float = Field(gt=0, allow_inf_nan=False)
    usd_per_gib_month: float = Field(ge=0, allow_inf_nan=False, description="Monthly price; a month is 730 h.")
    match: NodeMatch = NodeMatch()


def _check_timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("expected an IANA time zone such as 'UTC' or 'Europe/Berlin'") from None
    return value


class CostConfig(_Section):
    pricing_files: tuple[Path, ...] = Field(
        (),
        description="Pricing files merged, in order, on top of the shipped catalog (format: docs/cost-model.md).",
    )
    budgets_file: Path | None = Field(None, description="budgets.yaml; unset: no budgets published.")
    quotas_file: Path | None = Field(None, description="quotas.yaml; unset: no quotas published.")
    state_dir: Path | None = Field(
        None,
        description="Where spend counters persist across restarts; unset: $XDG_STATE_HOME/raylens/cost "
        "(else ~/.local/state/raylens/cost). Keep it on a disk that survives the exporter's host restarting.",
    )
    timezone: str = Field("UTC", description="IANA time zone in which budget days, weeks and months begin.")
    node_rules: tuple[NodeRule, ...] = Field(
        (),
        description="Rules matching Ray node labels, IPs or resources that set instance type, market, region "
        "or resource pricing; the first match wins and comes before labels and instance metadata.",
    )
    instance_type_labels: tuple[str, ...] = Field(
        ("node.kubernetes.io/instance-type", "raylens.io/instance-type", "instance-type"),
        description="Ray node label keys read, in order, for the instance type.",
    )
    region_labels: tuple[str, ...] = Field(
        ("ray.io/availability-region", "topology.kubernetes.io/region"),
        description="Ray node label keys read, in order, for the region.",
    )
    instance_metadata: bool = Field(
        False,
        description="Ask the cloud's instance-metadata service (AWS IMDSv2, GCP) for the node this exporter "
        "runs on when rules and labels say nothing.",
    )
    instance_metadata_timeout_seconds: float = Field(0.3, gt=0, le=10, description="Per request.")
    default_instance_type: str | None = Field(None, description="For nodes nothing else describes.")
    default_market: Literal["on_demand", "spot"] = Field(
        "on_demand", description="For nodes whose market nothing else says."
    )
    default_region: str | None = Field(None, description="For nodes whose region nothing else says.")
    default_resource_price: str | None = Field(
        None,
        description="resource_prices entry pricing nodes of unknown or uncatalogued instance type "
        "(on-prem); unset: such nodes are exported as unpriced.",
    )
    spot_discount: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Fraction off on-demand for spot nodes whose catalog row has no spot price; unset: such "
        "nodes are unpriced rather than silently charged at on-demand.",
    )
    user_metadata_key: str = Field("user", description="Job metadata key naming the user.")
    project_metadata_key: str = Field("project", description="Job metadata key naming the project.")
    team_metadata_key: str = Field("team", description="Job metadata key naming the team.")
    workload_metadata_key: str = Field(
        "workload", description="Job metadata key naming the workload type; else it is inferred."
    )
    export_node_labels: tuple[str, ...] = Field(
        (), description="Ray node label keys copied onto node cost series as label_<key>."
    )
    egress_usd_per_gib: float = Field(
        0.0, ge=0, description="Price of network egress per GiB sent; 0 turns egress pricing off."
    )
    spill_usd_per_gib_month: float = Field(
        0.0, ge=0, description="Price of object-store spill on disk per GiB-month; 0 turns it off."
    )
    volumes: tuple[VolumeConfig, ...] = Field((), description="Disks attached to nodes, priced per GiB-month.")
    finished_retention_seconds: float = Field(
        3600.0,
        ge=0,
        description="How long ended jobs and nodes keep their series after they end, so Prometheus sees "
        "their final values.",
    )

    _timezone = field_validator("timezone")(_check_timezone)


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
        2.0, gt=0, le=30, description="Deadline of one state API request; it runs inside a scrape."
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


class RaylensConfig(_Section):
    exporter: ExporterConfig = ExporterConfig()
    log: LogConfig = LogConfig()
    node: NodeConfig = NodeConfig()
    ray: RayConfig = RayConfig()
    alerts: AlertsConfig = AlertsConfig()
    cost: CostConfig = CostConfig()
    gpu: GpuConfig = GpuConfig()


# Environment variables for the settings most often changed per machine.
ENVIRONMENT_OVERRIDES: Mapping[str, tuple[str, ...]] = {
    "RAYLENS_WEB_LISTEN_ADDRESS": ("exporter", "listen_address"),
    "RAYLENS_WEB_CONFIG_FILE": ("exporter", "web_config_file"),
    "RAYLENS_COLLECTORS": ("exporter", "collectors"),
    "RAYLENS_LOG_LEVEL": ("log", "level"),
    "RAYLENS_LOG_FORMAT": ("log", "format"),
    "RAYLENS_NODE_INSTANCE_TYPE": ("node", "instance_type"),
    "RAYLENS_NODE_MARKET": ("node", "market"),
    "RAYLENS_RAY_NODE_ID": ("node", "ray_node_id"),
    "RAYLENS_RAY_ADDRESS": ("ray", "address"),
    "RAYLENS_COST_STATE_DIR": ("cost", "state_dir"),
}
LIST_FIELDS = {("exporter", "collectors")}


@dataclass(frozen=True)
class ConfigProblem:
    source: str
    field: str
    value: Any
    expected: str

    def __str__(self) -> str:
        where = f"{self.source}: {self.field}" if self.field else self.source
        if self.value is MISSING:
            return f"{where}: {self.expected}"
        return f"{where}: got {self.value!r}: {self.expected}"


MISSING = object()


class ConfigError(Exception):
    """Raised with every problem found; ``str()`` is the message for the user."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = problems
        count = len(problems)
        lines = [f"invalid configuration ({count} problem{'s' if count != 1 else ''}):"]
        lines += [f"  {problem}" for problem in problems]
        super().__init__("\n".join(lines))


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([ConfigProblem(source, "", MISSING, f"cannot read file: {error.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        position = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError([ConfigProblem(source, "", MISSING, f"not valid YAML{position}: {problem}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(source, "", data, "expected a mapping of sections at the top level")])
    return data


def _set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def _expected(error: Mapping[str, Any], model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    kind = error["type"]
    message: str = error["msg"]
    if kind == "extra_forbidden":
        parent: Any = model
        for key in loc[:-1]:
            field = parent.model_fields.get(key) if isinstance(key, str) else None
            parent = field.annotation if field is not None else None
            if not (isinstance(parent, type) and issubclass(parent, BaseModel)):
                break
        if isinstance(parent, type) and issubclass(parent, BaseModel):
            return "unknown field; expected one of: " + ", ".join(sorted(parent.model_fields))
        return "unknown field"
    for prefix in ("Value error, ", "Input should be "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
            return message if prefix == "Value error, " else "expected " + message
    return "expected: " + message[0].lower() + message[1:]


def problems_from_validation(
    error: ValidationError,
    model: type[BaseModel],
    default_source: str,
    sources: Mapping[tuple[str, ...], str] | None = None,
) -> list[ConfigProblem]:
    """Turn pydantic's errors into problems naming source, field path, value and expectation."""
    problems = []
    for detail in error.errors():
        loc = tuple(detail["loc"])
        source = next(
            (sources[loc[:n]] for n in range(len(loc), 0, -1) if sources and loc[:n] in sources),
            default_source,
        )
        value = detail.get("input", MISSING) if detail["type"] != "missing" else MISSING
        field = ".".join(str(part) for part in loc)
        problems.append(ConfigProblem(source, field, value, _expected(detail, model, loc)))
    return problems


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[tuple[str, ...], tuple[str, Any]] | None = None,
) -> RaylensConfig:
    """Build the validated configuration, or raise ``ConfigError`` listing every problem.

    ``overrides`` maps a field path to ``(source, value)``, e.g. flags:
    ``{("log", "level"): ("flag --log.level", "debug")}``.
    """
    environ = os.environ if environ is None else environ
    file_source = str(path) if path is not None else "defaults"
    data = read_yaml_mapping(path) if path is not None else {}
    sources: dict[tuple[str, ...], str] = {}

    for variable, field_path in ENVIRONMENT_OVERRIDES.items():
        raw = environ.get(variable)
        if raw is None or raw == "":
            continue
        value: Any = raw
        if field_path in LIST_FIELDS:
            value = [item.strip() for item in raw.split(",") if item.strip()]
        _set_path(data, field_path, value)
        sources[field_path] = f"environment variable {variable}"
    for field_path, (source, value) in (overrides or {}).items():
        if value is None:
            continue
        _set_path(data, field_path, value)
        sources[field_path] = source

    try:
        return RaylensConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(problems_from_validation(error, RaylensConfig, file_source, sources)) from None
