"""Carrying steady nodes over (raylens.cost.steady) changes the work of a step, never the money.

Two engines read the same random timelines: one carries nodes whose holdings did not change since
the last step, the other recomputes every node at every step. Every figure they publish (counters,
period spend, rates, the explain log) must agree to floating-point rounding.
"""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raylens.config import CostConfig
from raylens.cost.catalog import load_catalog
from raylens.cost.engine import CostEngine
from raylens.cost.model import Allocation, JobInfo, NodeSpan, Observation, Resources
from raylens.cost.pricing import NodePricer

GIB = float(1 << 30)
T0 = 1_790_000_000.0
# Catalogued AWS types (so every node has a price) with Ray's logical capacity.
TYPES = [("m5.xlarge", 4, 0, 16), ("g5.12xlarge", 48, 4, 192), ("p4d.24xlarge", 96, 8, 1152)]

nodes_strategy = st.lists(st.tuples(st.sampled_from(TYPES), st.booleans()), min_size=1, max_size=4)
allocation_strategy = st.tuples(
    st.integers(0, 3),  # node (modulo the node count)
    st.integers(0, 2),  # job
    st.sampled_from([0.5, 1.0, 4.0, 64.0]),  # CPUs: 64 puts a small node over capacity
    st.sampled_from([0.0, 1.0]),  # GPUs
    st.sampled_from(["task", "actor", "serve"]),
)
step_strategy = st.tuples(
    st.floats(1.0, 400.0),  # seconds since the last step
    st.lists(st.integers(0, 50), max_size=3),  # allocations that end (by position)
    st.lists(allocation_strategy, max_size=3),  # allocations that start
)


def node_span(index: int, shape: tuple[str, int, int, int], spot: bool) -> NodeSpan:
    name, cpu, gpu, memory = shape
    return NodeSpan(
        node_id=f"node{index}",
        start_time=T0 - 3600.0,
        capacity=Resources(cpu, gpu, memory * GIB * 0.7),
        instance_type=name,
        market="spot" if spot else "on_demand",
    )


def allocation(serial: int, spec: tuple, nodes: list[NodeSpan], now: float, with_start: bool) -> Allocation:
    node, job, cpu, gpu, kind = spec
    name = {"task": "process_batch", "actor": "Trainer", "serve": "ServeReplica:app:deployment"}[kind]
    return Allocation(
        allocation_id=f"{kind}:{serial}",
        job_id=f"0{job}000000",
        node_id=nodes[node % len(nodes)].node_id,
        held=Resources(cpu, gpu, 0.0),
        start_time=now if kind == "task" and with_start else None,
        kind="task" if kind == "task" else "actor",
        name=name,
    )


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def assert_same_mapping(carried: dict, recomputed: dict, what: str) -> None:
    assert carried.keys() == recomputed.keys(), what
    for key, value in recomputed.items():
        assert close(carried[key], value), (what, key, carried[key], value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes_strategy, st.lists(allocation_strategy, max_size=6), st.lists(step_strategy, min_size=2, max_size=8))
def test_carrying_steady_nodes_over_gives_the_same_money(shapes, initial, steps) -> None:
    config = CostConfig()
    catalog = load_catalog()
    engines = [CostEngine(config, NodePricer(config, catalog), carry_over_steady_nodes=flag) for flag in (True, False)]
    nodes = [node_span(index, shape, spot) for index, (shape, spot) in enumerate(shapes)]
    jobs = tuple(JobInfo(f"0{job}000000", metadata={"user": f"u{job}"}, start_time=T0 - 3600.0) for job in range(3))
    now = T0
    live = [allocation(serial, spec, nodes, now, with_start=True) for serial, spec in enumerate(initial)]
    serial = len(live)
    timeline = [(0.0, [], []), *steps]
    for index, (seconds, ending, starting) in enumerate(timeline):
        now += seconds
        for position in sorted({position % len(live) for position in ending} if live else (), reverse=True):
            del live[position]
        for spec in starting:
            live.append(allocation(serial, spec, nodes, now - seconds / 3, with_start=serial % 2 == 0))
            serial += 1
        observation = Observation(now, tuple(nodes), jobs, tuple(live))
        carried, recomputed = (engine.advance(observation) for engine in engines)
        assert_same_mapping(carried.job_rates, recomputed.job_rates, "job rates")
        assert_same_mapping(carried.key_rates, recomputed.key_rates, "rates by labels")
        assert_same_mapping(carried.serve_rates, recomputed.serve_rates, "serve rates")
        # Conservation, which comparing the two engines alone cannot show: jobs plus idle pay it all.
        node_total = sum(sum(rates) for rates in carried.node_rates.values())
        assert math.isclose(sum(carried.key_rates.values()), node_total, rel_tol=1e-9)
        assert {n: [e[3:6] for e in t.values()] for n, t in carried.held_now.items()} == {
            n: [e[3:6] for e in t.values()] for n, t in recomputed.held_now.items()
        }
        first, second = (engine.state for engine in engines)
        assert_same_mapping(first.allocation, second.allocation, "allocation counters")
        assert_same_mapping(
            {j: r.dollars for j, r in first.jobs.items()}, {j: r.dollars for j, r in second.jobs.items()}, "jobs"
        )
        for period, record in second.periods.items():
            assert_same_mapping(first.periods[period].spend, record.spend, f"{period} spend")
        if index % 3 != 2 and index != len(timeline) - 1:
            continue  # the log is read now and then: steady nodes extend it lazily in between
        explained = [engine.explain.to_json()["jobs"] for engine in engines]
        assert explained[0].keys() == explained[1].keys()
        for job_id, by_node in explained[1].items():
            assert by_node.keys() == explained[0][job_id].keys()
            for where, segments in by_node.items():
                ours = explained[0][job_id][where]
                assert len(ours) == len(segments), (job_id, where, ours, segments)
                for mine, theirs in zip(ours, segments, strict=True):
                    assert all(close(a, b) for a, b in zip(mine, theirs, strict=True)), (mine, theirs)


def test_a_steady_node_is_carried_over_and_recomputed_when_its_holdings_change() -> None:
    """The cache is used (not just correct): a node whose tasks did not change is not recomputed."""
    config = CostConfig()
    engine = CostEngine(config, NodePricer(config, load_catalog()))
    node = node_span(0, TYPES[1], False)
    jobs = (JobInfo("01000000", start_time=T0 - 3600.0),)
    task = Allocation("task:1", "01000000", node.node_id, Resources(4.0, 1.0, 0.0), start_time=T0 - 60.0)
    engine.advance(Observation(T0, (node,), jobs, (task,)))
    # The first window starts with the node, before the task: not every record covers it.
    assert node.node_id not in engine._steady
    engine.advance(Observation(T0 + 15.0, (node,), jobs, (task,)))
    carried = engine._steady[node.node_id]  # the cache is what this test is about
    engine.advance(Observation(T0 + 30.0, (node,), jobs, (task,)))
    assert engine._steady[node.node_id] is carried
    second = replace(task, allocation_id="task:2", start_time=T0 + 35.0)
    engine.advance(Observation(T0 + 45.0, (node,), jobs, (task, second)))
    assert node.node_id not in engine._steady  # task:2 started inside the window
    engine.advance(Observation(T0 + 60.0, (node,), jobs, (task, second)))
    assert engine._steady[node.node_id] is not carried  # recomputed with both tasks
    assert len(engine._steady[node.node_id].costs) == 1  # one job key holding both
