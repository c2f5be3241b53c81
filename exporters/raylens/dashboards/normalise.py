"""Bring grafanalib 0.7.1's output up to Grafana's current dashboard schema.

grafanalib is frozen at Grafana 5-8 habits: ``schemaVersion: 12``, legacy top-level keys, targets
with ``intervalFactor``/``step``, BarGauge in Grafana 6's ``fieldOptions`` shape, Heatmap in the
pre-9 shape, ``null`` everywhere. This module is the whole patch; each rule names what it fixes.
The vocabulary (``dashboards/vocabulary.py``) already passes dict datasources, explicit thresholds,
``maxDataPoints`` and fixed uids, so nothing here invents content: it only removes and reshapes.
"""

from __future__ import annotations

from typing import Any

# Grafana's dashboard schemaVersion for @grafana/schema 13.2.3 (schemas/grafana-dashboard.schema.json).
SCHEMA_VERSION = 42

LEGACY_DASHBOARD_KEYS = ("__inputs", "rows", "style", "hideControls", "sharedCrosshair", "gnetId", "id")
LEGACY_VARIABLE_KEYS = ("useTags", "tagsQuery", "tagValuesQuery", "auto", "auto_min", "auto_count")
LEGACY_PANEL_KEYS = ("editable", "error", "height", "span", "minSpan")
LEGACY_PANEL_KEYS_BY_TYPE = {
    "table": ("color", "columns", "fontSize", "mappings"),
    "heatmap": (
        "cards",
        "color",
        "dataFormat",
        "heatmap",
        "hideZeroBuckets",
        "highlightCards",
        "legend",
        "reverseYBuckets",
        "tooltip",
        "xAxis",
        "xBucketNumber",
        "xBucketSize",
        "yAxis",
        "yBucketBound",
        "yBucketNumber",
        "yBucketSize",
    ),
}
LEGACY_TARGET_KEYS = ("query", "target", "metric", "intervalFactor", "step", "hide")
ROW_KEYS = {"collapsed", "datasource", "gridPos", "id", "panels", "repeat", "title", "type"}


def strip_nulls(value: Any, in_threshold_steps: bool = False) -> Any:
    """Drop ``None`` members; a threshold step keeps ``value: null`` (it means minus infinity)."""
    if isinstance(value, dict):
        return {
            key: strip_nulls(item, key == "steps")
            for key, item in value.items()
            if item is not None or (in_threshold_steps and key == "value")
        }
    if isinstance(value, list):
        return [strip_nulls(item, in_threshold_steps) for item in value]
    return value


def _target(target: dict[str, Any]) -> dict[str, Any]:
    target = {key: value for key, value in target.items() if key not in LEGACY_TARGET_KEYS}
    if not target.get("interval"):
        target.pop("interval", None)
    target["editorMode"] = "code"
    target["range"] = not target.get("instant", False)
    return target


def _bargauge(panel: dict[str, Any]) -> None:
    """Grafana 6 ``options.fieldOptions`` → ``fieldConfig.defaults`` + ``options.reduceOptions``."""
    options = panel.get("options", {})
    field_options = options.pop("fieldOptions", {})
    defaults = panel.setdefault("fieldConfig", {}).setdefault("defaults", {})
    for key in ("decimals", "max", "min", "unit", "links"):
        if field_options.get("defaults", {}).get(key) is not None:
            defaults[key] = field_options["defaults"][key]
    defaults["color"] = {"mode": "thresholds"}
    options["reduceOptions"] = {
        "calcs": field_options.get("calcs", ["lastNotNull"]),
        "fields": "",
        "values": bool(field_options.get("values", False)),
    }
    options.pop("showThresholdLabels", None)
    options.pop("showThresholdMarkers", None)
    options.setdefault("showUnfilled", True)
    options.setdefault("valueMode", "color")
    options.setdefault("namePlacement", "auto")
    options.setdefault("sizing", "auto")


def _panel(panel: dict[str, Any]) -> dict[str, Any]:
    kind = panel.get("type")
    if kind == "row":
        row = {key: value for key, value in panel.items() if key in ROW_KEYS}
        row["panels"] = [_panel(child) for child in row.get("panels", [])]
        return row
    for key in LEGACY_PANEL_KEYS + LEGACY_PANEL_KEYS_BY_TYPE.get(kind, ()):
        panel.pop(key, None)
    if kind == "bargauge":
        _bargauge(panel)
    if kind == "table":
        # Grafana 7's displayMode, replaced by cellOptions (set by the vocabulary).
        panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {}).pop("displayMode", None)
    field_config = panel.setdefault("fieldConfig", {})
    field_config.setdefault("defaults", {})
    field_config.setdefault("overrides", [])
    if not panel.get("hideTimeOverride"):
        panel.pop("hideTimeOverride", None)
    if not panel.get("transparent"):
        panel.pop("transparent", None)
    if not panel.get("links"):
        panel.pop("links", None)
    if not panel.get("transformations"):
        panel.pop("transformations", None)
    panel["targets"] = [_target(target) for target in panel.get("targets", [])]
    return panel


def _variable(variable: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in variable.items() if key not in LEGACY_VARIABLE_KEYS}


def normalise(dashboard: dict[str, Any]) -> dict[str, Any]:
    """Return the dashboard in the shape Grafana's current schema describes."""
    dashboard = strip_nulls(dashboard)
    for key in LEGACY_DASHBOARD_KEYS:
        dashboard.pop(key, None)
    dashboard["schemaVersion"] = SCHEMA_VERSION
    dashboard.get("timepicker", {}).pop("time_options", None)
    templating = dashboard.get("templating", {})
    templating["list"] = [_variable(variable) for variable in templating.get("list", [])]
    dashboard["panels"] = [_panel(panel) for panel in dashboard.get("panels", [])]
    dashboard.setdefault("annotations", {"list": []})
    return dashboard
