"""Cost engine accuracy on a scripted cluster timeline with an injected clock, against analytic truth.

The truth is computed here independently of the engine: the timeline is cut at every event (node or
allocation start/end, period boundary) and each piece, where nothing changes, is priced with the model
docs/cost-model.md states (node price split by ratios; share = held / max(capacity, sum held); memory
follows CPU when usage is unknown; idle = node - jobs).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raylens.config import CostConfig, NodeMatch, NodeRule
from raylens.cost.attribution import IDLE, UNALLOCATED
from raylens.cost.budgets import validate_budgets
from raylens.cost.catalog import default_pricing_file, load_catalog, merge_pricing_files, validate_pricing
from raylens.cost.engine import CostEngine
from raylens.cost.model import Allocation, JobInfo, NodeSpan, Observation, Resources
from raylens.cost.pricing import NodePricer
from raylens.cost.state import EngineState, read_json, write_json_atomically

GIB = float(1 << 30)
MINUTE, HOUR = 60.0, 3600.0
ZONE = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 1, 31, 22, 0, tzinfo=ZONE).timestamp()  # two hours before a month boundary
MONTH_BOUNDARY = datetime(2026, 2, 1, 0, 0, tzinfo=ZONE).timestamp()
CPU_TO_MEMORY, GPU_TO_MEMORY = 7.5, 224.0


@dataclass(frozen=True)
class ScriptNode:
    node_id: str
    start: float
    end: float | None
    cpu: float
    gpu: float
    memory_gib: float
    usd_per_hour: float  # the truth's price, from the catalog rows named in the comments
    shape: tuple[float, float, float]  # catalog vcpus, gpus, memory GiB: the split weights
    instance_type: str = ""
    market: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    resource_rates: tuple[float, float, float] | None = None  # USD/h of all CPUs, GPUs, memory

    def alive(self, time: float) -> bool:
        return self.start <= time and (self.end is None or time < self.end)

    def component_rates(self) -> tuple[float, float, float]:
        if self.resource_rates is not None:
            return tuple(rate / HOUR for rate in self.resource_rates)  # type: ignore[return-value]
        if not self.usd_per_hour:
            return (0.0, 0.0, 0.0)
        vcpus, gpus, memory = self.shape
        weights = (vcpus * CPU_TO_MEMORY, gpus * GPU_TO_MEMORY, memory)
        total = sum(weights)
        return tuple(self.usd_per_hour / HOUR * weight / total for weight in weights)  # type: ignore[return-value]


@dataclass(frozen=True)
class ScriptAllocation:
    allocation_id: str
    job_id: str
    node_id: str
    start: float
    end: float
    cpu: float = 0.0
    gpu: float = 0.0
    memory_gib: float = 0.0
    used: tuple[float, float, float] | None = None  # cpu, gpu, memory GiB
    kind: str = "task"
    name: str = "work"
    times_known: bool = True  # Ray gives tasks times, not actors

    def alive(self, time: float) -> bool:
        return self.start <= time < self.end


@dataclass(frozen=True)
class ScriptJob:
    job_id: str
    metadata: dict[str, str]
    start: float
    end: float | None


@dataclass
class Script:
    nodes: list[ScriptNode]
    jobs: list[ScriptJob]
    allocations: list[ScriptAllocation]
    # Ray keeps finished tasks listed for a while (bounded task-event history); actors vanish at once.
    listed_after_end: float = 10 * MINUTE

    def observation(self, time: float) -> Observation:
        nodes = [
            NodeSpan(
                node.node_id,
                node.start,
                node.end if node.end is not None and node.end <= time else None,
                Resources(node.cpu, node.gpu, node.memory_gib * GIB),
                labels=node.labels,
                instance_type=node.instance_type,
                market=node.market,
                ray_resources={"CPU": node.cpu, "GPU": node.gpu},
            )
            for node in self.nodes
            if node.start <= time
        ]
        jobs = [
            JobInfo(
                job.job_id,
                f"raysubmit_{job.job_id}",
                job.metadata,
                job.start,
                job.end if job.end and job.end <= time else None,
            )
            for job in self.jobs
            if job.start <= time
        ]
        allocations = []
        for item in self.allocations:
            if item.start > time:
                continue
            ended = item.end <= time
            if ended and (not item.times_known or time - item.end > self.listed_after_end):
                continue
            used = None if item.used is None else Resources(item.used[0], item.used[1], item.used[2] * GIB)
            allocations.append(
                Allocation(
                    item.allocation_id,
                    item.job_id,
                    item.node_id,
                    Resources(item.cpu, item.gpu, item.memory_gib * GIB),
                    used=used,
                    start_time=item.start if item.times_known else None,
                    end_time=item.end if item.times_known and ended else None,
                    kind=item.kind,
                    name=item.name,
                )
            )
        return Observation(time, nodes, jobs, allocations)


@dataclass
class Truth:
    node: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    job: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    idle: float = 0.0
    by: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))  # (label, value)

    @property
    def total(self) -> float:
        return sum(self.node.values())


def analytic_truth(script: Script, start: float, end: float) -> Truth:
    """Exact spend in [start, end] by piecewise integration between events."""
    events = {start, end}
    for node in script.nodes:
        events.update(t for t in (node.start, node.end) if t is not None)
    for item in script.allocations:
        events.update((item.start, item.end))
    times = sorted(t for t in events if start <= t <= end)
    jobs = {job.job_id: job for job in script.jobs}
    truth = Truth()
    for low, high in itertools.pairwise(times):
        middle, duration = (low + high) / 2, high - low
        for node in script.nodes:
            if not node.alive(middle):
                continue
            rates = node.component_rates()
            truth.node[node.node_id] += sum(rates) * duration
            held: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
            for item in script.allocations:
                if item.node_id != node.node_id or not item.alive(middle):
                    continue
                cpu, gpu, memory = item.cpu, item.gpu, item.memory_gib
                if item.used is not None:
                    cpu, gpu, memory = max(cpu, item.used[0]), max(gpu, item.used[1]), max(memory, item.used[2])
                else:
                    memory = max(memory, cpu / node.cpu * node.memory_gib)
                amounts = held[item.job_id]
                amounts[0] += cpu
                amounts[1] += gpu
                amounts[2] += memory
            capacity = (node.cpu, node.gpu, node.memory_gib)
            totals = [sum(amounts[r] for amounts in held.values()) for r in range(3)]
            attributed = 0.0
            for job_id, amounts in held.items():
                cost = duration * sum(
                    rates[r] * amounts[r] / max(capacity[r], totals[r]) for r in range(3) if capacity[r] > 0
                )
                attributed += cost
                truth.job[job_id] += cost
                metadata = jobs[job_id].metadata
                for label in ("user", "project", "team"):
                    truth.by[(label, metadata.get(label) or UNALLOCATED)] += cost
            truth.idle += sum(rates) * duration - attributed
    return truth


def scripted_cluster() -> Script:
    head = ScriptNode("head", T0 - HOUR, None, 4, 0, 16, 0.192, (4, 0, 16), "m5.xlarge", "on_demand")  # catalog
    spot = ScriptNode(
        "gpu-spot", T0 + 30 * MINUTE, T0 + 3 * HOUR + 10 * MINUTE, 4, 1, 16, 0.451, (4, 1, 16), "g5.xlarge", "spot"
    )
    big = ScriptNode("cpu-big", T0 + HOUR, T0 + 4 * HOUR, 16, 0, 64, 0.768, (16, 0, 64), "m5.4xlarge", "on_demand")
    # Priced by the on-prem resource rates of the override below: 8 x 0.02 + 32 GiB x 0.005 = 0.32 per hour.
    onprem = ScriptNode(
        "rack-1",
        T0 + 20 * MINUTE,
        None,
        8,
        0,
        32,
        0.32,
        (8, 0, 32),
        labels={"rack": "r1"},
        resource_rates=(0.16, 0, 0.16),
    )
    unknown = ScriptNode("mystery", T0 + 2 * HOUR, None, 2, 0, 8, 0.0, (2, 0, 8))  # unpriced
    jobs = [
        ScriptJob(
            "01000000",
            {"user": "alice", "project": "vision", "team": "ml"},
            T0 - 30 * MINUTE,
            T0 + 2 * HOUR + 40 * MINUTE,
        ),
        ScriptJob("02000000", {"user": "bob", "project": "nlp", "team": "ml"}, T0 + HOUR, T0 + 4 * HOUR + 40 * MINUTE),
        ScriptJob("03000000", {"user": "carol", "project": "vision"}, T0 + 55 * MINUTE, None),
        ScriptJob("04000000", {}, T0 + 10 * MINUTE, None),
        ScriptJob("05000000", {"user": "alice", "project": "etl", "team": "data"}, T0 + 5 * MINUTE, None),
    ]
    allocations = [
        # alice/vision: tasks on the head (started before the exporter's first look), an actor on the spot GPU.
        ScriptAllocation("t1", "01000000", "head", T0 - 20 * MINUTE, T0 + 2 * HOUR + 30 * MINUTE, cpu=2),
        ScriptAllocation(
            "a1",
            "01000000",
            "gpu-spot",
            T0 + 40 * MINUTE + 7,
            T0 + 2 * HOUR - 4,
            cpu=1,
            gpu=1,
            kind="actor",
            name="RayTrainWorker",
            times_known=False,
        ),
        # bob/nlp: a big CPU stage asking memory, later a small task on the head.
        ScriptAllocation(
            "t2", "02000000", "cpu-big", T0 + HOUR + 10 * MINUTE + 3, T0 + 3 * HOUR + 50 * MINUTE, cpu=8, memory_gib=40
        ),
        ScriptAllocation("t3", "02000000", "head", T0 + 3 * HOUR + 1, T0 + 4 * HOUR + 30 * MINUTE, cpu=1),
        # carol/vision: a Serve replica on the big node (an actor: no times from Ray).
        ScriptAllocation(
            "a2",
            "03000000",
            "cpu-big",
            T0 + HOUR + 2 * MINUTE + 9,
            T0 + 10 * HOUR,
            cpu=4,
            kind="actor",
            name="ServeReplica:chat:llm",
            times_known=False,
        ),
        # No metadata: on the on-prem rack.
        ScriptAllocation("t4", "04000000", "rack-1", T0 + 25 * MINUTE, T0 + 5 * HOUR, cpu=6),
        # alice/etl: measured usage above what it asked, over-subscribing the head (scaled to capacity);
        # it ends while the exporter is down.
        ScriptAllocation(
            "t5", "05000000", "head", T0 + 6 * MINUTE, T0 + 2 * HOUR + 15 * MINUTE, cpu=1, used=(2.5, 0, 6)
        ),
        ScriptAllocation("t6", "05000000", "mystery", T0 + 2 * HOUR + 5 * MINUTE, T0 + 4 * HOUR, cpu=1),
    ]
    return Script([head, spot, big, onprem, unknown], jobs, allocations)


ONPREM_PRICING = {
    "resource_prices": [
        {"name": "onprem", "usd_per_cpu_hour": 0.02, "usd_per_memory_gib_hour": 0.005, "source": "test rates"}
    ]
}


def engine_for(state: EngineState | None = None, **overrides: object) -> CostEngine:
    settings: dict[str, object] = {
        "timezone": "Europe/Berlin",
        "node_rules": (NodeRule(match=NodeMatch(labels={"rack": "r*"}), resource_price="onprem"),),
        "finished_retention_seconds": 86400.0,
    }
    config = CostConfig(**{**settings, **overrides})  # type: ignore[arg-type]
    catalog = merge_pricing_files(
        [("default", default_pricing_file()), ("onprem.yaml", validate_pricing(ONPREM_PRICING, "onprem.yaml"))]
    )
    budgets = validate_budgets(
        {
            "budgets": [
                {"name": "org", "scope": "org", "amount_usd": 1000},
                {"name": "vision", "scope": "project", "match": "vision", "amount_usd": 100},
                {"name": "alice-daily", "scope": "user", "match": "alice", "amount_usd": 5, "period": "day"},
                {"name": "aws", "scope": "cloud", "match": "aws", "amount_usd": 500},
            ]
        },
        "budgets.yaml",
        catalog.clouds(),
    )
    return CostEngine(config, NodePricer(config, catalog), budgets, state)


def scrape_times(start: float, end: float, interval: float = 15.0) -> list[float]:
    # Deterministic jitter, as real scrapes drift.
    times, time, step = [], start, 0
    while time <= end:
        times.append(time)
        step += 1
        time = start + step * interval + (step * 7919 % 7 - 3) * 0.5
    return times


def relative_error(value: float, expected: float) -> float:
    return abs(value - expected) / expected if expected else abs(value)


def engine_totals(engine: CostEngine) -> dict[str, float]:
    state = engine.state
    totals = {"total": sum(sum(record.dollars) for record in state.nodes.values())}
    for (user, project, team, _workload, _kind), dollars in state.allocation.items():
        if user == IDLE:
            totals["idle"] = totals.get("idle", 0.0) + dollars
            continue
        for label, value in (("user", user), ("project", project), ("team", team)):
            totals[f"{label}:{value}"] = totals.get(f"{label}:{value}", 0.0) + dollars
    return totals


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The scripted timeline, scraped every ~15 s, with the exporter down from +2h07m to +2h20m."""
    script = scripted_cluster()
    state_file = tmp_path_factory.mktemp("state") / "cost-state.json"
    crash, back = T0 + 2 * HOUR + 7 * MINUTE, T0 + 2 * HOUR + 20 * MINUTE
    engine = engine_for()
    checkpoints: dict[str, object] = {"before_boundary": None, "after_boundary": None}
    last_exposed: dict[str, float] = {}
    decreases = []
    end = T0 + 5 * HOUR
    for time in scrape_times(T0, end):
        if crash < time < back:
            continue
        if time >= back and engine is not None and checkpoints.get("restarted") is None:
            # A new process: only the saved state survives.
            engine = engine_for(EngineState.from_json(read_json(state_file)))
            checkpoints["restarted"] = time
        engine.advance(script.observation(time))
        write_json_atomically(state_file, engine.state.to_json())
        for node_id, record in engine.state.nodes.items():
            value = sum(record.dollars)
            if value < last_exposed.get(node_id, 0.0) - 1e-12:
                decreases.append((time, node_id))
            last_exposed[node_id] = value
        if time < MONTH_BOUNDARY:
            checkpoints["before_boundary"] = (time, engine.budget_spend(engine.budgets[0]))
        elif checkpoints["after_boundary"] is None:
            checkpoints["after_boundary"] = (
                time,
                engine.budget_spend(engine.budgets[0]),
                engine.budget_spend(engine.budgets[1]),
                engine.state.periods["month"].start,
            )
    last = engine.state.time
    return {"script": script, "engine": engine, "end": last, "checkpoints": checkpoints, "decreases": decreases}


def test_node_spend_matches_analytic_truth(run: dict) -> None:
    script, engine, end = run["script"], run["engine"], run["end"]
    truth = analytic_truth(script, -math.inf, end)  # since each node started (the head before the exporter)
    for node in script.nodes:
        spent = sum(engine.state.nodes[node.node_id].dollars)
        assert relative_error(spent, truth.node[node.node_id]) < 1e-9, node.node_id
    assert truth.node["head"] == pytest.approx(0.192 * (end - (T0 - HOUR)) / HOUR, rel=1e-12)  # since T0-1h
    assert truth.node["gpu-spot"] == pytest.approx(0.451 * (2 * HOUR + 40 * MINUTE) / HOUR, rel=1e-12)
    assert engine.state.nodes["mystery"].dollars == [0.0, 0.0, 0.0]  # unpriced, not silently priced


def test_project_user_team_spend_within_half_a_percent(run: dict) -> None:
    script, engine, end = run["script"], run["engine"], run["end"]
    truth = analytic_truth(script, -math.inf, end)
    totals = engine_totals(engine)
    checked = 0
    for (label, value), expected in truth.by.items():
        assert relative_error(totals[f"{label}:{value}"], expected) < 0.005, (label, value)
        checked += 1
    assert checked >= 10
    for job_id, expected in truth.job.items():
        assert relative_error(engine.state.jobs[job_id].dollars, expected) < 0.005, job_id
    assert relative_error(totals["idle"], truth.idle) < 0.005


def test_attributed_plus_idle_equals_total(run: dict) -> None:
    engine = run["engine"]
    totals = engine_totals(engine)
    attributed = sum(value for key, value in engine.state.allocation.items() if key[0] != IDLE)
    assert relative_error(attributed + totals["idle"], totals["total"]) < 0.001
    assert relative_error(attributed + totals["idle"], totals["total"]) < 1e-12  # by construction, in fact


def test_month_to_date_resets_exactly_at_the_boundary(run: dict) -> None:
    script, engine = run["script"], run["engine"]
    before_time, before_spend = run["checkpoints"]["before_boundary"]
    after_time, after_org, after_vision, month_start = run["checkpoints"]["after_boundary"]
    assert month_start == MONTH_BOUNDARY
    assert before_spend == pytest.approx(analytic_truth(script, -math.inf, before_time).total, rel=1e-9)
    after_truth = analytic_truth(script, MONTH_BOUNDARY, after_time)
    assert after_org == pytest.approx(after_truth.total, rel=1e-9)
    assert after_vision == pytest.approx(after_truth.by[("project", "vision")], rel=1e-9)
    # And at the end, month-to-date is exactly everything since the boundary.
    end = run["end"]
    assert engine.budget_spend(engine.budgets[0]) == pytest.approx(
        analytic_truth(script, MONTH_BOUNDARY, end).total, rel=1e-9
    )


def test_restart_loses_at_most_one_scrape_interval(run: dict) -> None:
    script, engine, end = run["script"], run["engine"], run["end"]
    assert run["checkpoints"]["restarted"] is not None
    assert run["decreases"] == [], "a counter went down across the restart"
    truth = analytic_truth(script, -math.inf, end)
    one_interval = 15.0 * sum(node.usd_per_hour for node in script.nodes) / HOUR
    totals = engine_totals(engine)
    assert abs(totals["total"] - truth.total) <= one_interval
    for (label, value), expected in truth.by.items():
        assert abs(totals[f"{label}:{value}"] - expected) <= one_interval, (label, value)


def staggered_run(outage: tuple[float, float] | None) -> tuple[Script, CostEngine, float]:
    """The timeline read as the exporter's background refresher reads it: nodes and jobs every 5 s,
    tasks and actors every 15 s, each answer at its own time; after every answer the engine gets an
    observation *as of the oldest answer* (never the arrival time), and only when that moved on.
    ``outage``: the task and actor listings fail (no answer) over that window."""
    script = scripted_cluster()
    engine = engine_for()
    latest = {"nodes": T0, "jobs": T0, "allocations": T0}
    intervals = {"nodes": 5.0, "jobs": 5.0, "allocations": 15.0}
    reads = sorted(
        (T0 + step * interval + (step * 7919 % 7) * 0.3, source)
        for source, interval in intervals.items()
        for step in range(int(5 * HOUR / interval) + 1)
    )
    accounted = -math.inf
    for read_at, source in reads:
        if source == "allocations" and outage is not None and outage[0] <= read_at < outage[1]:
            continue  # the listing timed out: no new answer
        latest[source] = read_at
        as_of = min(latest.values())
        if as_of <= accounted:
            continue
        observation = Observation(
            as_of,
            script.observation(latest["nodes"]).nodes,
            script.observation(latest["jobs"]).jobs,
            script.observation(latest["allocations"]).allocations,
        )
        engine.advance(observation)
        accounted = as_of
    return script, engine, accounted


@pytest.mark.parametrize("outage", [None, (T0 + 3 * HOUR, T0 + 3 * HOUR + 10 * MINUTE)], ids=["late", "missing"])
def test_answers_of_different_ages_and_a_missing_listing_keep_spend_exact(outage: tuple | None) -> None:
    script, engine, end = staggered_run(outage)
    truth = analytic_truth(script, -math.inf, end)
    for node in script.nodes:  # from Ray's own node times: exact whatever the answers' ages
        assert relative_error(sum(engine.state.nodes[node.node_id].dollars), truth.node[node.node_id]) < 1e-9
    totals = engine_totals(engine)
    for (label, value), expected in truth.by.items():
        assert relative_error(totals[f"{label}:{value}"], expected) < 0.005, (label, value, outage)
    for job_id, expected in truth.job.items():
        assert relative_error(engine.state.jobs[job_id].dollars, expected) < 0.005, (job_id, outage)
    attributed = sum(value for key, value in engine.state.allocation.items() if key[0] != IDLE)
    assert relative_error(attributed + totals["idle"], totals["total"]) < 1e-12
    # Accounting trails the newest answer by at most the slowest source's interval.
    assert end >= T0 + 5 * HOUR - 15.0 - 3.0


def test_workload_and_serve_attribution(run: dict) -> None:
    engine = run["engine"]
    jobs = engine.state.jobs
    assert (jobs["01000000"].workload, jobs["01000000"].workload_source) == ("train", "inferred")
    assert (jobs["03000000"].workload, jobs["03000000"].workload_source) == ("serve", "inferred")
    assert (jobs["04000000"].workload, jobs["04000000"].workload_source) == ("tasks", "default")
    assert (jobs["04000000"].user, jobs["04000000"].project) == (UNALLOCATED, UNALLOCATED)
    assert engine.state.serve[("chat", "llm")] == pytest.approx(jobs["03000000"].dollars, rel=1e-12)


def test_daily_and_cloud_budgets(run: dict) -> None:
    script, engine, end = run["script"], run["engine"], run["end"]
    day_start = datetime(2026, 2, 1, tzinfo=ZONE).timestamp()
    truth = analytic_truth(script, day_start, end)
    assert engine.state.periods["day"].start == day_start
    assert engine.budget_spend(engine.budgets[2]) == pytest.approx(truth.by[("user", "alice")], rel=0.005)
    month = analytic_truth(script, MONTH_BOUNDARY, end)
    aws = sum(month.node[node_id] for node_id in ("head", "gpu-spot", "cpu-big"))
    assert engine.budget_spend(engine.budgets[3]) == pytest.approx(aws, rel=1e-9)


# ----------------------------------------------------------------------------- properties

GENERIC = ScriptNode("x", 0, None, 0, 0, 0, 0.192, (4, 0, 16))


@st.composite
def timelines(draw: st.DrawFn) -> tuple[Script, list[float], int | None]:
    horizon = 4 * HOUR
    nodes = []
    for index in range(draw(st.integers(1, 3))):
        start = draw(st.floats(0, horizon / 2))
        end = draw(st.one_of(st.none(), st.floats(start + 1, horizon)))
        cpu = float(draw(st.sampled_from([2, 4, 16])))
        gpu = float(draw(st.sampled_from([0, 1])))
        instance_type, price, shape = ("g5.xlarge", 1.006, (4, 1, 16)) if gpu else ("m5.xlarge", 0.192, (4, 0, 16))
        nodes.append(ScriptNode(f"n{index}", start, end, cpu, gpu, 16, price, shape, instance_type, "on_demand"))
    jobs = [
        ScriptJob(f"0{index}000000", {"project": f"p{index % 2}", "user": f"u{index}"}, 0.0, None) for index in range(3)
    ]
    allocations = []
    for index in range(draw(st.integers(0, 8))):
        node = draw(st.sampled_from(nodes))
        node_end = node.end if node.end is not None else horizon
        start = draw(st.floats(node.start, node_end))
        end = draw(st.floats(start, node_end + 600))
        allocations.append(
            ScriptAllocation(
                f"t{index}",
                draw(st.sampled_from(jobs)).job_id,
                node.node_id,
                start,
                end,
                cpu=float(draw(st.integers(0, 6))),
                gpu=float(draw(st.integers(0, 1))),
                memory_gib=float(draw(st.sampled_from([0, 4, 20]))),
            )
        )
    scrapes = sorted(set(draw(st.lists(st.floats(1, horizon + 900), min_size=2, max_size=25))))
    restart = draw(st.one_of(st.none(), st.integers(0, len(scrapes) - 1)))
    # Finished tasks stay listed longer than the longest scrape gap here, so every time is known.
    return Script(nodes, jobs, allocations, listed_after_end=math.inf), scrapes, restart


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timelines())
def test_accounting_invariants_on_random_timelines(case: tuple[Script, list[float], int | None]) -> None:
    script, scrapes, restart = case
    engine = engine_for(timezone="UTC")
    previous: dict[str, float] = {}
    for index, time in enumerate(scrapes):
        if index == restart:
            engine = engine_for(EngineState.from_json(engine.state.to_json()), timezone="UTC")
        engine.advance(script.observation(time))
        state = engine.state
        node_total = sum(sum(record.dollars) for record in state.nodes.values())
        allocation_total = sum(state.allocation.values())
        # Sum of attributed + idle = total.
        assert allocation_total == pytest.approx(node_total, rel=1e-9, abs=1e-12)
        assert all(value >= -1e-12 for value in state.allocation.values())
        # Counters never go down, restart or not.
        current = {f"node:{k}": sum(r.dollars) for k, r in state.nodes.items()}
        current |= {f"job:{k}": r.dollars for k, r in state.jobs.items()}
        current |= {f"key:{k}": v for k, v in state.allocation.items()}
        for key, value in current.items():
            assert value >= previous.get(key, 0.0) - 1e-12, key
        previous = current
    # With start and end times known, node and job spend are exact.
    truth = analytic_truth(script, -math.inf, scrapes[-1])
    for node in script.nodes:
        if node.start <= scrapes[-1]:
            assert sum(engine.state.nodes[node.node_id].dollars) == pytest.approx(
                truth.node[node.node_id], rel=1e-9, abs=1e-12
            )
    for job_id, expected in truth.job.items():
        assert engine.state.jobs[job_id].dollars == pytest.approx(expected, rel=1e-6, abs=1e-9)
    # Month-to-date (UTC) equals spend since the month began.
    month = engine.state.periods["month"]
    assert month.spend.get("org", 0.0) == pytest.approx(
        analytic_truth(script, month.start, scrapes[-1]).total, rel=1e-9, abs=1e-12
    )


# ----------------------------------------------------------------------------- focused behaviour


def simple_engine(**overrides: object) -> CostEngine:
    config = CostConfig(**overrides)  # type: ignore[arg-type]
    return CostEngine(config, NodePricer(config, load_catalog()))


def m5(node_id: str = "n1", start: float = 0.0, end: float | None = None, **extra: object) -> NodeSpan:
    return NodeSpan(
        node_id, start, end, Resources(4, 0, 16 * GIB), instance_type="m5.xlarge", market="on_demand", **extra
    )  # type: ignore[arg-type]


def test_unknown_times_use_the_midpoint_between_scrapes() -> None:
    engine = simple_engine()
    actor = Allocation("a", "j", "n1", Resources(4, 0, 0), kind="actor")
    engine.advance(Observation(0.0, [m5()]))
    engine.advance(Observation(100.0, [m5()], [], [actor]))  # appeared between 0 and 100: from 50
    engine.advance(Observation(200.0, [m5()]))  # gone between 100 and 200: until 150
    assert engine.state.jobs["j"].dollars == pytest.approx(0.192 / HOUR * 100, rel=1e-12)


def test_job_end_bounds_a_vanished_allocation() -> None:
    engine = simple_engine()
    actor = Allocation("a", "j", "n1", Resources(4, 0, 0), kind="actor")  # no times from Ray
    engine.advance(Observation(0.0, [m5()], [JobInfo("j", start_time=0.0)], [actor]))
    engine.advance(Observation(100.0, [m5()], [JobInfo("j", start_time=0.0)], [actor]))
    engine.advance(Observation(200.0, [m5()], [JobInfo("j", start_time=0.0, end_time=110.0)], []))
    assert engine.state.jobs["j"].dollars == pytest.approx(0.192 / HOUR * 110, rel=1e-12)


def test_a_job_holding_everything_leaves_no_idle() -> None:
    engine = simple_engine()
    task = Allocation("t", "j", "n1", Resources(4, 0, 0), start_time=0.0)
    engine.advance(Observation(0.0, [m5()], [], [task]))
    engine.advance(Observation(3600.0, [m5()], [], [task]))
    idle = sum(v for k, v in engine.state.allocation.items() if k[0] == IDLE)
    assert idle == pytest.approx(0.0, abs=1e-15)
    assert engine.state.jobs["j"].dollars == pytest.approx(0.192, rel=1e-12)


def test_storage_and_egress_are_their_own_kinds_and_shared_like_compute() -> None:
    from raylens.config import VolumeConfig

    engine = simple_engine(
        volumes=(VolumeConfig(name="root", size_gib=100, usd_per_gib_month=0.08),),
        egress_usd_per_gib=0.09,
        spill_usd_per_gib_month=0.1,
    )
    task = Allocation("t", "j", "n1", Resources(2, 0, 0), start_time=0.0)
    engine.advance(Observation(0.0, [m5(egress_bytes_total=0.0, spilled_bytes=10 * GIB)], [], [task]))
    engine.advance(Observation(3600.0, [m5(egress_bytes_total=10 * GIB, spilled_bytes=10 * GIB)], [], [task]))
    compute, storage, network = engine.state.nodes["n1"].dollars
    assert compute == pytest.approx(0.192)
    assert storage == pytest.approx((100 * 0.08 + 10 * 0.1) / 730)
    assert network == pytest.approx(10 * 0.09)
    kinds = defaultdict(float)
    for (user, *_rest, kind), dollars in engine.state.allocation.items():
        if user != IDLE:
            kinds[kind] += dollars
    assert kinds["storage"] == pytest.approx(storage / 2)  # the job held half the node
    assert kinds["network"] == pytest.approx(network / 2)


def test_backfill_from_node_start_when_there_is_no_state() -> None:
    engine = simple_engine()
    engine.advance(Observation(7200.0, [m5(start=0.0)]))
    assert engine.state.nodes["n1"].dollars[0] == pytest.approx(0.384)


def test_dead_nodes_listed_by_ray_are_not_counted_twice_after_retention() -> None:
    engine = simple_engine(finished_retention_seconds=60)
    engine.advance(Observation(0.0, [m5()]))
    dead = m5(end=3600.0)
    for time in (3600.0, 4000.0, 8000.0, 9000.0):
        engine.advance(Observation(time, [dead]))
    assert sum(v for v in engine.state.allocation.values()) == pytest.approx(0.192)


def test_period_boundaries_follow_the_time_zone_and_dst() -> None:
    from raylens.cost.periods import boundaries, period_end, period_start

    berlin = ZoneInfo("Europe/Berlin")
    march = datetime(2026, 3, 29, 12, tzinfo=berlin).timestamp()  # DST starts that night
    assert period_start("day", march, berlin) == datetime(2026, 3, 29, tzinfo=berlin).timestamp()
    assert period_end("day", march, berlin) - period_start("day", march, berlin) == 23 * HOUR
    assert datetime.fromtimestamp(period_start("week", march, berlin), berlin).weekday() == 0
    assert period_end("month", march, berlin) == datetime(2026, 4, 1, tzinfo=berlin).timestamp()
    cuts = boundaries(("day", "month"), datetime(2026, 3, 31, 23, tzinfo=berlin).timestamp(), march + 3 * 86400, berlin)
    assert [(datetime.fromtimestamp(t, berlin).day, p) for t, p in cuts][:2] == [(1, "day"), (1, "month")]


def test_state_round_trips_through_json(tmp_path: Path) -> None:
    engine = simple_engine()
    engine.advance(
        Observation(
            0.0, [m5()], [JobInfo("j", metadata={"user": "u"})], [Allocation("t", "j", "n1", Resources(1, 0, 0))]
        )
    )
    engine.advance(
        Observation(
            60.0, [m5()], [JobInfo("j", metadata={"user": "u"})], [Allocation("t", "j", "n1", Resources(1, 0, 0))]
        )
    )
    path = tmp_path / "s.json"
    write_json_atomically(path, engine.state.to_json())
    restored = EngineState.from_json(read_json(path))
    assert restored == engine.state
    assert not list(tmp_path.glob(".*.tmp"))
