"""The house vocabulary for raylens dashboards: one place for uids, folders, units, variables and panels.

A dashboard file (``dashboards/<name>.dashboard.py``) reads as a list of questions and answers::

    dashboard = Board(
        key="hardware",
        variables=[DATASOURCE, NODE],
        rows=[
            Row("CPU", [
                timeseries(
                    "CPU busy per node",
                    "Which nodes are short of CPU, and since when?",
                    [Query("instance:raylens_node_cpu_utilisation:rate5m{...}", "{{instance}}")],
                    unit=RATIO,
                ),
            ]),
        ],
    )

The helpers build grafanalib objects with our defaults: the datasource is always the
``${datasource}`` variable as an object, thresholds are explicit, ``maxDataPoints`` is set, every
panel carries its question as the description and a unit. ``raylens dashboards build`` then lays the
rows out on the grid, numbers the panels, removes what grafanalib emits for Grafana 5-7 and writes
the JSON (see ``raylens.dashboards.build``). Nothing here touches the network or the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grafanalib.core as g

from raylens.promql import variable_query_with_cluster, with_cluster

# --- Dashboards, folders, datasources ---------------------------------------------------------------


@dataclass(frozen=True)
class DashboardEntry:
    """One shipped dashboard: change ``uid`` never (links and bookmarks use it), ``title`` freely."""

    uid: str
    title: str
    folder: str


# Keyed by the source file's name (``<key>.dashboard.py``). Folders are directories under
# provisioning/grafana/dashboards/; Grafana's provider turns them into folders of the same name.
CATALOG: dict[str, DashboardEntry] = {
    "overview": DashboardEntry("raylens-overview", "Raylens / Overview", "Raylens"),
    "hardware": DashboardEntry("raylens-hardware", "Raylens / Hardware & GPU", "Raylens"),
    "ray_core": DashboardEntry("raylens-ray-core", "Raylens / Ray core", "Ray"),
    "ray_data": DashboardEntry("raylens-ray-data", "Raylens / Ray Data", "Ray"),
    "ray_train": DashboardEntry("raylens-ray-train", "Raylens / Ray Train", "Ray"),
    "ray_serve": DashboardEntry("raylens-ray-serve", "Raylens / Ray Serve", "Ray"),
    "cost": DashboardEntry("raylens-cost", "Raylens / Cost drill-down", "Cost"),
    "budgets": DashboardEntry("raylens-budgets", "Raylens / Budgets & quotas", "Cost"),
    "logs_events": DashboardEntry("raylens-logs-events", "Raylens / Logs & events", "Ray"),
}

# Tag on every dashboard: the link menu at the top of each dashboard lists dashboards with it.
TAG = "raylens"

# Provisioned datasources (provisioning/grafana/datasources/datasources.yml) keep these uids.
PROMETHEUS_UID = "raylens-prometheus"
ALERTMANAGER_UID = "raylens-alertmanager"

LOKI_UID = "raylens-loki"

# Every panel and target reads from the dashboard's `datasource` variable, never a fixed uid, so
# the same JSON works with any Prometheus a user picks. Log panels read the `loki` variable.
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
LOKI_REF = {"type": "loki", "uid": "${loki}"}

# --- Units (Grafana unit ids) -----------------------------------------------------------------------
# Our metrics are in base units (seconds, bytes, ratios 0-1); Ray's percents and MiB are converted in
# the query (or a recording rule) before they reach a panel, so a panel never shows "5000 %".

RATIO = "percentunit"  # 0-1 shown as percent
PERCENT = "percent"  # 0-100, only for Ray values we cannot rescale without losing meaning
BYTES = "bytes"  # IEC: KiB, MiB, GiB
BYTES_PER_SECOND = "Bps"
SECONDS = "s"
MILLISECONDS = "ms"
COUNT = "short"  # plain numbers with k/M suffixes
REQUESTS_PER_SECOND = "reqps"
OPS_PER_SECOND = "ops"
ROWS_PER_SECOND = "rowsps"
WATTS = "watt"
CELSIUS = "celsius"
DOLLARS = "currencyUSD"
DOLLARS_PER_HOUR = "currencyUSD"  # the title says "per hour": Grafana has no $/h unit
NONE = "none"  # states, enums, ids
TIMESTAMP = "dateTimeFromNow"  # Unix seconds shown as "3 hours ago"

# --- Colours and thresholds -------------------------------------------------------------------------

GREEN, YELLOW, ORANGE, RED, BLUE, GREY = "green", "yellow", "orange", "red", "blue", "text"


def steps(base: str = GREEN, *points: tuple[float, str]) -> list[dict[str, Any]]:
    """Threshold steps: the base colour, then ``(value, colour)`` from low to high."""
    values = [value for value, _ in points]
    assert values == sorted(values), f"threshold values must increase: {values}"
    return [{"color": base, "value": None}] + [{"color": colour, "value": value} for value, colour in points]


NEUTRAL = steps(GREEN)  # no judgement: the value is information, not a warning
# Utilisation of a resource we pay for: red when saturated.
SATURATION = steps(GREEN, (0.8, ORANGE), (0.95, RED))
# Utilisation of a resource we pay for: low is waste (used where idle capacity costs money).
WASTE = steps(RED, (0.2, ORANGE), (0.5, GREEN))
ANY_IS_BAD = steps(GREEN, (1, RED))  # failures, errors, firing alerts
BUDGET_SHARE = steps(GREEN, (0.8, ORANGE), (1.0, RED))  # spent / budget
WASTE_SHARE = steps(GREEN, (0.3, ORANGE), (0.5, RED))  # share of spend on idle capacity


def states(names: dict[int, tuple[str, str]]) -> list[dict[str, Any]]:
    """Value mappings for an enum gauge: ``{6: ("RUNNING", GREEN)}`` shows RUNNING in green."""
    options = {
        str(value): {"text": text, "color": colour, "index": index}
        for index, (value, (text, colour)) in enumerate(sorted(names.items()))
    }
    return [{"type": "value", "options": options}]


# --- Variables --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    """A dashboard variable: ``name`` is what queries say (``$name``); ``all_value`` what All means."""

    name: str
    label: str
    query: str = ""
    kind: str = "query"
    multi: bool = True
    include_all: bool = True
    all_value: str = ".*"
    description: str = ""
    regex: str = ""
    datasource_type: str = "prometheus"
    """For ``kind="datasource"``: which plugin's datasources to offer (``prometheus``, ``loki``)."""

    def template(self) -> g.Template:
        if self.kind == "datasource":
            default = PROMETHEUS_UID if self.datasource_type == "prometheus" else LOKI_UID
            template = g.Template(
                name=self.name,
                label=self.label,
                query=self.datasource_type,
                type="datasource",
                default=default,
                includeAll=False,
                multi=False,
                refresh=g.REFRESH_ON_DASHBOARD_LOAD,
            )
            template._current = {"selected": True, "text": self.label, "value": default}
            return template
        if self.kind in ("custom", "textbox"):
            # custom: `query` lists the choices, comma-separated; textbox: `query` is the default text.
            choices = self.query.split(",") if self.kind == "custom" else [self.query]
            template = g.Template(
                name=self.name,
                label=self.label,
                query=self.query,
                type=self.kind,
                default=self.query if self.kind == "textbox" else None,
                includeAll=self.include_all and self.kind == "custom",
                multi=self.multi and self.kind == "custom",
                allValue=self.all_value if self.include_all and self.kind == "custom" else None,
                options=[{"selected": False, "text": choice, "value": choice} for choice in choices],
            )
            if self.kind == "custom":
                everything = "$__all" if self.include_all else choices[0]
                template._current = {"selected": True, "text": ["All"], "value": [everything]}
            else:
                template._current = {"selected": False, "text": self.query, "value": self.query}
            return template
        query = self.query if self.name == CLUSTER.name else variable_query_with_cluster(self.query, CLUSTER_MATCHER)
        template = g.Template(
            name=self.name,
            label=self.label,
            query={"query": query, "refId": f"{self.name}-variable"},
            dataSource=DATASOURCE_REF,
            includeAll=self.include_all,
            multi=self.multi,
            allValue=self.all_value if self.include_all else None,
            regex=self.regex or None,
            refresh=g.REFRESH_ON_TIME_RANGE_CHANGE,
            sort=g.SORT_ALPHA_ASC,
        )
        everything = "$__all" if self.include_all else ""
        template._current = {"selected": True, "text": ["All"], "value": [everything]}
        return template


DATASOURCE = Variable("datasource", "Prometheus", kind="datasource", multi=False, include_all=False)
# Many Ray clusters in one Prometheus (docs/deploy.md): every raylens exporter, per node or per
# cluster, labels its series with `cluster`, and `raylens sd` puts it on Ray's targets. Every board
# gets this variable and every query and variable query matches it (see `Query.target`), so no
# dashboard source needs to spell it. All (`.*`) also matches series without the label.
CLUSTER = Variable(
    "cluster",
    "Cluster",
    "label_values(raylens_exporter_build_info, cluster)",
    description="Ray cluster (the exporters' cluster.name). All: every cluster this Prometheus holds, summed.",
)
CLUSTER_MATCHER = 'cluster=~"$cluster"'


def for_cluster(expr: str) -> str:
    """``expr`` with every selector matching the ``cluster`` variable and every vector match keeping
    the label (raylens.promql); aggregations stay as written, so All sums the clusters."""
    return with_cluster(expr, matcher=CLUSTER_MATCHER, group_by=False, bare_aggregations=False)


# Ray's own dashboards call it SessionName: keeping the name keeps `var-SessionName=` URLs working.
# `.*` (not Ray's `.+`) so our own series, which have no SessionName, still match "All".
SESSION = Variable(
    "SessionName",
    "Ray session",
    "label_values(ray_node_cpu_count, SessionName)",
    description="One Ray cluster start (a session). All: every session this Prometheus holds.",
)
# A node is its host address: the part of `instance` before the port for our exporter, `ip` on
# Ray's hardware metrics and `NodeAddress` on Ray's core metrics. All three agree when Prometheus
# scrapes Ray through its service-discovery file.
NODE = Variable(
    "node",
    "Node",
    'label_values(up{job=~"raylens|ray"}, instance)',
    regex="/^\\[?([^\\]]+?)\\]?:\\d+$/",
    description="Host address of a node (without the port).",
)

LOKI = Variable(
    "loki",
    "Loki",
    kind="datasource",
    multi=False,
    include_all=False,
    datasource_type="loki",
    description="Loki fed by Grafana Alloy (provisioning/alloy/config.alloy).",
)

# Selectors spliced into queries; each names the variables it depends on.
OUR_NODE = 'instance=~"($node):.*"'
RAY_NODE = 'ip=~"$node",SessionName=~"$SessionName"'
RAY_CORE = 'NodeAddress=~"$node",SessionName=~"$SessionName"'
RAY_SESSION = 'SessionName=~"$SessionName"'
# Series of the raylens `ray` collector, per Ray node (same labels as Ray's core metrics).
RAYLENS_NODE = 'NodeAddress=~"$node",SessionName=~"$SessionName"'

# --- Queries and panels -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One PromQL target. ``legend`` uses Grafana's ``{{label}}``; ``instant`` for tables and stats."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False
    heatmap: bool = False
    datasource: dict[str, str] = field(default_factory=lambda: DATASOURCE_REF)
    """``LOKI_REF`` for a LogQL query (a ``logs`` panel, or a metric query over logs)."""

    def target(self, ref_id: str) -> g.Target:
        if self.table:
            target_format = "table"
        elif self.heatmap:
            target_format = "heatmap"
        else:
            target_format = g.TIME_SERIES_TARGET_FORMAT
        return g.Target(
            # Log streams (LogQL) carry no `cluster` label (provisioning/alloy/): only PromQL is narrowed.
            expr=for_cluster(self.expr) if self.datasource == DATASOURCE_REF else self.expr,
            legendFormat=self.legend or "__auto",
            refId=ref_id,
            instant=self.instant,
            format=target_format,
            datasource=self.datasource,
        )


def _targets(queries: Query | Sequence[Query]) -> list[g.Target]:
    queries = [queries] if isinstance(queries, Query) else list(queries)
    assert queries, "a panel needs at least one query"
    return [query.target(chr(ord("A") + index)) for index, query in enumerate(queries)]


@dataclass(frozen=True)
class Link:
    """A link from a panel (or a table cell) to another raylens dashboard.

    ``carry`` names the variables passed along; a table cell link can set a variable from the
    clicked row with ``set={"project": "${__data.fields.project}"}``. Time range always travels.
    """

    title: str
    to: str
    carry: tuple[str, ...] = ("datasource", "SessionName")
    set: dict[str, str] = field(default_factory=dict)

    def url(self) -> str:
        entry = CATALOG[self.to]
        parts = ["${__url_time_range}"]
        carried = dict.fromkeys([*self.carry[:1], CLUSTER.name, *self.carry[1:]])  # the cluster always travels
        parts += [f"${{{name}:queryparam}}" for name in carried if name not in self.set]
        parts += [f"var-{name}={value}" for name, value in self.set.items()]
        return f"/d/{entry.uid}?" + "&".join(parts)

    def panel_link(self) -> dict[str, Any]:
        return {
            "asDropdown": False,
            "icon": "dashboard",
            "includeVars": False,
            "keepTime": False,
            "tags": [],
            "targetBlank": False,
            "title": self.title,
            "tooltip": f"Open {CATALOG[self.to].title}",
            "type": "link",
            "url": self.url(),
        }

    def field_link(self) -> dict[str, Any]:
        return {"title": self.title, "url": self.url(), "targetBlank": False}


@dataclass(frozen=True)
class Size:
    width: int
    height: int


FULL, HALF, THIRD, QUARTER, SIXTH = 24, 12, 8, 6, 4


def _common(
    title: str,
    question: str,
    queries: Query | Sequence[Query],
    thresholds: list[dict[str, Any]],
    links: Sequence[Link],
    max_data_points: int,
) -> dict[str, Any]:
    assert "?" in question, f"{title!r}: the description is the question the panel answers"
    sources = {query.datasource["type"] for query in ([queries] if isinstance(queries, Query) else queries)}
    assert len(sources) == 1, f"{title!r}: one datasource per panel"
    return {
        "title": title,
        "description": question,
        "dataSource": LOKI_REF if sources == {"loki"} else DATASOURCE_REF,
        "targets": _targets(queries),
        "thresholds": thresholds,
        "links": [link.panel_link() for link in links],
        "maxDataPoints": max_data_points,
    }


def _defaults(unit: str, decimals: int | None, minimum: float | None, maximum: float | None) -> dict:
    defaults: dict[str, Any] = {"unit": unit}
    if decimals is not None:
        defaults["decimals"] = decimals
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    return defaults


@dataclass
class Placed:
    """A grafanalib panel with the size the layout gives it."""

    panel: g.Panel
    size: Size


def timeseries(
    title: str,
    question: str,
    queries: Query | Sequence[Query],
    unit: str,
    *,
    decimals: int | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    thresholds: list[dict[str, Any]] = NEUTRAL,
    show_thresholds: bool = False,
    stack: bool = False,
    bars: bool = False,
    legend_calcs: Sequence[str] = ("mean", "max", "lastNotNull"),
    links: Sequence[Link] = (),
    width: int = HALF,
    height: int = 8,
) -> Placed:
    """Lines over time; the legend is a table with mean, max and last so nobody has to hover."""
    panel = g.TimeSeries(
        **_common(title, question, queries, thresholds, links, max_data_points=300),
        unit=unit,
        drawStyle="bars" if bars else "line",
        fillOpacity=60 if bars else (25 if stack else 10),
        stacking={"mode": "normal", "group": "A"} if stack else {"mode": "none", "group": "A"},
        legendDisplayMode="table" if legend_calcs else "list",
        legendPlacement="bottom",
        legendCalcs=list(legend_calcs),
        tooltipMode="multi",
        tooltipSort="desc",
        showPoints="never",
        thresholdsStyleMode="dashed" if show_thresholds else "off",
        extraJson={"fieldConfig": {"defaults": _defaults(unit, decimals, minimum, maximum)}},
    )
    return Placed(panel, Size(width, height))


def stat(
    title: str,
    question: str,
    queries: Query | Sequence[Query],
    unit: str,
    *,
    decimals: int | None = None,
    thresholds: list[dict[str, Any]] = NEUTRAL,
    color_background: bool = False,
    sparkline: bool = False,
    reduce: str = "lastNotNull",
    mappings: Sequence[dict[str, Any]] = (),
    links: Sequence[Link] = (),
    width: int = SIXTH,
    height: int = 4,
) -> Placed:
    """One number now (the last value), coloured by its thresholds."""
    panel = g.Stat(
        **_common(title, question, queries, thresholds, links, max_data_points=100),
        format=unit,
        decimals=decimals,
        colorMode="background" if color_background else "value",
        graphMode="area" if sparkline else "none",
        reduceCalc=reduce,
        mappings=list(mappings),
        noValue="no data",
        textMode="auto",
        extraJson={"fieldConfig": {"defaults": {"color": {"mode": "thresholds"}}}},
    )
    return Placed(panel, Size(width, height))


def bargauge(
    title: str,
    question: str,
    queries: Query | Sequence[Query],
    unit: str,
    *,
    minimum: float = 0,
    maximum: float | None = None,
    decimals: int | None = None,
    thresholds: list[dict[str, Any]] = SATURATION,
    links: Sequence[Link] = (),
    width: int = HALF,
    height: int = 8,
) -> Placed:
    """One bar per series (per node, per GPU), last value, coloured by thresholds."""
    panel = g.BarGauge(
        **_common(title, question, queries, thresholds, links, max_data_points=100),
        format=unit,
        min=minimum,
        max=maximum,
        decimals=decimals,
        calc="lastNotNull",
        displayMode=g.GAUGE_DISPLAY_MODE_GRADIENT,
        orientation=g.ORIENTATION_HORIZONTAL,
    )
    return Placed(panel, Size(width, height))


def table(
    title: str,
    question: str,
    queries: Query | Sequence[Query],
    unit: str,
    *,
    columns: dict[str, str] | None = None,
    hide: Sequence[str] = (),
    units: dict[str, str] | None = None,
    decimals: int | None = None,
    thresholds: list[dict[str, Any]] = NEUTRAL,
    sort_by: str | None = None,
    mappings: Sequence[dict[str, Any]] = (),
    cell_links: Sequence[Link] = (),
    width: int = FULL,
    height: int = 8,
) -> Placed:
    """Instant values as rows, one column per label; several queries are joined on their labels.

    ``columns`` renames fields (``{"Value #A": "Spend"}``), ``hide`` drops them, ``units`` gives a
    column its own unit, ``cell_links`` make every row a link (drill-down).
    """
    queries = [queries] if isinstance(queries, Query) else list(queries)
    instant = [Query(q.expr, q.legend, instant=True, table=True) for q in queries]
    transformations: list[dict[str, Any]] = []
    if len(instant) > 1:
        transformations.append({"id": "merge", "options": {}})
    excluded = {"Time": True} | {name: True for name in hide}
    transformations.append(
        {
            "id": "organize",
            "options": {"excludeByName": excluded, "renameByName": dict(columns or {}), "indexByName": {}},
        }
    )
    overrides = [
        {
            "matcher": {"id": "byName", "options": (columns or {}).get(name, name)},
            "properties": [{"id": "unit", "value": column_unit}],
        }
        for name, column_unit in (units or {}).items()
    ]
    defaults = _defaults(unit, decimals, None, None)
    # Grafana 10+ cell options; states are shown as coloured text.
    defaults["custom"] = {"cellOptions": {"type": "color-text" if mappings else "auto"}}
    if mappings:
        defaults["mappings"] = list(mappings)
    if cell_links:
        defaults["links"] = [link.field_link() for link in cell_links]
    panel = g.Table(
        **_common(title, question, instant, thresholds, (), max_data_points=100),
        unit=unit,
        overrides=overrides,
        transformations=transformations,
        sortBy=[g.TableSortByField(displayName=sort_by, desc=True)] if sort_by else [],
        extraJson={"fieldConfig": {"defaults": defaults}},
    )
    return Placed(panel, Size(width, height))


def heatmap(
    title: str,
    question: str,
    query: Query,
    unit: str,
    *,
    width: int = HALF,
    height: int = 8,
) -> Placed:
    """A Prometheus histogram (``sum by (le) (rate(..._bucket[...]))``) as a heatmap over time."""
    heat_query = Query(query.expr, "{{le}}", heatmap=True)
    panel = g.Heatmap(
        **_common(title, question, heat_query, NEUTRAL, (), max_data_points=100),
        extraJson={
            "options": {
                "calculate": False,
                "cellGap": 1,
                "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5},
                "yAxis": {"unit": unit, "axisPlacement": "left"},
                "rowsFrame": {"layout": "auto"},
                "legend": {"show": True},
                "tooltip": {"mode": "single", "yHistogram": True},
                "cellValues": {"unit": "short"},
                "filterValues": {"le": 1e-9},
            },
            "fieldConfig": {"defaults": {"unit": unit, "custom": {}}, "overrides": []},
        },
    )
    return Placed(panel, Size(width, height))


def pie(
    title: str,
    question: str,
    queries: Query | Sequence[Query],
    unit: str,
    *,
    decimals: int | None = None,
    width: int = THIRD,
    height: int = 8,
) -> Placed:
    """Shares of a whole (spend by market, nodes by type), last value, legend with value and share."""
    panel = g.PieChartv2(
        **_common(title, question, queries, NEUTRAL, (), max_data_points=100),
        unit=unit,
        pieType="donut",
        legendDisplayMode="table",
        legendPlacement="right",
        legendValues=["value", "percent"],
        tooltipMode="single",
        extraJson={"fieldConfig": {"defaults": _defaults(unit, decimals, None, None)}},
    )
    return Placed(panel, Size(width, height))


def logs(
    title: str,
    question: str,
    query: Query,
    *,
    links: Sequence[Link] = (),
    width: int = FULL,
    height: int = 10,
) -> Placed:
    """Log lines from Loki (``query.datasource`` is ``LOKI_REF``), newest first, with their labels."""
    assert query.datasource == LOKI_REF, f"{title!r}: a logs panel reads Loki"
    panel = g.Logs(
        **_common(title, question, query, NEUTRAL, links, max_data_points=1000),
        showLabels=False,
        showCommonLabels=False,
        showTime=True,
        wrapLogMessages=True,
        sortOrder="Descending",
        enableLogDetails=True,
        extraJson={"fieldConfig": {"defaults": {"unit": NONE}}},
    )
    return Placed(panel, Size(width, height))


@dataclass(frozen=True)
class Annotation:
    """A dashboard annotation: each non-zero point of ``expr`` (Prometheus), or each line of a LogQL
    stream (``datasource=LOKI_REF``), marks the time axis of every time-series panel."""

    name: str
    expr: str
    title: str
    text: str = ""
    colour: str = "red"
    datasource: dict[str, str] = field(default_factory=lambda: DATASOURCE_REF)
    tags: tuple[str, ...] = ()

    def json(self) -> dict[str, Any]:
        """Grafana's current layout: the query in ``target`` (where Grafana 10+ moves a legacy
        top-level ``expr``/``step``), the formats beside it where the datasources read them."""
        prometheus = self.datasource["type"] == "prometheus"
        target: dict[str, Any] = {"expr": for_cluster(self.expr) if prometheus else self.expr, "refId": "Anno"}
        if prometheus:
            target["interval"] = "30s"
        else:
            target["queryType"] = "range"
        return {
            "name": self.name,
            "datasource": self.datasource,
            "enable": True,
            "hide": False,
            "iconColor": self.colour,
            "target": target,
            "titleFormat": self.title,
            "textFormat": self.text,
            "tagKeys": ",".join(self.tags),
        }


@dataclass
class Row:
    """A titled band of panels, laid out left to right and wrapped at the grid's 24 columns."""

    title: str
    panels: list[Placed]
    collapsed: bool = False


@dataclass
class Board:
    """One dashboard: ``key`` picks its uid, title and folder from ``CATALOG``."""

    key: str
    description: str
    variables: list[Variable]
    rows: list[Row]
    time_from: str = "now-6h"
    refresh: str = "30s"
    annotations: list[Annotation] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Every board has the cluster variable, right after the datasource.
        if CLUSTER not in self.variables:
            at = 1 if self.variables and self.variables[0].kind == "datasource" else 0
            self.variables = [*self.variables[:at], CLUSTER, *self.variables[at:]]

    @property
    def entry(self) -> DashboardEntry:
        return CATALOG[self.key]

    def grafanalib(self, version_tag: str, version_number: int) -> g.Dashboard:
        """The grafanalib dashboard with gridPos computed row by row (24 columns wide)."""
        panels: list[g.Panel] = []
        y = 0
        for row in self.rows:
            placed_panels: list[g.Panel] = []
            x, row_height, inner_y = 0, 0, y + 1
            for placed in row.panels:
                size = placed.size
                if x + size.width > 24:
                    x, inner_y, row_height = 0, inner_y + row_height, 0
                placed_panels.append(
                    _evolve(placed.panel, gridPos=g.GridPos(h=size.height, w=size.width, x=x, y=inner_y))
                )
                x += size.width
                row_height = max(row_height, size.height)
            panels.append(
                g.RowPanel(
                    title=row.title,
                    gridPos=g.GridPos(h=1, w=24, x=0, y=y),
                    collapsed=row.collapsed,
                    panels=placed_panels if row.collapsed else [],
                )
            )
            if not row.collapsed:
                panels.extend(placed_panels)
            y = inner_y + row_height
        entry = self.entry
        return g.Dashboard(
            title=entry.title,
            uid=entry.uid,
            description=self.description,
            tags=[TAG, f"raylens-{version_tag}"],
            version=version_number,
            editable=False,
            graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
            timezone="browser",
            refresh=self.refresh,
            time=g.Time(self.time_from, "now"),
            templating=g.Templating([variable.template() for variable in self.variables]),
            annotations=g.Annotations([annotation.json() for annotation in self.annotations]),
            links=[
                g.DashboardLink(
                    title="Raylens dashboards",
                    type="dashboards",
                    tags=[TAG],
                    asDropdown=True,
                    includeVars=True,
                    keepTime=True,
                    icon="external link",
                    tooltip="Every raylens dashboard, with this time range and these variables",
                )
            ],
            panels=panels,
        ).auto_panel_ids()


def _evolve(panel: g.Panel, **changes: Any) -> g.Panel:
    import attr

    return attr.evolve(panel, **changes)
