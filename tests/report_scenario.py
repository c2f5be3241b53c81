"""Ten days of known spend around a month boundary in Europe/Berlin, for the report tests.

2026-05-29 to 2026-06-08 (Berlin), scraped every 120 s at 37 s past the even minute:

* vision: alice (train, compute $2/h + storage $0.10/h, job 01000000) and bob (data, $0.50/h; job
  02000000 until 2026-06-02 15:20, then job 06000000);
* search: carol (serve, $1.50/h, job 03000000);
* nlp appears mid-period: dave (tasks, $3/h from 2026-06-03 10:17:30, job 04000000);
* erin's job has no project metadata: __unallocated__ ($0.25/h, job 05000000);
* idle $1.50/h until 2026-05-31 12:00, then $1/h;
* nodes: a1 (aws g5.12xlarge on-demand, $3.25/h + storage), g1 (gcp a2-highgpu-1g spot, $2/h), a3 (aws
  m5.xlarge, $0.50/h, ended 2026-05-31 12:00) and a2 (aws m5.4xlarge spot, $3/h from nlp's start);
* the exporter restarts without its state at 2026-06-05 12:00:42: every counter starts again from 0.

A second target, ``broken:9965``, has job counters that disagree with its allocation counters, for
the report's self-check.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from backfill import Scenario, Segment, Series

ZONE = ZoneInfo("Europe/Berlin")
ALLOCATION = "raylens_cost_allocation_dollars_total"
JOB = "raylens_cost_job_dollars_total"
NODE = "raylens_cost_node_dollars_total"
NODE_INFO = "raylens_cost_node_info"


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZONE).timestamp()


START = at("2026-05-29T00:00:00")
END = at("2026-06-08T00:00:00")
NOW = at("2026-06-07T12:00:00")
NLP_STARTS = at("2026-06-03T10:17:30")
BOB_SWITCHES = at("2026-06-02T15:20:00")
A3_ENDS = at("2026-05-31T12:00:00")
RESET = at("2026-06-05T12:00:42")


def _allocation(project: str, user: str, team: str, workload: str, kind: str, *segments: Segment) -> Series:
    labels = {"project": project, "user": user, "team": team, "workload": workload, "cost_kind": kind}
    return Series(ALLOCATION, labels, list(segments))


def _job(job_id: str, user: str, project: str, team: str, *segments: Segment) -> Series:
    labels = {"job_id": job_id, "submission_id": f"raysubmit_{job_id}", "user": user, "project": project, "team": team}
    return Series(JOB, labels, list(segments))


def _node(node_id: str, instance_type: str, market: str, cloud: str, region: str, *segments: Segment) -> list[Series]:
    labels = {"node_id": node_id, "instance_type": instance_type, "market": market}
    info = {**labels, "cloud": cloud, "region": region, "pricing_source": "catalog"}
    alive = [Segment(segment.start, segment.end, 1.0) for segment in segments]
    return [Series(NODE, {**labels, "cost_kind": "compute"}, list(segments)), Series(NODE_INFO, info, alive, "gauge")]


def always(rate: float) -> Segment:
    return Segment(START, END, rate)


def report_scenario() -> Scenario:
    idle = "__idle__"
    unallocated = "__unallocated__"
    series = [
        _allocation("vision", "alice", "ml", "train", "compute", always(2.0)),
        _allocation("vision", "alice", "ml", "train", "storage", always(0.1)),
        _allocation("vision", "bob", "ml", "data", "compute", always(0.5)),
        _allocation("search", "carol", "search", "serve", "compute", always(1.5)),
        _allocation("nlp", "dave", "nlp", "tasks", "compute", Segment(NLP_STARTS, END, 3.0)),
        _allocation(unallocated, "erin", unallocated, "tasks", "compute", always(0.25)),
        _allocation(idle, idle, idle, idle, "compute", Segment(START, A3_ENDS, 1.5), Segment(A3_ENDS, END, 1.0)),
        _job("01000000", "alice", "vision", "ml", always(2.1)),
        _job("02000000", "bob", "vision", "ml", Segment(START, BOB_SWITCHES, 0.5)),
        _job("06000000", "bob", "vision", "ml", Segment(BOB_SWITCHES, END, 0.5)),
        _job("03000000", "carol", "search", "search", always(1.5)),
        _job("04000000", "dave", "nlp", "nlp", Segment(NLP_STARTS, END, 3.0)),
        _job("05000000", "erin", unallocated, unallocated, always(0.25)),
        *_node("a1", "g5.12xlarge", "on_demand", "aws", "us-east-1", always(3.25)),
        Series(
            NODE,
            {"node_id": "a1", "instance_type": "g5.12xlarge", "market": "on_demand", "cost_kind": "storage"},
            [always(0.1)],
        ),
        *_node("g1", "a2-highgpu-1g", "spot", "gcp", "us-central1", always(2.0)),
        *_node("a3", "m5.xlarge", "on_demand", "aws", "us-east-1", Segment(START, A3_ENDS, 0.5)),
        *_node("a2", "m5.4xlarge", "spot", "aws", "us-east-1", Segment(NLP_STARTS, END, 3.0)),
    ]
    return Scenario(series, START, END, reset=RESET)


def broken_scenario() -> Scenario:
    """Job counters that claim twice what the allocation counters hold."""
    series = [
        _allocation("x", "xavier", "x", "tasks", "compute", always(1.0)),
        _job("09000000", "xavier", "x", "x", always(2.0)),
    ]
    return Scenario(series, START, END, target={"job": "raylens", "instance": "broken:9965"})
