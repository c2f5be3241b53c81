"""Row order and ``--top``: largest first, ``(other)`` for the rest, then unallocated and idle."""

from __future__ import annotations

from collections.abc import Sequence

from raylens.report.model import Figure, Row
from raylens.report.plan import Column, Plan
from raylens.report.queries import DIMENSION_LABELS, Selection, matcher

OTHER = "(other)"


def _dollars(row: Row, column: str) -> float:
    value = getattr(row, column)
    return 0.0 if value is None else value.dollars


def arrange(
    rows: list[Row], top: int, plan: Plan, items: Selection, columns: Sequence[Column], dims: Sequence[str]
) -> list[Row]:
    """Largest first, `(other)` for rows beyond ``top``, then unallocated and idle; the same below."""
    for row in rows:
        row.children = arrange(row.children, top, plan, items, columns, dims)
    listed = sorted((row for row in rows if row.kind == "item"), key=lambda row: (-row.dollars, row.name))
    tail = [row for row in rows if row.kind == "unallocated"] + [row for row in rows if row.kind == "idle"]
    if not top or len(listed) <= top:
        return listed + tail
    kept, folded = listed[:top], listed[top:]
    level = folded[0].level
    parent_labels = {key: value for key, value in folded[0].labels.items() if key not in _own_labels(dims, level)}
    own = DIMENSION_LABELS[dims[level]][0] if DIMENSION_LABELS[dims[level]] else None
    other = Row(OTHER, "other", parent_labels, Figure(0.0, "", columns[0].window.at), level=level)
    other.detail = f"{len(folded)} more"
    keep_values = [row.labels[own] for row in kept + [r for r in tail if r.kind == "unallocated"]] if own else []
    for column in columns:
        parent = items.with_labels(parent_labels)
        whole = plan.query(parent, (), column)
        shown = (
            plan.query(
                Selection(
                    parent.family, (*parent.matchers, matcher(own, keep_values)), parent.info_matchers, parent.extra
                ),
                (),
                column,
            )
            if own
            else ""
        )
        dollars = sum(_dollars(row, column.name) for row in folded)
        setattr(other, column.name, Figure(dollars, f"{whole} - ({shown} or vector(0))", column.window.at))
    return [*kept, other, *tail]


def _own_labels(dims: Sequence[str], level: int) -> tuple[str, ...]:
    return DIMENSION_LABELS[dims[level]]
