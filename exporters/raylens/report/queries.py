"""PromQL for report figures: which metric family answers a ``--by``, and the query behind each figure.

Spend over ``[start, end)`` is ``increase(counter[end - start] @ end)`` summed over series: the
counters are the exporter's exact, persisted spend (docs/cost-model.md), ``increase`` corrects for
counter resets (an exporter restart that lost its state), and the window is aligned to the period's
boundaries by the ``@`` modifier, so each figure is one instant query anyone can paste into
Prometheus. Three families of counters answer different questions:

* ``allocation`` (``raylens_cost_allocation_dollars_total``): project, team, user, workload, cost kind;
  ``__idle__`` is what nobody held.
* ``job`` (``raylens_cost_job_dollars_total``): per Ray job, with its project, team and user; idle comes
  from the allocation family.
* ``node`` (``raylens_cost_node_dollars_total``): instance type, market, cost kind, and cloud (joined
  from ``raylens_cost_node_info`` over the whole period, so nodes that ended mid-period keep it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DIMENSIONS = (
    "org",
    "cluster",
    "cloud",
    "project",
    "team",
    "user",
    "job",
    "workload",
    "instance_type",
    "market",
    "cost_kind",
)
# The label each dimension groups by (org groups by nothing: everything together).
DIMENSION_LABELS: Mapping[str, tuple[str, ...]] = {
    "org": (),
    # Every series carries `cluster` (the exporter adds it), so every family can split by it.
    "cluster": ("cluster",),
    "cloud": ("cloud",),
    "project": ("project",),
    "team": ("team",),
    "user": ("user",),
    "job": ("job_id", "submission_id"),
    "workload": ("workload",),
    "instance_type": ("instance_type",),
    "market": ("market",),
    "cost_kind": ("cost_kind",),
}
FILTER_LABELS: Mapping[str, str] = {
    "cluster": "cluster",
    "cloud": "cloud",
    "project": "project",
    "team": "team",
    "user": "user",
    "job": "job_id",
    "workload": "workload",
    "instance_type": "instance_type",
    "market": "market",
    "cost_kind": "cost_kind",
}
IDLE = "__idle__"
UNALLOCATED = "__unallocated__"
NODE_INFO = "raylens_cost_node_info"
# Labels that identify one node's series across the node counter and its info series.
NODE_MATCH = "job, instance, node_id"


class UsageError(ValueError):
    """A combination of options the report cannot answer; ``str()`` says why and what would work."""


@dataclass(frozen=True)
class Family:
    name: str
    metric: str
    dimensions: frozenset[str]
    idle_rows: bool  # whether idle is separable as its own row


ALLOCATION = Family(
    "allocation",
    "raylens_cost_allocation_dollars_total",
    frozenset({"org", "cluster", "project", "team", "user", "workload", "cost_kind"}),
    True,
)
JOB = Family(
    "job", "raylens_cost_job_dollars_total", frozenset({"org", "cluster", "project", "team", "user", "job"}), True
)
NODE = Family(
    "node",
    "raylens_cost_node_dollars_total",
    frozenset({"org", "cluster", "cloud", "instance_type", "market", "cost_kind"}),
    False,
)
FAMILIES = (ALLOCATION, JOB, NODE)


def choose_family(dimensions: Sequence[str], filters: Mapping[str, Sequence[str]]) -> Family:
    wanted = set(dimensions) | set(filters)
    for family in FAMILIES:
        if wanted <= family.dimensions:
            return family
    groups = "; ".join(f"{', '.join(sorted(f.dimensions - {'org'}))} ({f.metric})" for f in FAMILIES)
    raise UsageError(
        f"--by/filters {', '.join(sorted(wanted))} mix labels no single spend counter carries; combine only "
        f"dimensions of one family: {groups}"
    )


def _escape(value: str) -> str:
    """A PromQL double-quoted string body: Go's escapes, which JSON's are a subset of."""
    out = []
    for char in value:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


def _regex_escape(value: str) -> str:
    special = set(r".^$*+?()[]{}|\\")
    return "".join("\\" + char if char in special else char for char in value)


def matcher(label: str, values: Sequence[str]) -> str:
    if len(values) == 1:
        return f'{label}="{_escape(values[0])}"'
    return f'{label}=~"{_escape("|".join(_regex_escape(value) for value in values))}"'


@dataclass(frozen=True)
class Selection:
    """What a report reads: the family, label matchers on its counter, matchers on the node info
    series (cloud), and raw matchers from ``--selector`` added to every series read."""

    family: Family
    matchers: tuple[str, ...] = ()
    info_matchers: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()

    def with_labels(self, labels: Mapping[str, str]) -> Selection:
        """Narrowed to one row: its labels as exact matchers (cloud on the info series)."""
        matchers, info = list(self.matchers), list(self.info_matchers)
        # An exact value makes a `label!="..."` exclusion on the same label redundant.
        matchers = [m for m in matchers if not any(m.startswith(f'{label}!="') for label in labels)]
        for label, value in labels.items():
            (info if label == "cloud" else matchers).append(matcher(label, [value]))
        return Selection(self.family, tuple(matchers), tuple(info), self.extra)

    def idle(self) -> Selection:
        """The idle spend of the allocation family, under the same extra matchers."""
        kinds = tuple(m for m in self.matchers if m.startswith("cost_kind"))
        return Selection(ALLOCATION, (f'project="{IDLE}"', *kinds), (), self.extra)

    @property
    def joins_cloud(self) -> bool:
        return self.family is NODE


def _selector(metric: str, matchers: Sequence[str]) -> str:
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def per_series(selection: Selection, function: str, seconds: int, at: int | None, cloud: bool) -> str:
    """``function(counter[seconds] @ at)`` per series, with ``cloud`` joined when asked for; without
    ``at``, evaluated at the query's own time (range queries for charts)."""
    counter = _selector(selection.family.metric, (*selection.matchers, *selection.extra))
    pinned = f" @ {at}" if at is not None else ""
    spend = f"{function}({counter}[{seconds}s]{pinned})"
    if not cloud:
        return spend
    info = _selector(NODE_INFO, (*selection.info_matchers, *selection.extra))
    clouds = f"topk by ({NODE_MATCH}) (1, max by ({NODE_MATCH}, cloud) (max_over_time({info}[{seconds}s]{pinned})))"
    joined = f"{spend} * on ({NODE_MATCH}) group_left (cloud) {clouds}"
    if selection.info_matchers:
        return joined
    # Nodes with no info series in the period (never alive in it) keep cloud="" rather than vanish.
    return f"({joined}) or on ({NODE_MATCH}, cost_kind) {spend}"


def sum_by(labels: Sequence[str], inner: str) -> str:
    return f"sum by ({', '.join(labels)}) ({inner})" if labels else f"sum({inner})"


@dataclass(frozen=True)
class Window:
    """Where figures are read: spend over ``seconds`` ending ``at``."""

    seconds: int
    at: int | None


def spend_query(selection: Selection, labels: Sequence[str], window: Window, cloud: bool) -> str:
    return sum_by(labels, per_series(selection, "increase", window.seconds, window.at, cloud))


def forecast_query(
    selection: Selection, labels: Sequence[str], window: Window, rate_seconds: int, remaining: int, cloud: bool
) -> str:
    """Spend so far + the mean rate over the last ``rate_seconds`` x the time left (0 for series with
    no samples in that window: ended jobs add nothing more)."""
    spent = spend_query(selection, labels, window, cloud)
    rate = sum_by(labels, per_series(selection, "rate", rate_seconds, window.at, cloud))
    return f"{spent} + ({rate} * {remaining} or {spent} * 0)"


def with_idle(family_query: str, idle_query: str) -> str:
    """Family total plus idle, each empty side read as 0."""
    return f"({family_query} or vector(0)) + ({idle_query} or vector(0))"


def born_inside(selection: Selection, window: Window) -> str:
    """What the counters of series first seen inside the window already held at their first sample.

    raylens back-fills spend a series accrued before it was first scraped (a node running before the
    exporter started, a job between two scrapes) into its first sample; ``increase()`` extrapolates at
    most half a scrape interval before the first sample, so two families whose series begin at
    different times may differ by up to this much. Series present at the window's start are left out.
    """
    counter = _selector(selection.family.metric, (*selection.matchers, *selection.extra))
    start = (window.at or 0) - window.seconds
    return f"sum(min_over_time({counter}[{window.seconds}s] @ {window.at}) unless {counter} @ {start})"
