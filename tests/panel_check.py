"""Does every panel of every dashboard show data on a live Prometheus? Shared by the live dashboard
test and the `raylens up` demo test: each panel target (variables at "All") is queried over a time
range, every variable's query must offer a value."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import requests

from raylens.dashboards.build import build_dashboards, iter_panels
from raylens.dashboards.validate import all_values, is_loki, substitute
from raylens.stack.tools import bundle_root


def _query_range(url: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    params = {"query": expr, "start": start, "end": end, "step": 2}
    body = requests.get(f"{url}/api/v1/query_range", params=params, timeout=30).json()
    assert body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def _query(url: str, expr: str, at: float) -> list[dict[str, Any]]:
    body = requests.get(f"{url}/api/v1/query", params={"query": expr, "time": at}, timeout=30).json()
    assert body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def _variable_expr(query: Any) -> str:
    """``label_values(metric{sel}, label)`` → the PromQL whose series carry the offered values."""
    text = query["query"] if isinstance(query, dict) else query
    inner = text[len("label_values(") : -1]
    selector, _, label = inner.rpartition(",")
    return f"count by ({label.strip()}) ({selector.strip()})"


def empty_targets(
    url: str, started: float, end: float, rate_interval: str, exceptions: Container[tuple[str, str]]
) -> tuple[list[str], set[tuple[str, str]]]:
    """Each panel target with no series over ``started``..``end`` (outside ``exceptions``), and every
    variable with no value; and the set of (dashboard uid, panel title) that had no data at all."""
    values_extra = {"__rate_interval": rate_interval, "__interval": "2s", "__range": f"{int(end - started) + 60}s"}
    # "This range against the previous one" needs history before the range: over half the test's
    # time, the first half is the previous range.
    previous_range = {**values_extra, "__range": f"{int((end - started) / 2)}s"}
    empty: list[str] = []
    empty_panels: set[tuple[str, str]] = set()
    for built in build_dashboards(bundle_root()):
        dashboard = built.json
        values = {**all_values(dashboard), **values_extra}
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                expr = substitute(_variable_expr(variable["query"]), values)
                if not _query_range(url, expr, started, end):
                    empty.append(f"{dashboard['uid']} variable ${variable['name']}: no values from {expr}")
        for panel in iter_panels(dashboard):
            key = (dashboard["uid"], panel["title"])
            for target in panel["targets"]:
                if is_loki(target):
                    # No Loki can run here: LogQL panels are checked offline against the labels
                    # Alloy sets (tests/test_log_shipping.py).
                    continue
                compared = "offset $__range" in target["expr"]
                expr = substitute(target["expr"], {**values, **previous_range} if compared else values)
                instant = target.get("instant")
                result = _query(url, expr, end) if instant else _query_range(url, expr, started, end)
                if not result:
                    empty_panels.add(key)
                    if key not in exceptions:
                        empty.append(f"{dashboard['uid']} {panel['title']!r} {target['refId']}: {expr}")
    return empty, empty_panels
