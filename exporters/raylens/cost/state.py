"""The little state that makes spend counters survive an exporter restart, saved atomically.

Node spend is re-derivable from node lifetimes, but prices can change and Ray forgets dead nodes and
jobs; so the engine keeps, per node, per job and per attribution key, the dollars accumulated so far
and the time they are accounted up to. It is saved on every scrape *before* the counters are exposed,
so a restarted exporter never shows a counter lower than Prometheus already saw.

Writes go to a temporary file in the same directory, are flushed to disk, then ``os.replace``d over the
old file: a crash leaves either the old or the new state, never half of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_FORMAT = 1
STATE_FILE = "cost-state.json"
EXPLAIN_FILE = "cost-explain.json"
COST_KINDS = ("compute", "storage", "network")


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "raylens" / "cost"


@dataclass
class NodeRecord:
    start: float
    end: float | None
    until: float  # spend is accounted up to this time
    dollars: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # by COST_KINDS
    egress_bytes: float | None = None
    last_seen: float = 0.0
    # Label values of the node's series (instance type, market, exported node labels): kept so a
    # restarted exporter continues the same series even when Ray no longer lists the node.
    labels: list[str] = field(default_factory=list)


@dataclass
class JobRecord:
    dollars: float = 0.0
    submission_id: str = ""
    user: str = ""
    project: str = ""
    team: str = ""
    workload: str = ""
    workload_source: str = ""
    start: float | None = None
    end: float | None = None
    last_seen: float = 0.0


@dataclass
class PeriodRecord:
    start: float
    spend: dict[str, float] = field(default_factory=dict)


@dataclass
class EngineState:
    time: float | None = None
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    # (user, project, team, workload, cost_kind) -> dollars, "__idle__" included
    allocation: dict[tuple[str, str, str, str, str], float] = field(default_factory=dict)
    serve: dict[tuple[str, str], float] = field(default_factory=dict)
    periods: dict[str, PeriodRecord] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "time": self.time,
            "nodes": {
                node_id: [r.start, r.end, r.until, r.dollars, r.egress_bytes, r.last_seen, r.labels]
                for node_id, r in self.nodes.items()
            },
            "jobs": {
                job_id: [
                    r.dollars,
                    r.submission_id,
                    r.user,
                    r.project,
                    r.team,
                    r.workload,
                    r.workload_source,
                    r.start,
                    r.end,
                    r.last_seen,
                ]
                for job_id, r in self.jobs.items()
            },
            "allocation": [[*key, value] for key, value in self.allocation.items()],
            "serve": [[*key, value] for key, value in self.serve.items()],
            "periods": {name: {"start": p.start, "spend": p.spend} for name, p in self.periods.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EngineState:
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown state format {data.get('format')!r}, expected {STATE_FORMAT}")
        state = cls(time=data.get("time"))
        for node_id, (start, end, until, dollars, egress, last_seen, labels) in data.get("nodes", {}).items():
            state.nodes[node_id] = NodeRecord(start, end, until, list(dollars), egress, last_seen, list(labels))
        for job_id, values in data.get("jobs", {}).items():
            state.jobs[job_id] = JobRecord(*values)
        for *key, value in data.get("allocation", []):
            state.allocation[tuple(key)] = float(value)  # type: ignore[index]
        for *key, value in data.get("serve", []):
            state.serve[tuple(key)] = float(value)  # type: ignore[index]
        for name, period in data.get("periods", {}).items():
            state.periods[name] = PeriodRecord(float(period["start"]), dict(period["spend"]))
        return state


def write_json_atomically(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # json.dumps runs the C encoder over the whole document; json.dump streams through the
        # pure-Python one, several times slower on large states.
        text = json.dumps(data, separators=(",", ":"))
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    # Make the rename itself durable.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_json(path: Path) -> Any | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return json.loads(text)
