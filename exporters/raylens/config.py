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

KNOWN_COLLECTORS = ("node",)
CollectorName = Literal["node"]


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


class RaylensConfig(_Section):
    exporter: ExporterConfig = ExporterConfig()
    log: LogConfig = LogConfig()
    node: NodeConfig = NodeConfig()
    alerts: AlertsConfig = AlertsConfig()


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
