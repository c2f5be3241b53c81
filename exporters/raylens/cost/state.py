"""The little state that makes spend counters survive an exporter restart, saved atomically.

Node spend is re-derivable from node lifetimes, but prices can change and Ray forgets dead nodes and
jobs; so the engine keeps, per node, per job and per attribution key, the dollars accumulated so far
and the time they are accounted up to. It is saved on every scrape *before* the counters are exposed,
so a restarted exporter never shows a counter lower than Prometheus already saw.

Writes go to a temporary file in the same directory, are flushed to disk, then ``os.replace``d over the
old file: a crash leaves either the old or the new state, never half of one.

Reading is strict: the file goes through the bounded reader (``raylens.files``) and every field is
checked for the shape and type this module writes (``StateShapeError`` names the first that is not),
so a file of any other shape is treated like a corrupt one by the caller (``raylens.cost.loading``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from raylens.files import FileMissing
from raylens.files import read_json as read_bounded_json
from raylens.labels import COST_STATE, label_value

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
    def from_json(cls, data: Any) -> EngineState:
        """The state in ``data``; ``StateShapeError`` naming the first field of another shape."""
        root = _mapping(data, "the file")
        if root.get("format") != STATE_FORMAT:
            raise StateShapeError(f"format: expected {STATE_FORMAT}, got {_quote(root.get('format'))}")
        state = cls(time=_number(root.get("time"), "time", optional=True))
        for node_id, row in _mapping(root.get("nodes", {}), "nodes").items():
            where = f"nodes.{_quote(node_id)}"
            start, end, until, dollars, egress, last_seen, labels = _row(row, where, 7)
            state.nodes[_text(node_id, where)] = NodeRecord(
                _number(start, f"{where}[0]"),
                _number(end, f"{where}[1]", optional=True),
                _number(until, f"{where}[2]"),
                [_number(value, f"{where}[3]") for value in _row(dollars, f"{where}[3]", len(COST_KINDS))],
                _number(egress, f"{where}[4]", optional=True),
                _number(last_seen, f"{where}[5]"),
                [_text(value, f"{where}[6]") for value in _list(labels, f"{where}[6]")],
            )
        for job_id, row in _mapping(root.get("jobs", {}), "jobs").items():
            where = f"jobs.{_quote(job_id)}"
            values = _row(row, where, 10)
            state.jobs[_text(job_id, where)] = JobRecord(
                _number(values[0], f"{where}[0]"),
                *(_text(value, f"{where}[{index}]") for index, value in enumerate(values[1:7], 1)),
                _number(values[7], f"{where}[7]", optional=True),
                _number(values[8], f"{where}[8]", optional=True),
                _number(values[9], f"{where}[9]"),
            )
        for index, row in enumerate(_list(root.get("allocation", []), "allocation")):
            *key, value = _row(row, f"allocation[{index}]", 6)
            labels = tuple(_text(part, f"allocation[{index}]") for part in key)
            state.allocation[labels] = _number(value, f"allocation[{index}][5]")  # type: ignore[index]
        for index, row in enumerate(_list(root.get("serve", []), "serve")):
            *key, value = _row(row, f"serve[{index}]", 3)
            labels = tuple(_text(part, f"serve[{index}]") for part in key)
            state.serve[labels] = _number(value, f"serve[{index}][2]")  # type: ignore[index]
        for name, period in _mapping(root.get("periods", {}), "periods").items():
            where = f"periods.{_quote(name)}"
            record = _mapping(period, where)
            spend = _mapping(record.get("spend"), f"{where}.spend")
            state.periods[_text(name, where)] = PeriodRecord(
                _number(record.get("start"), f"{where}.start"),
                {_text(key, f"{where}.spend"): _number(value, f"{where}.spend") for key, value in spend.items()},
            )
        return state


class StateShapeError(ValueError):
    """The state file parsed but is not a state this version wrote; the message names the field."""


_T = TypeVar("_T")


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _checked(kind: type[_T], what: str) -> Callable[[Any, str], _T]:
    def check(value: Any, where: str) -> _T:
        if not isinstance(value, kind):
            raise StateShapeError(f"{where}: expected {what}, got {_quote(value)}")
        return value

    return check


_mapping = _checked(dict, "an object")
_list = _checked(list, "a list")


def _row(value: Any, where: str, length: int) -> list[Any]:
    row = _list(value, where)
    if len(row) != length:
        raise StateShapeError(f"{where}: expected a list of {length} fields, got {len(row)}")
    return row


def _number(value: Any, where: str, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StateShapeError(f"{where}: expected a finite number, got {_quote(value)}")
    return float(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise StateShapeError(f"{where}: expected a string, got {_quote(value)}")
    # Names and label values are exported as labels again: a state written by an older version (or by
    # hand) must not bring back what the label-value policy cuts.
    return label_value(value, COST_STATE)


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
    """A JSON file raylens wrote, through the bounded reader; ``None`` when it does not exist.

    Raises ``raylens.files.FileRefused`` when it is unreadable, too large, not UTF-8 or not JSON.
    """
    try:
        return read_bounded_json(path)
    except FileMissing:
        return None
