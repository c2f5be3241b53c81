"""The ``exporter``, ``log`` and ``node`` sections."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from raylens.config.base import (
    DEFAULT_DISK_DEVICE_EXCLUDE,
    DEFAULT_FS_TYPES_EXCLUDE,
    DEFAULT_LISTEN_ADDRESS,
    DEFAULT_MOUNT_POINTS_EXCLUDE,
    CollectorName,
    _check_regex,
    _Section,
    parse_listen_address,
)

ExporterRole = Literal["node", "cluster", "all"]
# What each role runs: per node, what the machine itself tells (no Ray API calls); per cluster, what
# only Ray's dashboard tells (once per cluster, on the head or one replica).
ROLE_COLLECTORS: dict[str, tuple[CollectorName, ...]] = {
    "node": ("node", "gpu"),
    "cluster": ("ray", "cost"),
    "all": ("node", "gpu", "ray", "cost"),
}


# Where the NVIDIA driver (or the container toolkit, for a container given GPUs) exposes its control
# device. Without it NVML has nothing to read, and a gpu collector would only report failures.
NVIDIA_CONTROL_DEVICE = Path("/dev/nvidiactl")


def role_default_collectors(role: str) -> tuple[CollectorName, ...]:
    """The role's collectors, without gpu where this machine shows no NVIDIA device (a CPU node, or a
    sidecar that was given no GPU); ``--collectors=node,gpu`` still asks for it explicitly."""
    collectors = ROLE_COLLECTORS[role]
    if "gpu" in collectors and not NVIDIA_CONTROL_DEVICE.exists():
        collectors = tuple(name for name in collectors if name != "gpu")
    return collectors


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
    role: ExporterRole | None = Field(
        None,
        description="`node`: one exporter per node, collectors node and gpu, no Ray API calls; `cluster`: one per "
        "cluster (head or one replica), collectors ray and cost; `all`: both in one process (a single-node "
        "cluster). gpu runs only where /dev/nvidiactl exists unless `collectors` names it. Explicit `collectors` "
        "must belong to the role. Unset: `collectors` alone decides.",
    )
    collectors: tuple[CollectorName, ...] = Field(
        ("node",),
        description="Collectors to run on each scrape. With `role` set and this unset: the role's collectors.",
        min_length=1,
    )

    @model_validator(mode="before")
    @classmethod
    def _role_collectors(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("role") in ROLE_COLLECTORS and data.get("collectors") is None:
            return {**data, "collectors": list(role_default_collectors(data["role"]))}
        return data

    @field_validator("collectors")
    @classmethod
    def _collectors_fit_role(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        role = info.data.get("role")
        if role is not None:
            outside = [name for name in value if name not in ROLE_COLLECTORS[role]]
            if outside:
                allowed = ", ".join(ROLE_COLLECTORS[role])
                raise ValueError(f"role {role} runs only {allowed}; {', '.join(outside)} belongs to another role")
        return value

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
