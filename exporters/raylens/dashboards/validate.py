"""Checks on generated dashboards that need no Grafana: schema, house invariants, PromQL syntax.

Grafana cannot be installed on the project's machines, so correctness is established in layers:
Grafana's own dashboard JSON schema (generated from npm ``@grafana/schema``, committed under
``schemas/``), invariants the house style promises, every query through ``promtool``, and (in
``tests/test_dashboards_live.py``) every query against a live Prometheus.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from raylens.dashboards.build import iter_panels

SCHEMA_PATH = Path("schemas/grafana-dashboard.schema.json")
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
# Log panels and annotations read Loki through the dashboard's `loki` variable.
LOKI_REF = {"type": "loki", "uid": "${loki}"}
# Non-Angular panel types only: `graph`, `singlestat` and plugin panels break in Grafana 11/12.
ALLOWED_PANEL_TYPES = {"timeseries", "stat", "bargauge", "table", "heatmap", "piechart", "gauge", "text", "logs"}
# The schema (generated from @grafana/schema's TypeScript types) types annotation targets only for
# Grafana's built-in datasource; Prometheus and Loki annotations carry their query in `target` and
# their formats beside it. Those are checked by `annotation_problems` instead.
_SCHEMA_ANNOTATION_KEYS = {
    "builtIn",
    "datasource",
    "enable",
    "filter",
    "hide",
    "iconColor",
    "name",
    "placement",
    "type",
}
_ANNOTATION_FORMATS = {"titleFormat", "textFormat", "tagKeys", "useValueForTime"}
# Grafana's global variables a query may use, and what the checks substitute for them.
BUILTIN_VARIABLES = {"__rate_interval": "1m", "__interval": "30s", "__range": "1h"}


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel, located for error messages."""

    dashboard: str
    panel_id: int
    panel_title: str
    ref_id: str
    expr: str

    @property
    def where(self) -> str:
        return f"{self.dashboard} panel {self.panel_id} {self.panel_title!r} query {self.ref_id}"


def is_loki(target_or_panel: dict[str, Any]) -> bool:
    return (target_or_panel.get("datasource") or {}).get("type") == "loki"


def iter_queries(dashboard: dict[str, Any]) -> Iterator[PanelQuery]:
    """Every PromQL query: panel targets and Prometheus annotations (``panel_id`` 0); LogQL is
    left to ``iter_log_queries``."""
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            if not is_loki(target):
                yield PanelQuery(dashboard["uid"], panel["id"], panel["title"], target["refId"], target["expr"])
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if not is_loki(annotation) and "target" in annotation:
            yield PanelQuery(
                dashboard["uid"], 0, f"annotation {annotation['name']}", "Anno", annotation["target"]["expr"]
            )


def iter_log_queries(dashboard: dict[str, Any]) -> Iterator[PanelQuery]:
    """Every LogQL query (Loki panel targets and Loki annotations)."""
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            if is_loki(target):
                yield PanelQuery(dashboard["uid"], panel["id"], panel["title"], target["refId"], target["expr"])
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if is_loki(annotation):
            yield PanelQuery(
                dashboard["uid"], 0, f"annotation {annotation['name']}", "Anno", annotation["target"]["expr"]
            )


@cache
def _validator(schema_path: Path) -> Any:
    import jsonschema

    schema = json.loads(schema_path.read_text())
    return jsonschema.Draft7Validator(schema)


def schema_errors(dashboard: dict[str, Any], schema_path: Path) -> list[str]:
    """Every violation of Grafana's dashboard schema, as ``path: message`` lines (annotations: the
    keys the schema knows; see ``annotation_problems`` for the rest)."""
    validator = _validator(schema_path)
    checked = dict(dashboard)
    if "annotations" in dashboard:
        annotations = [
            {key: value for key, value in annotation.items() if key in _SCHEMA_ANNOTATION_KEYS}
            for annotation in dashboard["annotations"].get("list", [])
        ]
        checked["annotations"] = {**dashboard["annotations"], "list": annotations}
    errors = sorted(validator.iter_errors(checked), key=lambda error: list(error.absolute_path))
    return ["/".join(str(part) for part in error.absolute_path) + ": " + error.message for error in errors]


def _variable_names(dashboard: dict[str, Any]) -> set[str]:
    return {variable["name"] for variable in dashboard.get("templating", {}).get("list", [])}


VARIABLE_REFERENCE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|([A-Za-z0-9_]+))")


def _balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    in_string = False
    for index, char in enumerate(expr):
        if char == '"' and (index == 0 or expr[index - 1] != "\\"):
            in_string = not in_string
        if in_string:
            continue
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack and not in_string


def annotation_problems(dashboard: dict[str, Any]) -> list[str]:
    """Annotations read a datasource variable and hold a query with a refId and known formats."""
    uid = dashboard.get("uid") or "<no uid>"
    variables = _variable_names(dashboard)
    problems = []
    for annotation in dashboard.get("annotations", {}).get("list", []):
        where = f"{uid} annotation {annotation.get('name')!r}"
        source = annotation.get("datasource")
        if source not in (DATASOURCE_REF, LOKI_REF):
            problems.append(f"{where}: datasource is not the ${{datasource}} or ${{loki}} variable object")
        elif source == LOKI_REF and "loki" not in variables:
            problems.append(f"{where}: reads ${{loki}}, which the dashboard does not define")
        target = annotation.get("target") or {}
        if not target.get("expr", "").strip() or not target.get("refId"):
            problems.append(f"{where}: target needs expr and refId")
        if not _balanced(target.get("expr", "")):
            problems.append(f"{where}: unbalanced brackets or quotes")
        unknown = set(annotation) - _SCHEMA_ANNOTATION_KEYS - _ANNOTATION_FORMATS - {"target"}
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}")
        for match in VARIABLE_REFERENCE.finditer(target.get("expr", "")):
            name = match.group(1) or match.group(2)
            if name not in variables and name not in BUILTIN_VARIABLES:
                problems.append(f"{where}: uses ${name}, which the dashboard does not define")
    return problems


def invariant_problems(dashboard: dict[str, Any]) -> list[str]:
    """House rules every generated dashboard keeps (empty list when it keeps them all)."""
    problems = annotation_problems(dashboard)
    uid = dashboard.get("uid") or "<no uid>"
    if not dashboard.get("uid"):
        problems.append("dashboard has no fixed uid")
    variables = _variable_names(dashboard)
    if "datasource" not in variables:
        problems.append(f"{uid}: no `datasource` variable")
    all_ids = [panel.get("id") for panel in dashboard.get("panels", [])]
    all_ids += [child.get("id") for panel in dashboard.get("panels", []) for child in panel.get("panels", [])]
    if len(all_ids) != len(set(all_ids)) or None in all_ids:
        problems.append(f"{uid}: panel ids are missing or repeated: {all_ids}")
    titles = [panel["title"] for panel in iter_panels(dashboard)]
    repeated = sorted({title for title in titles if titles.count(title) > 1})
    if repeated:
        problems.append(f"{uid}: panel titles repeated (docs and diffs key on them): {repeated}")
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard.get("panels", []):
        where = f"{uid} panel {panel.get('id')} {panel.get('title')!r}"
        grid = panel.get("gridPos", {})
        if grid.get("x", 0) + grid.get("w", 0) > 24:
            problems.append(f"{where}: wider than the 24-column grid")
        for x in range(grid.get("x", 0), grid.get("x", 0) + grid.get("w", 0)):
            for y in range(grid.get("y", 0), grid.get("y", 0) + grid.get("h", 0)):
                if (x, y) in cells:
                    problems.append(f"{where}: overlaps {cells[(x, y)]!r}")
                    break
                cells[(x, y)] = str(panel.get("title"))
            else:
                continue
            break
        if panel.get("type") == "row":
            continue
        if panel.get("type") not in ALLOWED_PANEL_TYPES:
            problems.append(f"{where}: panel type {panel.get('type')!r} is Angular or not allowed")
        if not panel.get("description"):
            problems.append(f"{where}: no description (the question the panel answers)")
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        if not defaults.get("unit"):
            problems.append(f"{where}: no unit")
        thresholds = defaults.get("thresholds", {})
        steps = thresholds.get("steps")
        if not isinstance(steps, list) or not steps or steps[0].get("value") is not None:
            problems.append(f"{where}: thresholds not explicit (base step with value null first)")
        if not isinstance(panel.get("maxDataPoints"), int):
            problems.append(f"{where}: maxDataPoints not set")
        expected = LOKI_REF if is_loki(panel) else DATASOURCE_REF
        if expected == LOKI_REF and "loki" not in variables:
            problems.append(f"{where}: reads ${{loki}}, which the dashboard does not define")
        if panel.get("datasource") != expected:
            problems.append(f"{where}: datasource is not the ${{datasource}} variable object")
        if panel.get("type") == "logs" and expected != LOKI_REF:
            problems.append(f"{where}: a logs panel must read Loki")
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"{where}: no query")
        ref_ids = [target.get("refId") for target in targets]
        if len(ref_ids) != len(set(ref_ids)) or not all(ref_ids):
            problems.append(f"{where}: refIds missing or repeated: {ref_ids}")
        for target in targets:
            expr = target.get("expr", "")
            label = f"{where} query {target.get('refId')}"
            if target.get("datasource") != expected:
                problems.append(f"{label}: datasource differs from its panel's variable object")
            if not expr.strip():
                problems.append(f"{label}: empty expression")
            if not _balanced(expr):
                problems.append(f"{label}: unbalanced brackets or quotes: {expr}")
            if "{{" in expr or "}}" in expr or "{global_filters}" in expr:
                problems.append(f"{label}: unexpanded placeholder: {expr}")
            for match in VARIABLE_REFERENCE.finditer(expr):
                name = match.group(1) or match.group(2)
                if name not in variables and name not in BUILTIN_VARIABLES:
                    problems.append(f"{label}: uses ${name}, which the dashboard does not define")
    return problems


# --- Variable substitution --------------------------------------------------------------------------


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace ``$var``/``${var}`` and Grafana's builtins the way Grafana formats them for PromQL.

    ``values`` maps a variable name to its already-formatted value (``.*`` for All, ``(a|b)`` for a
    multi-selection).
    """
    merged = {**BUILTIN_VARIABLES, **values}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in merged:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return merged[name]

    return VARIABLE_REFERENCE.sub(replace, expr)


def all_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """Each variable at "All" (its allValue), the datasource at our provisioned uid."""
    values = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "datasource":
            values[variable["name"]] = variable.get("current", {}).get("value", "")
        else:
            values[variable["name"]] = variable.get("allValue", ".*")
    return values


# --- PromQL syntax through promtool -----------------------------------------------------------------


def promtool_problems(queries: Iterable[PanelQuery], values: Mapping[str, str], promtool: str) -> list[str]:
    """Parse every query with ``promtool check rules`` (variables substituted); one line per error.

    Each query becomes a recording rule named after its position, so promtool's error names the
    panel. One promtool run for all queries; on failure, queries are checked one by one to name
    every broken one, not only the first.
    """
    queries = list(queries)
    if not queries:
        return []
    if _promtool_ok([substitute(query.expr, values) for query in queries], promtool) is None:
        return []
    problems = []
    for query in queries:
        error = _promtool_ok([substitute(query.expr, values)], promtool)
        if error is not None:
            problems.append(f"{query.where}: {error}")
    return problems or ["promtool rejected the batch but no single query (promtool bug?)"]


def _promtool_ok(exprs: list[str], promtool: str) -> str | None:
    rules = {
        "groups": [
            {
                "name": "dashboard-queries",
                "rules": [
                    {"record": f"dashboard:query_{index}:check", "expr": expr} for index, expr in enumerate(exprs)
                ],
            }
        ]
    }
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "queries.yml"
        path.write_text(yaml.safe_dump(rules, sort_keys=False))
        result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    if result.returncode == 0:
        return None
    return (result.stderr or result.stdout).strip().splitlines()[-1]
