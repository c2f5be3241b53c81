"""``quotas.yaml``: limits on instances, GPUs and CPUs, per user, project, team, role or cluster-wide.

Sample::

    roles:
      researchers: [alice, bob]
    quotas:
      - name: gpus-per-user
        scope: user            # global | user | project | team | role
        match: "*"             # each user separately; or one name
        resource: gpus         # instances | gpus | cpus
        limit: 8
      - name: p4d-business-hours
        scope: global
        resource: instances
        instance_type: p4d.24xlarge
        limit: 2
        windows:               # active only inside these, in cost.timezone
          - {days: [mon, tue, wed, thu, fri], start: "08:00", end: "20:00"}

``clusters: [name, ...]`` limits a quota to the exporters of those clusters (``cluster.name``); by
default every cluster's exporter evaluates it against its own cluster.

Usage: for ``global`` quotas, what the cluster has (alive nodes, their GPUs and CPUs); for the other
scopes, what the scope's jobs hold now (max of held and used, per Ray's logical resources), and
``instances`` counts the distinct nodes they hold anything on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from raylens.config import ConfigError, ConfigProblem, problems_from_validation, read_yaml_mapping
from raylens.config.limits import MAX_QUOTA_WINDOWS, MAX_QUOTAS, MAX_ROLE_MEMBERS, MAX_ROLES, at_most

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$|^24:00$")
EACH = "*"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class QuotaWindow(_Strict):
    days: tuple[Day, ...] = Field(DAYS, min_length=1)
    start: str = "00:00"
    end: str = "24:00"

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError("expected a time HH:MM from 00:00 to 24:00")
        return value

    @model_validator(mode="after")
    def _order(self) -> QuotaWindow:
        if _minutes(self.end) <= _minutes(self.start):
            raise ValueError("expected end after start; split a window across midnight into two")
        return self

    def weekly_ranges(self) -> list[tuple[int, int]]:
        """Minutes since Monday 00:00 covered by the window."""
        return [
            (DAYS.index(day) * 1440 + _minutes(self.start), DAYS.index(day) * 1440 + _minutes(self.end))
            for day in sorted(set(self.days), key=DAYS.index)
        ]


class Quota(_Strict):
    name: str = Field(min_length=1)
    scope: Literal["global", "user", "project", "team", "role"]
    match: str | None = None
    resource: Literal["instances", "gpus", "cpus"]
    instance_type: str | None = None
    limit: float = Field(ge=0, allow_inf_nan=False)
    windows: tuple[QuotaWindow, ...] = ()
    clusters: tuple[str, ...] = ()
    """Cluster names (``cluster.name``) whose exporters evaluate this quota; empty: every cluster."""

    def applies_to(self, cluster: str) -> bool:
        return not self.clusters or cluster in self.clusters

    _windows = field_validator("windows", mode="before")(at_most(MAX_QUOTA_WINDOWS, "windows per quota"))

    @model_validator(mode="after")
    def _match(self) -> Quota:
        if self.scope == "global" and self.match is not None:
            raise ValueError("a global quota covers the whole cluster; leave `match` out")
        if self.scope != "global" and not (self.match or "").strip():
            raise ValueError(f"a {self.scope} quota needs `match`: a {self.scope} name, or '*' for each")
        return self

    def weekly_ranges(self) -> list[tuple[int, int]]:
        if not self.windows:
            return [(0, 7 * 1440)]
        return [span for window in self.windows for span in window.weekly_ranges()]

    def active(self, timestamp: float, zone: ZoneInfo) -> bool:
        if not self.windows:
            return True
        local = datetime.fromtimestamp(timestamp, zone)
        minute = local.weekday() * 1440 + local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.weekly_ranges())


class QuotasFile(_Strict):
    roles: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    quotas: list[Quota] = Field(default_factory=list)

    _quotas = field_validator("quotas", mode="before")(at_most(MAX_QUOTAS, "quotas"))

    @field_validator("roles", mode="before")
    @classmethod
    def _roles(cls, value: Any) -> Any:
        value = at_most(MAX_ROLES, "roles")(value)
        if isinstance(value, dict):
            for role, members in value.items():
                at_most(MAX_ROLE_MEMBERS, f"members of role {str(role)[:60]!r}")(members)
        return value


@dataclass(frozen=True)
class Quotas:
    quotas: tuple[Quota, ...] = ()
    roles: Mapping[str, tuple[str, ...]] = None  # type: ignore[assignment]

    def roles_of(self) -> dict[str, set[str]]:
        """user -> roles."""
        found: dict[str, set[str]] = {}
        for role, users in (self.roles or {}).items():
            for user in users:
                found.setdefault(user, set()).add(role)
        return found


def _overlap(first: list[tuple[int, int]], second: list[tuple[int, int]]) -> bool:
    return any(a < d and c < b for a, b in first for c, d in second)


def _clashes(quotas: list[Quota], by_target: Mapping[tuple[Any, ...], list[int]]) -> list[tuple[int, int]]:
    """(quota, an earlier quota it clashes with) for quotas of one target whose windows overlap.

    A sweep over the week's minute ranges, sorted: O(n log n) however many quotas share a target
    (comparing every pair took seconds at MAX_QUOTAS).
    """
    found: set[tuple[int, int]] = set()
    for indexes in by_target.values():
        if len(indexes) < 2:
            continue
        spans = sorted((start, end, index) for index in indexes for start, end in quotas[index].weekly_ranges())
        reach, owner = -1, -1
        for start, end, index in spans:
            if start < reach and owner != index:
                found.add((max(index, owner), min(index, owner)))
            if end > reach:
                reach, owner = end, index
    return sorted(found)


def validate_quotas(data: dict[str, Any], source: str, instance_types: Iterable[str]) -> Quotas:
    try:
        parsed = QuotasFile.model_validate(data)
    except ValidationError as error:
        raise ConfigError(problems_from_validation(error, QuotasFile, source)) from None
    known_types = set(instance_types)
    problems = []
    names: dict[str, int] = {}
    by_target: dict[tuple[Any, ...], list[int]] = {}
    for index, quota in enumerate(parsed.quotas):
        where = f"quotas.{index}"
        if quota.name in names:
            problems.append(
                ConfigProblem(
                    source, f"{where}.name", quota.name, f"duplicate name; first at quotas.{names[quota.name]}"
                )
            )
        names.setdefault(quota.name, index)
        if quota.instance_type is not None and quota.instance_type not in known_types:
            problems.append(
                ConfigProblem(
                    source,
                    f"{where}.instance_type",
                    quota.instance_type,
                    "unknown instance type; add it to a pricing file (cost.pricing_files) or fix the name",
                )
            )
        if quota.scope == "role" and quota.match != EACH and quota.match not in parsed.roles:
            known = ", ".join(sorted(parsed.roles)) or "none defined"
            problems.append(ConfigProblem(source, f"{where}.match", quota.match, f"unknown role; roles: {known}"))
        ranges = [window.weekly_ranges() for window in quota.windows]
        for first in range(len(ranges)):
            for second in range(first + 1, len(ranges)):
                if _overlap(ranges[first], ranges[second]):
                    problems.append(
                        ConfigProblem(
                            source,
                            f"{where}.windows.{second}",
                            quota.windows[second].model_dump(),
                            f"overlaps windows.{first} of the same quota",
                        )
                    )
        target = (quota.scope, quota.match, quota.resource, quota.instance_type)
        by_target.setdefault(target, []).append(index)
    for index, other in _clashes(parsed.quotas, by_target):
        quota = parsed.quotas[index]
        problems.append(
            ConfigProblem(
                source,
                f"quotas.{index}.windows" if quota.windows else f"quotas.{index}",
                quota.name,
                f"limits the same {quota.resource} of the same {quota.scope} as quotas.{other} "
                f"({parsed.quotas[other].name!r}) at overlapping times; give them disjoint windows",
            )
        )
    if problems:
        raise ConfigError(problems)
    return Quotas(tuple(parsed.quotas), dict(parsed.roles))


def load_quotas(path: Path, instance_types: Iterable[str]) -> Quotas:
    return validate_quotas(read_yaml_mapping(path), str(path), instance_types)


@dataclass(frozen=True)
class QuotaReading:
    quota: Quota
    match: str  # the scope value this reading is for ("" for global)
    usage: float
    active: bool


class Holding(NamedTuple):
    """What one (user, project, team) holds now on nodes of one instance type, and on which nodes."""

    user: str
    project: str
    team: str
    instance_type: str
    cpu: float
    gpu: float
    nodes: frozenset[str]


class NodeCapacity(NamedTuple):
    node_id: str
    instance_type: str
    cpu: float
    gpu: float


def evaluate_quotas(
    quotas: Quotas,
    timestamp: float,
    zone: ZoneInfo,
    nodes: Iterable[NodeCapacity],
    holdings: Iterable[Holding],
) -> list[QuotaReading]:
    """Current usage of every quota (and of each scope value for ``match: "*"``)."""
    nodes = list(nodes)
    holdings = list(holdings)
    roles_of = quotas.roles_of()
    readings = []
    for quota in quotas.quotas:
        active = quota.active(timestamp, zone)
        if quota.scope == "global":
            selected = [node for node in nodes if quota.instance_type in (None, node.instance_type)]
            if quota.resource == "instances":
                usage = float(len(selected))
            else:
                usage = sum(node.gpu if quota.resource == "gpus" else node.cpu for node in selected)
            readings.append(QuotaReading(quota, "", usage, active))
            continue
        usage_by: dict[str, float] = {}
        nodes_by: dict[str, set[str]] = {}
        amount_of = 5 if quota.resource == "gpus" else 4  # Holding.gpu / Holding.cpu
        for holding in holdings:
            if quota.instance_type not in (None, holding.instance_type):
                continue
            if quota.scope == "role":
                values: Iterable[str] = roles_of.get(holding.user, ())
            else:
                values = (getattr(holding, quota.scope),)
            for value in values:
                if quota.match not in (EACH, value):
                    continue
                usage_by[value] = usage_by.get(value, 0.0) + holding[amount_of]
                if quota.resource == "instances":
                    nodes_by.setdefault(value, set()).update(holding.nodes)
        if quota.match != EACH:
            usage_by.setdefault(quota.match or "", 0.0)
        for value in sorted(usage_by):
            usage = float(len(nodes_by.get(value, ()))) if quota.resource == "instances" else usage_by[value]
            readings.append(QuotaReading(quota, value, usage, active))
    return readings
