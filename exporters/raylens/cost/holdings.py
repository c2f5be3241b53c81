"""What each job holds on a node over an interval, scaled so that together holdings never exceed the
node's capacity: the core of apportioning a node's price (``apportion.py``) and its current rate
(``rates.py``)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from raylens.cost.model import Resources

# (job_id, serve application, serve deployment): the unit costs are apportioned to.
JobKey = tuple[str, str, str]
# (job key, start, end, cpu, gpu, memory bytes) with effective times and amounts.
Record = tuple[JobKey, float, float, float, float, float]

# An entry of effective_holdings' table, per job key on one node: resource-seconds in the interval
# (scaled to capacity), the amounts held at the rate instant, the first and last instant held, and
# whether it is held at the rate instant (1.0) or not (0.0).
CPU_S, GPU_S, MEMORY_S, CPU_NOW, GPU_NOW, MEMORY_NOW, FIRST, LAST, HELD_NOW = range(9)


def held_at(records: Iterable[Record], time: float) -> dict[JobKey, list[float]]:
    """What each job key holds at ``time``, as effective_holdings' table entries."""
    held: dict[JobKey, list[float]] = {}
    for key, start, end, cpu, gpu, memory in records:
        if start <= time < end:
            entry = held.get(key)
            if entry is None:
                held[key] = [0.0, 0.0, 0.0, cpu, gpu, memory, time, time, 1.0]
            else:
                entry[CPU_NOW] += cpu
                entry[GPU_NOW] += gpu
                entry[MEMORY_NOW] += memory
    return held


def _scaled(amounts: list[float], capacity: Resources, duration: float, totals: list[float]) -> list[float]:
    limits = (capacity.cpu * duration, capacity.gpu * duration, capacity.memory_bytes * duration)
    return [
        amount * limit / total if total > limit else amount
        for amount, limit, total in zip(amounts, limits, totals, strict=True)
    ]


def effective_holdings(
    records: Sequence[Record],
    begin: float,
    finish: float,
    capacity: Resources,
    rate_time: float | None = None,
) -> dict[JobKey, list[float]]:
    """Per job key on a node: the resource-seconds (CPU, GPU, memory bytes) it holds in
    [begin, finish], scaled at every instant so that together they never exceed the node's capacity;
    what it holds at ``rate_time``; and the first and last instant it holds anything (entries indexed
    by ``CPU_S``…``HELD_NOW``).

    Usually nothing is over capacity and one pass suffices. When holdings exceed it at some instant,
    with scale_r(t) = min(1, capacity_r / held_r(t)) and S_r(t) its integral from ``begin``, a record
    holding a constant amount over [low, high] is charged amount x (S_r(high) - S_r(low)): exact,
    and linear in records plus the instants where holdings change.
    """
    # One entry per key so a record costs one dictionary lookup: this runs once per allocation.
    table: dict[JobKey, list[float]] = {}
    measure_now = rate_time is not None
    moment = rate_time if rate_time is not None else 0.0
    full_cpu = full_gpu = full_memory = 0.0
    partial: list[Record] = []
    for record in records:
        key, start, end, cpu, gpu, memory = record
        low = begin if start < begin else start
        high = finish if end > finish else end
        overlap = high - low
        if overlap <= 0:
            continue
        holds_now = measure_now and start <= moment < end
        entry = table.get(key)
        if entry is None:
            if holds_now:
                table[key] = [cpu * overlap, gpu * overlap, memory * overlap, cpu, gpu, memory, low, high, 1.0]
            else:
                table[key] = [cpu * overlap, gpu * overlap, memory * overlap, 0.0, 0.0, 0.0, low, high, 0.0]
        else:
            entry[0] += cpu * overlap
            entry[1] += gpu * overlap
            entry[2] += memory * overlap
            if holds_now:
                entry[3] += cpu
                entry[4] += gpu
                entry[5] += memory
                entry[8] = 1.0
            if low < entry[6]:
                entry[6] = low
            if high > entry[7]:
                entry[7] = high
        if low == begin and high == finish:
            full_cpu += cpu
            full_gpu += gpu
            full_memory += memory
        else:
            partial.append(record)
    limits = (capacity.cpu, capacity.gpu, capacity.memory_bytes)
    if not partial:
        if full_cpu <= limits[0] and full_gpu <= limits[1] and full_memory <= limits[2]:
            return table
        totals = [sum(entry[r] for entry in table.values()) for r in range(3)]
        for entry in table.values():
            entry[0:3] = _scaled(entry[0:3], capacity, finish - begin, totals)
        return table
    # Holdings change only where a partial record starts or ends: sweep those instants.
    changes: dict[float, list[float]] = {}
    for _key, start, end, cpu, gpu, memory in partial:
        for time, sign in ((start if start > begin else begin, 1.0), (end if end < finish else finish, -1.0)):
            delta = changes.get(time)
            if delta is None:
                delta = changes[time] = [0.0, 0.0, 0.0]
            delta[0] += sign * cpu
            delta[1] += sign * gpu
            delta[2] += sign * memory
    times = sorted({begin, finish, *changes})
    running = [full_cpu, full_gpu, full_memory]
    over = False
    for time in times[:-1]:
        delta = changes.get(time)
        if delta is not None:
            running[0] += delta[0]
            running[1] += delta[1]
            running[2] += delta[2]
        if any(amount > limit * (1 + 1e-12) for amount, limit in zip(running, limits, strict=True)):
            over = True
            break
    if not over:
        return table
    running = [full_cpu, full_gpu, full_memory]
    cumulative = [0.0, 0.0, 0.0]
    integral: dict[float, tuple[float, float, float]] = {begin: (0.0, 0.0, 0.0)}
    for time, following in itertools.pairwise(times):
        delta = changes.get(time)
        if delta is not None:
            running[0] += delta[0]
            running[1] += delta[1]
            running[2] += delta[2]
        piece = following - time
        for resource in range(3):
            amount, limit = running[resource], limits[resource]
            cumulative[resource] += piece * (limit / amount if amount > limit else 1.0)
        integral[following] = (cumulative[0], cumulative[1], cumulative[2])
    for entry in table.values():
        entry[0] = entry[1] = entry[2] = 0.0
    for key, start, end, cpu, gpu, memory in records:
        low = begin if start < begin else start
        high = finish if end > finish else end
        if high <= low:
            continue
        at_low, at_high = integral[low], integral[high]
        entry = table[key]
        entry[0] += cpu * (at_high[0] - at_low[0])
        entry[1] += gpu * (at_high[1] - at_low[1])
        entry[2] += memory * (at_high[2] - at_low[2])
    return table
