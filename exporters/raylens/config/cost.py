"""The ``cost`` section and the node matching its pricing rules and volumes use."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from raylens.config.base import _Section
from raylens.config.limits import MAX_NODE_RULES, MAX_PRICING_FILES, MAX_VOLUMES, at_most


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
    _pricing_files = field_validator("pricing_files", mode="before")(at_most(MAX_PRICING_FILES, "pricing files"))
    _node_rules = field_validator("node_rules", mode="before")(at_most(MAX_NODE_RULES, "node rules"))
    _volumes = field_validator("volumes", mode="before")(at_most(MAX_VOLUMES, "volumes"))
