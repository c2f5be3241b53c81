"""Evidence queries: one PromQL template per reading, run once for all targets, narrowed per target.

A template holds ``{m}`` where a target's matchers go (``raylens_ray_node_resource_used{resource="GPU"{m}}``):
the engine runs it with nothing there and indexes the answer by a label; each recommendation then
shows the template with its own ``, node_id="…"`` filled in, one query a user can paste to see the
same value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from raylens.prometheus_api import PrometheusApi


def duration_seconds(text: str) -> int:
    import re

    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return int(sum(int(number) * units[unit] for number, unit in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", text)))


def narrowed(template: str, matchers: Iterable[tuple[str, str]] = ()) -> str:
    extra = "".join(f', {label}="{value}"' for label, value in matchers)
    return template.replace("{m}", extra).replace("{, ", "{").replace("{}", "")


class Readings:
    """Runs templates at one instant and keeps the queries it ran (for ``raylens recommend --show-queries``)."""

    def __init__(self, api: PrometheusApi, at: float):
        self.api = api
        self.at = at
        self.ran: list[str] = []

    def by(self, template: str, *labels: str) -> dict[tuple[str, ...], float]:
        """Values keyed by ``labels``; NaN answers are left out."""
        query = narrowed(template)
        self.ran.append(query)
        values: dict[tuple[str, ...], float] = {}
        for sample in self.api.query(query, self.at):
            if not math.isnan(sample.value):
                values[tuple(sample.labels.get(label, "") for label in labels)] = sample.value
        return values

    def labelled(self, template: str, key: str) -> dict[str, dict[str, str]]:
        """Label sets keyed by one label (info series)."""
        query = narrowed(template)
        self.ran.append(query)
        return {sample.labels.get(key, ""): sample.labels for sample in self.api.query(query, self.at)}
