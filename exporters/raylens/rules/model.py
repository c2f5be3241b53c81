"""The shape of an alert definition, shared by the YAML and jsonnet renderers.

Every text field is a ``%``-template whose ``%(name)s`` placeholders name fields of
``AlertsConfig`` (or, for generated per-item alerts such as budgets, of the item). Python renders
it with ``template % params`` and jsonnet with ``template % $._config``: the same operator with the
same semantics, so one definition serves both outputs. A literal percent sign is written ``%%``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

SEVERITIES = ("critical", "warning", "info")


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    severity: str
    summary: str
    description: str
    for_: str = "%(resource_alert_for)s"
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"{self.name}: severity must be one of {SEVERITIES}")
        if not self.name.startswith("Raylens"):
            raise ValueError(f"{self.name}: alert names share the prefix Raylens")
        if not (self.summary.endswith(".") and self.summary[:1].isupper()):
            raise ValueError(f"{self.name}: summary is one capitalised sentence ending with a full stop")


@dataclass(frozen=True)
class AlertGroup:
    name: str
    alerts: tuple[Alert, ...]


class GeneratedAlertGroup(Protocol):
    """A group whose alerts are expanded from a list of items (budgets.yaml): one set per item.

    Python renders each ``(alert, item_params)`` pair with the config's params updated by the item's;
    the jsonnet mixin gets the items as ``_config`` entries and a comprehension over them, so both
    outputs come from the same templates.
    """

    name: str

    def instances(self, config: Any) -> Iterable[tuple[Alert, Mapping[str, str]]]:
        """Concrete alerts for this config (severity may depend on it) with each item's params."""
        ...

    def jsonnet_config(self) -> Mapping[str, Any]:
        """Entries added to the mixin's ``_config`` (the items, overridable by users)."""
        ...

    def jsonnet_rules(self) -> str:
        """A jsonnet expression for the group's ``rules`` array, over the ``_config`` entries."""
        ...
