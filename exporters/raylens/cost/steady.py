"""Nodes whose holdings did not change since the last accounting step.

Between two steps (15 s apart) about 1 % of a busy cluster's tasks change, so most nodes hold exactly
what they held before. When every record on a node covers the whole window and lasts past the rate
instant, what the node's jobs pay is a constant rate times the window's length: the node's cost per
second per job key (scaled to capacity, as ``holdings.effective_holdings`` would) is computed once
and carried over for as long as the node's records, prices and capacity stay the same. This changes
how much work a step does, never the money: the rate is the one the full computation gives, so the
two agree to floating-point rounding (``tests/test_cost_steady.py`` runs both on the same timelines).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from raylens.cost.holdings import CPU_S, GPU_S, HELD_NOW, MEMORY_S, JobKey, Record
from raylens.cost.model import Resources


@dataclass(frozen=True, slots=True)
class SteadyNode:
    """A node's per-second apportioning, valid while ``covers`` holds.

    ``costs``: per job key, (key, compute dollars per second, CPU, GPU and memory share of the node's
    capacity, the explain log's segments of that key on this node). ``held_now``: what each key holds,
    as ``effective_holdings``' table with only the instant's entries (``*_NOW``, ``HELD_NOW``) filled;
    it is shared by every report that reuses it, so nobody may change it.

    The explain log's last segment of each key is extended lazily: ``explain_pending`` is [the instant
    the segments are accounted up to, the seconds since their last update weighted by the node's
    storage and egress spread]; ``settle`` writes that into the segments (one multiplication per key,
    once per read of the log rather than at every step).
    """

    records: list[Record]
    rates: tuple[float, float, float]
    capacity: Resources
    latest_start: float
    earliest_end: float
    costs: tuple[tuple[JobKey, float, float, float, float, list[list[float]] | None], ...]
    attributed: float
    held_now: dict[JobKey, list[float]]
    explain_pending: list[float]

    def covers(
        self,
        records: list[Record],
        rates: tuple[float, float, float],
        capacity: Resources,
        begin: float,
        finish: float,
        rate_time: float | None,
    ) -> bool:
        """Whether the cached rates hold for ``[begin, finish]`` (and the instant ``rate_time``)."""
        if self.latest_start > begin or finish >= self.earliest_end:
            return False
        if rate_time is not None and rate_time >= self.earliest_end:
            return False
        return rates == self.rates and capacity == self.capacity and records == self.records

    def settle(self) -> None:
        """Bring the explain log's segments of this node up to ``explain_pending``."""
        until, weighted = self.explain_pending
        if not weighted:
            return
        for _key, rate, _cpu, _gpu, _memory, segments in self.costs:
            if segments:
                last = segments[-1]
                last[1] = until
                last[5] += rate * weighted
        self.explain_pending[1] = 0.0


def span_of(records: Sequence[Record]) -> tuple[float, float]:
    """The latest start and the earliest end among ``records``."""
    latest_start = max(record[1] for record in records)
    earliest_end = min(record[2] for record in records)
    return latest_start, earliest_end


def steady_node(
    records: list[Record],
    rates: tuple[float, float, float],
    capacity: Resources,
    span: tuple[float, float],
    window: tuple[float, float],
    table: dict[JobKey, list[float]],
    prices: tuple[float, float, float],
    segments: dict[JobKey, list[list[float]] | None],
) -> SteadyNode:
    """Per-second figures from a full computation over a window of ``duration`` seconds that every
    record covers (so each resource-second is its amount, scaled to capacity, times ``duration``);
    ``segments`` are the explain log's, written up to the window's end."""
    duration = window[1] - window[0]
    cpu_price, gpu_price, memory_price = prices
    cpu_capacity, gpu_capacity, memory_capacity = capacity.cpu, capacity.gpu, capacity.memory_bytes
    costs = []
    attributed = 0.0
    held_now: dict[JobKey, list[float]] = {}
    for key, entry in table.items():
        cpu, gpu, memory = entry[CPU_S] / duration, entry[GPU_S] / duration, entry[MEMORY_S] / duration
        cost = cpu * cpu_price + gpu * gpu_price + memory * memory_price
        attributed += cost
        costs.append(
            (
                key,
                cost,
                cpu / cpu_capacity if cpu_capacity > 0 else 0.0,
                gpu / gpu_capacity if gpu_capacity > 0 else 0.0,
                memory / memory_capacity if memory_capacity > 0 else 0.0,
                segments.get(key),
            )
        )
        held_now[key] = [0.0, 0.0, 0.0, *entry[3:6], 0.0, 0.0, entry[HELD_NOW]]
    return SteadyNode(records, rates, capacity, span[0], span[1], tuple(costs), attributed, held_now, [window[1], 0.0])
