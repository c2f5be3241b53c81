"""The one typed configuration object, read from ``raylens.yaml``, the environment and flags.

Precedence, lowest first: built-in defaults, the YAML file, ``RAYLENS_*`` environment variables,
command-line flags. Every value is validated before anything starts; all problems are reported at
once, each naming where the value came from (file, variable or flag), the field path, the bad value
and what was expected. Nothing is half-applied: either the whole configuration is valid or the
process exits non-zero.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from raylens.config.alerts import AlertsConfig, Duration, Percent
from raylens.config.base import (
    DEFAULT_DISK_DEVICE_EXCLUDE,
    DEFAULT_FS_TYPES_EXCLUDE,
    DEFAULT_LISTEN_ADDRESS,
    DEFAULT_MOUNT_POINTS_EXCLUDE,
    DEFAULT_PORT,
    KNOWN_COLLECTORS,
    CollectorName,
    _Section,
    parse_listen_address,
)
from raylens.config.cluster import ClusterConfig
from raylens.config.cost import CostConfig, NodeMatch, NodeRule, VolumeConfig
from raylens.config.errors import (
    MISSING,
    ConfigError,
    ConfigProblem,
    problems_from_validation,
    read_yaml_mapping,
)
from raylens.config.events import EventsConfig
from raylens.config.exporter import ROLE_COLLECTORS, ExporterConfig, ExporterRole, LogConfig, NodeConfig
from raylens.config.gpu import GpuConfig
from raylens.config.prometheus import PrometheusApiConfig
from raylens.config.ray import RAY_JOB_INFO_LABELS, RayConfig
from raylens.config.recommendations import RECOMMENDATION_KINDS, RecommendationsConfig
from raylens.config.remediation import RemediationConfig
from raylens.config.reports import ReportsConfig

__all__ = [
    "DEFAULT_DISK_DEVICE_EXCLUDE",
    "DEFAULT_FS_TYPES_EXCLUDE",
    "DEFAULT_LISTEN_ADDRESS",
    "DEFAULT_MOUNT_POINTS_EXCLUDE",
    "DEFAULT_PORT",
    "ENVIRONMENT_OVERRIDES",
    "KNOWN_COLLECTORS",
    "MISSING",
    "RAY_JOB_INFO_LABELS",
    "RECOMMENDATION_KINDS",
    "ROLE_COLLECTORS",
    "AlertsConfig",
    "ClusterConfig",
    "CollectorName",
    "ConfigError",
    "ConfigProblem",
    "CostConfig",
    "Duration",
    "EventsConfig",
    "ExporterConfig",
    "ExporterRole",
    "GpuConfig",
    "LogConfig",
    "NodeConfig",
    "NodeMatch",
    "NodeRule",
    "Percent",
    "PrometheusApiConfig",
    "RayConfig",
    "RaylensConfig",
    "RecommendationsConfig",
    "RemediationConfig",
    "ReportsConfig",
    "VolumeConfig",
    "load_config",
    "parse_listen_address",
    "problems_from_validation",
    "read_yaml_mapping",
]


class RaylensConfig(_Section):
    exporter: ExporterConfig = ExporterConfig()
    log: LogConfig = LogConfig()
    node: NodeConfig = NodeConfig()
    ray: RayConfig = RayConfig()
    alerts: AlertsConfig = AlertsConfig()
    cost: CostConfig = CostConfig()
    gpu: GpuConfig = GpuConfig()
    events: EventsConfig = EventsConfig()
    # Reports and recommendations (issue #11): the Prometheus they read, and their thresholds.
    prometheus: PrometheusApiConfig = PrometheusApiConfig()
    reports: ReportsConfig = ReportsConfig()
    recommendations: RecommendationsConfig = RecommendationsConfig()
    cluster: ClusterConfig = ClusterConfig()
    remediation: RemediationConfig = RemediationConfig()


# Environment variables for the settings most often changed per machine.
ENVIRONMENT_OVERRIDES: Mapping[str, tuple[str, ...]] = {
    "RAYLENS_WEB_LISTEN_ADDRESS": ("exporter", "listen_address"),
    "RAYLENS_WEB_CONFIG_FILE": ("exporter", "web_config_file"),
    "RAYLENS_COLLECTORS": ("exporter", "collectors"),
    "RAYLENS_ROLE": ("exporter", "role"),
    "RAYLENS_CLUSTER_NAME": ("cluster", "name"),
    "RAYLENS_LOG_LEVEL": ("log", "level"),
    "RAYLENS_LOG_FORMAT": ("log", "format"),
    "RAYLENS_NODE_INSTANCE_TYPE": ("node", "instance_type"),
    "RAYLENS_NODE_MARKET": ("node", "market"),
    "RAYLENS_RAY_NODE_ID": ("node", "ray_node_id"),
    "RAYLENS_RAY_ADDRESS": ("ray", "address"),
    "RAYLENS_COST_STATE_DIR": ("cost", "state_dir"),
    "RAYLENS_INCIDENTS_DB": ("remediation", "database"),
    "RAYLENS_PROMETHEUS_URL": ("prometheus", "url"),
}
LIST_FIELDS = {("exporter", "collectors")}


def _set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


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
