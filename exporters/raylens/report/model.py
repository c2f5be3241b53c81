"""What a report holds: rows (a tree for ``--by a,b,c``), the total, and the query behind each figure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from raylens.report.periods import Interval

# Row kinds. `item`: a value of the dimension; `idle`: spend on capacity no job held; `unallocated`:
# jobs without the metadata key; `other`: rows folded by --top; `total`: the sum; `memo`: shown for
# information, not part of the sum (idle inside node-family rows).
ROW_KINDS = ("item", "idle", "unallocated", "other", "total", "memo")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Figure:
    """One number and the single PromQL instant query (evaluated at ``at``) that reproduces it."""

    dollars: float
    query: str
    at: int

    def as_dict(self) -> dict[str, Any]:
        return {"dollars": round(self.dollars, 6), "query": self.query, "at_unix": self.at}


@dataclass
class Row:
    name: str  # what the row shows: "vision", "02000000", "(other)", "total"
    kind: str
    labels: dict[str, str]  # the row's labels down from the first level: {"project": "vision", "user": "alice"}
    spend: Figure
    previous: Figure | None = None
    forecast: Figure | None = None
    children: list[Row] = field(default_factory=list)
    level: int = 0
    detail: str = ""  # e.g. the submission id of a job row

    @property
    def dollars(self) -> float:
        return self.spend.dollars

    @property
    def delta(self) -> float | None:
        return None if self.previous is None else self.spend.dollars - self.previous.dollars

    @property
    def delta_ratio(self) -> float | None:
        if self.previous is None or self.previous.dollars == 0:
            return None
        return self.spend.dollars / self.previous.dollars - 1

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class Report:
    dimensions: tuple[str, ...]
    family: str
    filters: dict[str, list[str]]
    selector: list[str]
    timezone: str
    interval: Interval
    compare: Interval | None
    forecast_method: str | None
    source: str
    generated_at: str
    rows: list[Row]
    total: Row
    memos: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    query_seconds: float = 0.0
    queries_run: int = 0

    def all_rows(self):
        for row in self.rows:
            yield from row.walk()
