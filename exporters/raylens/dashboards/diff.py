"""``raylens dashboards diff``: what changed between two revisions, in a reviewer's terms.

A raw JSON diff of a regenerated dashboard is hundreds of lines of ids and grid positions. This
compares dashboards by uid and panels by title, and reports panels added, removed and moved, and
changed types, queries, units, decimals, thresholds, descriptions and variables.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from raylens.dashboards.build import OUTPUT_DIR

Dashboards = dict[str, dict[str, Any]]


def load_folder(folder: Path) -> Dashboards:
    dashboards = {}
    for path in sorted(folder.rglob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "panels" in data:
            dashboards[data.get("uid") or path.stem] = data
    return dashboards


def load_revision(repo: Path, revision: str) -> Dashboards:
    """Dashboard JSON under provisioning/grafana/dashboards/ at a git revision."""
    listing = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-r", "--name-only", revision, "--", str(OUTPUT_DIR)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    dashboards = {}
    for name in listing:
        if not name.endswith(".json"):
            continue
        text = subprocess.run(
            ["git", "-C", str(repo), "show", f"{revision}:{name}"], capture_output=True, text=True, check=True
        ).stdout
        data = json.loads(text)
        dashboards[data.get("uid") or Path(name).stem] = data
    return dashboards


def load(repo: Path, spec: str | None) -> Dashboards:
    """``None``: the working tree; an existing folder; otherwise a git revision."""
    if spec is None:
        return load_folder(repo / OUTPUT_DIR)
    if Path(spec).is_dir():
        return load_folder(Path(spec))
    return load_revision(repo, spec)


def _panels_with_rows(dashboard: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str]]:
    """Title → (panel, row title), rows excluded."""
    panels: dict[str, tuple[dict[str, Any], str]] = {}
    row = ""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            row = panel.get("title", "")
            for child in panel.get("panels", []):
                panels[child.get("title", f"#{child.get('id')}")] = (child, row)
            continue
        panels[panel.get("title", f"#{panel.get('id')}")] = (panel, row)
    return panels


def _where(panel: dict[str, Any], row: str) -> str:
    grid = panel.get("gridPos", {})
    return f"row {row!r} at x={grid.get('x')} y={grid.get('y')} {grid.get('w')}x{grid.get('h')}"


def _thresholds(panel: dict[str, Any]) -> str:
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps", [])
    return ", ".join(
        f"{step.get('color')}" if step.get("value") is None else f"{step.get('color')}≥{step.get('value')}"
        for step in steps
    )


def _panel_changes(title: str, old: tuple[dict, str], new: tuple[dict, str]) -> list[str]:
    (before, old_row), (after, new_row) = old, new
    lines = []
    prefix = f"  ~ panel {title!r}:"
    if (before.get("gridPos"), old_row) != (after.get("gridPos"), new_row):
        lines.append(f"{prefix} moved from {_where(before, old_row)} to {_where(after, new_row)}")
    if before.get("type") != after.get("type"):
        lines.append(f"{prefix} type {before.get('type')} → {after.get('type')}")
    old_defaults = before.get("fieldConfig", {}).get("defaults", {})
    new_defaults = after.get("fieldConfig", {}).get("defaults", {})
    for key in ("unit", "decimals", "min", "max"):
        if old_defaults.get(key) != new_defaults.get(key):
            lines.append(f"{prefix} {key} {old_defaults.get(key)} → {new_defaults.get(key)}")
    if _thresholds(before) != _thresholds(after):
        lines.append(f"{prefix} thresholds [{_thresholds(before)}] → [{_thresholds(after)}]")
    if before.get("description") != after.get("description"):
        lines.append(f"{prefix} question {before.get('description')!r} → {after.get('description')!r}")
    old_targets = {target.get("refId"): target for target in before.get("targets", [])}
    new_targets = {target.get("refId"): target for target in after.get("targets", [])}
    for ref_id in sorted(old_targets.keys() | new_targets.keys()):
        was, now = old_targets.get(ref_id), new_targets.get(ref_id)
        if was is None and now is not None:
            lines.append(f"{prefix} query {ref_id} added: {now.get('expr')}")
        elif now is None and was is not None:
            lines.append(f"{prefix} query {ref_id} removed: {was.get('expr')}")
        elif was is not None and now is not None:
            if was.get("expr") != now.get("expr"):
                lines.append(f"{prefix} query {ref_id}:\n      - {was.get('expr')}\n      + {now.get('expr')}")
            if was.get("legendFormat") != now.get("legendFormat"):
                lines.append(f"{prefix} legend {ref_id} {was.get('legendFormat')!r} → {now.get('legendFormat')!r}")
    return lines


def _variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard.get("templating", {}).get("list", [])}


def diff_dashboards(old: Dashboards, new: Dashboards) -> list[str]:
    lines: list[str] = []
    for uid in sorted(old.keys() | new.keys()):
        before, after = old.get(uid), new.get(uid)
        if before is None and after is not None:
            count = len(_panels_with_rows(after))
            lines.append(f"+ dashboard {uid} ({after.get('title')}), {count} panels")
            continue
        if after is None and before is not None:
            lines.append(f"- dashboard {uid} ({before.get('title')})")
            continue
        assert before is not None and after is not None
        changes: list[str] = []
        if before.get("title") != after.get("title"):
            changes.append(f"  ~ title {before.get('title')!r} → {after.get('title')!r}")
        old_vars, new_vars = _variables(before), _variables(after)
        for name in sorted(old_vars.keys() | new_vars.keys()):
            if name not in new_vars:
                changes.append(f"  - variable ${name}")
            elif name not in old_vars:
                changes.append(f"  + variable ${name}: {json.dumps(new_vars[name].get('query'))}")
            elif old_vars[name].get("query") != new_vars[name].get("query"):
                changes.append(
                    f"  ~ variable ${name} query {json.dumps(old_vars[name].get('query'))}"
                    f" → {json.dumps(new_vars[name].get('query'))}"
                )
        old_panels, new_panels = _panels_with_rows(before), _panels_with_rows(after)
        for title in sorted(old_panels.keys() - new_panels.keys()):
            panel, row = old_panels[title]
            changes.append(f"  - panel {title!r} ({panel.get('type')}) from row {row!r}")
        for title in sorted(new_panels.keys() - old_panels.keys()):
            panel, row = new_panels[title]
            exprs = "; ".join(target.get("expr", "") for target in panel.get("targets", []))
            changes.append(f"  + panel {title!r} ({panel.get('type')}) in row {row!r}: {exprs}")
        for title in sorted(old_panels.keys() & new_panels.keys()):
            changes += _panel_changes(title, old_panels[title], new_panels[title])
        if changes:
            lines.append(f"{uid} ({after.get('title')}):")
            lines += changes
    return lines


def diff_revisions(repo: Path, old: str, new: str | None) -> list[str]:
    return diff_dashboards(load(repo, old), load(repo, new))
