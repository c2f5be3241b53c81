"""``raylens dashboards render``: PNG previews of dashboards, drawn from a live Prometheus.

Grafana cannot run on the project's machines, so a reviewer cannot look at a dashboard there. This
draws each dashboard's panels with matplotlib on the same grid Grafana uses (24 columns, rows of
30 px), querying Prometheus with every variable at "All": time series as lines with their legends,
stats as numbers coloured by their thresholds, bar gauges as bars, tables as text, heatmaps as
images, pie charts as donuts. It is a preview for review and docs, not a Grafana look-alike.
Needs the optional ``render`` extra (matplotlib).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import requests
from matplotlib.figure import Figure

from raylens.dashboards.build import build_dashboards
from raylens.dashboards.validate import all_values, substitute

COLUMN_INCHES = 0.62
ROW_INCHES = 0.26
COLOURS = {"green": "#37872d", "yellow": "#e0b400", "orange": "#fa6400", "red": "#c4162a", "blue": "#1f60c4"}
LEGEND_LABEL = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


# --- Values and units -------------------------------------------------------------------------------


def _scaled(value: float, base: float, names: Sequence[str]) -> tuple[float, str]:
    index = 0
    while abs(value) >= base and index < len(names) - 1:
        value /= base
        index += 1
    return value, names[index]


def format_value(value: float, unit: str, decimals: int | None = None) -> str:
    """A value as Grafana would roughly print it for the unit ids our vocabulary uses."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    places = 2 if decimals is None else decimals
    if unit == "percentunit":
        return f"{value * 100:.{1 if decimals is None else decimals}f}%"
    if unit == "percent":
        return f"{value:.1f}%"
    if unit in ("bytes", "Bps"):
        scaled, name = _scaled(value, 1024, ["B", "KiB", "MiB", "GiB", "TiB", "PiB"])
        return f"{scaled:.{1 if decimals is None else decimals}f} {name}" + ("/s" if unit == "Bps" else "")
    if unit in ("s", "ms"):
        seconds = value / 1000 if unit == "ms" else value
        if abs(seconds) < 1:
            return f"{seconds * 1000:.{1 if decimals is None else decimals}f} ms"
        if abs(seconds) < 120:
            return f"{seconds:.{1 if decimals is None else decimals}f} s"
        if abs(seconds) < 7200:
            return f"{seconds / 60:.1f} min"
        return f"{seconds / 3600:.1f} h"
    if unit == "currencyUSD":
        return f"${value:,.{places}f}"
    suffix = {"reqps": " req/s", "ops": " ops/s", "rowsps": " rows/s", "watt": " W", "celsius": " °C", "pps": " p/s"}
    scaled, name = _scaled(value, 1000, ["", "k", "M", "G", "T"])
    text = f"{scaled:.{places}f}".rstrip("0").rstrip(".") if decimals is None else f"{scaled:.{places}f}"
    return f"{text}{name}{suffix.get(unit, '')}"


def threshold_colour(value: float, steps: list[dict[str, Any]]) -> str:
    colour = "green"
    for step in steps:
        if step.get("value") is None or value >= step["value"]:
            colour = step.get("color", colour)
    return COLOURS.get(colour, "#555555")


def legend(template: str, labels: dict[str, str]) -> str:
    if not template or template == "__auto":
        shown = {key: value for key, value in labels.items() if key not in ("__name__", "job")}
        return ", ".join(f"{key}={value}" for key, value in sorted(shown.items())) or "value"
    return LEGEND_LABEL.sub(lambda match: labels.get(match.group(1), ""), template)


# --- Prometheus -------------------------------------------------------------------------------------


class Prometheus:
    def __init__(self, url: str, start: float, end: float) -> None:
        self.url = url.rstrip("/")
        self.start, self.end = start, end
        self.step = max(1.0, (end - start) / 200)

    def range(self, expr: str) -> list[dict[str, Any]]:
        params = {"query": expr, "start": self.start, "end": self.end, "step": self.step}
        body = requests.get(f"{self.url}/api/v1/query_range", params=params, timeout=30).json()
        return body.get("data", {}).get("result", []) if body.get("status") == "success" else []

    def instant(self, expr: str) -> list[dict[str, Any]]:
        body = requests.get(f"{self.url}/api/v1/query", params={"query": expr, "time": self.end}, timeout=30).json()
        return body.get("data", {}).get("result", []) if body.get("status") == "success" else []


# --- Drawing ----------------------------------------------------------------------------------------


def _no_data(axes: Any) -> None:
    axes.text(0.5, 0.5, "No data", ha="center", va="center", color="#888888", fontsize=10, transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def _series(panel: dict[str, Any], source: Prometheus, values: dict[str, str]) -> list[tuple[str, list, list]]:
    out = []
    for target in panel.get("targets", []):
        for result in source.range(substitute(target["expr"], values)):
            xs = [float(point[0]) for point in result["values"]]
            ys = [float(point[1]) for point in result["values"]]
            out.append((legend(target.get("legendFormat", ""), result["metric"]), xs, ys))
    return out


def _draw_panel(axes: Any, panel: dict[str, Any], source: Prometheus, values: dict[str, str]) -> None:
    kind = panel["type"]
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit, decimals = defaults.get("unit", ""), defaults.get("decimals")
    steps = defaults.get("thresholds", {}).get("steps", [])
    axes.set_title(panel["title"], fontsize=8, loc="left", color="#222222")
    axes.tick_params(labelsize=6)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    if (panel.get("datasource") or {}).get("type") == "loki":
        # Previews read Prometheus only: name the LogQL a Loki-backed panel shows.
        axes.axis("off")
        # `$` would start matplotlib's math text: show variables literally.
        query = panel.get("targets", [{}])[0].get("expr", "").replace("$", r"\$")
        axes.text(
            0,
            0.9,
            "Loki: " + query[:160],
            va="top",
            ha="left",
            family="monospace",
            fontsize=5.5,
            color="#555555",
            wrap=True,
            transform=axes.transAxes,
        )
        return
    if kind == "table":
        rows = []
        for target in panel.get("targets", []):
            for result in source.instant(substitute(target["expr"], values)):
                labels = {k: v for k, v in result["metric"].items() if k not in ("__name__", "job")}
                text = ", ".join(f"{v}" for _, v in sorted(labels.items()))
                rows.append(f"{text[:70]:<70}  {format_value(float(result['value'][1]), unit, decimals)}")
        if not rows:
            _no_data(axes)
            return
        axes.axis("off")
        axes.text(
            0,
            0.95,
            "\n".join(rows[:12]),
            va="top",
            ha="left",
            family="monospace",
            fontsize=5.5,
            transform=axes.transAxes,
        )
        return
    series = _series(panel, source, values)
    if not series:
        _no_data(axes)
        return
    if kind == "stat":
        value = sum(ys[-1] for _, _, ys in series if ys)
        axes.axis("off")
        axes.text(
            0.5,
            0.4,
            format_value(value, unit, decimals),
            ha="center",
            va="center",
            fontsize=16,
            color=threshold_colour(value, steps),
            transform=axes.transAxes,
            weight="bold",
        )
        return
    if kind in ("bargauge", "piechart"):
        names = [name for name, _, _ in series][:12]
        lasts = [ys[-1] for _, _, ys in series][:12]
        if kind == "piechart":
            positive = [(n, v) for n, v in zip(names, lasts, strict=True) if v > 0]
            if not positive:
                _no_data(axes)
                return
            axes.pie(
                [v for _, v in positive],
                labels=[n for n, _ in positive],
                textprops={"fontsize": 6},
                wedgeprops={"width": 0.4},
            )
            return
        axes.barh(range(len(lasts)), lasts, color=[threshold_colour(v, steps) for v in lasts])
        axes.set_yticks(range(len(names)), [name[:40] for name in names], fontsize=6)
        axes.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: format_value(v, unit)))
        if defaults.get("max") is not None:
            axes.set_xlim(defaults.get("min", 0), defaults["max"])
        return
    if kind == "heatmap":
        buckets = sorted(series, key=lambda item: float(item[0]) if _is_number(item[0]) else math.inf)
        width = min(len(ys) for _, _, ys in buckets)
        grid = [ys[:width] for _, _, ys in buckets]
        axes.imshow(grid, aspect="auto", origin="lower", cmap="Oranges", interpolation="nearest")
        axes.set_yticks(range(len(buckets)), [name for name, _, _ in buckets], fontsize=5)
        axes.set_xticks([])
        return
    start = source.start
    for name, xs, ys in series[:10]:
        axes.plot([(x - start) / 60 for x in xs], ys, linewidth=1, label=name[:50])
    axes.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: format_value(v, unit)))
    axes.set_xlabel("minutes", fontsize=6)
    axes.legend(fontsize=5, loc="upper left", frameon=False, ncol=2 if len(series) > 4 else 1)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def render_dashboard(
    dashboard: dict[str, Any], source: Prometheus, values: dict[str, str] | None = None, panel_dir: Path | None = None
) -> Figure:
    """One figure laid out like the dashboard's grid."""
    values = values or all_values(dashboard)
    values = {**values, "__range": f"{int(source.end - source.start)}s"}
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    figure = plt.figure(figsize=(24 * COLUMN_INCHES, (bottom + 2) * ROW_INCHES))
    height = bottom + 2
    figure.text(0.01, 1 - 0.6 / height, dashboard["title"], fontsize=14, weight="bold", va="center")
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        left, width = grid["x"] / 24, grid["w"] / 24
        top = 1 - (grid["y"] + 1.6) / height
        if panel["type"] == "row":
            figure.text(0.01, top - 0.5 / height, panel["title"], fontsize=10, weight="bold", color="#1f60c4")
            continue
        box = [left + 0.03, top - grid["h"] / height + 0.55 / height, width - 0.04, (grid["h"] - 1.1) / height]
        axes = figure.add_axes(box)
        _draw_panel(axes, panel, source, values)
        if panel_dir is not None:
            single = plt.figure(figsize=(grid["w"] * COLUMN_INCHES, grid["h"] * ROW_INCHES * 1.3))
            _draw_panel(single.add_axes([0.12, 0.18, 0.84, 0.68]), panel, source, values)
            single.savefig(panel_dir / f"{dashboard['uid']}-panel-{panel['id']}.png", dpi=90)
            plt.close(single)
    return figure


def render_dashboards(
    bundle: Path,
    prometheus_url: str,
    output: Path,
    keys: Sequence[str] | None = None,
    minutes: float = 15,
    panels: bool = False,
    end: float | None = None,
) -> list[Path]:
    """Draw ``<output>/<key>.png`` for each dashboard (``keys``: a subset); returns the files written."""
    output.mkdir(parents=True, exist_ok=True)
    end = time.time() if end is None else end
    source = Prometheus(prometheus_url, end - minutes * 60, end)
    written = []
    for built in build_dashboards(bundle):
        if keys and built.key not in keys:
            continue
        panel_dir = output / "panels" if panels else None
        if panel_dir:
            panel_dir.mkdir(exist_ok=True)
        figure = render_dashboard(built.json, source, panel_dir=panel_dir)
        path = output / f"{built.key.replace('_', '-')}.png"
        figure.savefig(path, dpi=80)
        plt.close(figure)
        written.append(path)
    return written
