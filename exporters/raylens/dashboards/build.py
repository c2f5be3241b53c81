"""``raylens dashboards build``: dashboard sources → provisioning JSON and docs pages.

Output is deterministic (sorted keys, two-space indent, trailing newline, no timestamps): building
twice gives the same bytes, so ``git diff`` shows only what a source change did, and
``tests/test_dashboards.py`` fails when the committed files are stale.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from raylens import __version__
from raylens.dashboards.normalise import normalise

SOURCE_SUFFIX = ".dashboard.py"
SOURCE_DIR = Path("dashboards")
OUTPUT_DIR = Path("provisioning/grafana/dashboards")
DOCS_DIR = Path("docs/dashboards")
PREVIEW_DIR = DOCS_DIR / "img"


def version_number(version: str = __version__) -> int:
    """Grafana's ``version`` is an integer: 0.1.0 → 100, 1.12.3 → 11203."""
    parts = [int("".join(ch for ch in part if ch.isdigit()) or 0) for part in version.split(".")[:3]]
    major, minor, patch = [*parts, 0, 0, 0][:3]
    return major * 10000 + minor * 100 + patch


@dataclass(frozen=True)
class BuiltDashboard:
    key: str
    folder: str
    json: dict[str, Any]
    source: Path
    board: Any  # vocabulary.Board, kept for the docs page

    @property
    def output_path(self) -> Path:
        return OUTPUT_DIR / self.folder / f"{self.key}.json"

    @property
    def docs_path(self) -> Path:
        return DOCS_DIR / f"{self.key.replace('_', '-')}.md"


@contextlib.contextmanager
def _sources_importable(source_dir: Path) -> Iterator[None]:
    """Let dashboard files ``import vocabulary`` without installing the folder as a package."""
    sys.path.insert(0, str(source_dir))
    stale = sys.modules.pop("vocabulary", None)
    try:
        yield
    finally:
        sys.path.remove(str(source_dir))
        sys.modules.pop("vocabulary", None)
        if stale is not None:
            sys.modules["vocabulary"] = stale


def _load_module(path: Path) -> ModuleType:
    name = "raylens_dashboard_" + path.name.removesuffix(SOURCE_SUFFIX)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def source_paths(bundle: Path) -> list[Path]:
    return sorted((bundle / SOURCE_DIR).glob(f"*{SOURCE_SUFFIX}"))


def build_dashboards(bundle: Path, version: str = __version__) -> list[BuiltDashboard]:
    """Load every ``dashboards/*.dashboard.py`` and return its normalised JSON."""
    built = []
    with _sources_importable(bundle / SOURCE_DIR):
        catalog = importlib.import_module("vocabulary").CATALOG
        for path in source_paths(bundle):
            key = path.name.removesuffix(SOURCE_SUFFIX)
            board = getattr(_load_module(path), "dashboard", None)
            if board is None or board.key != key:
                raise ValueError(f"{path}: must define `dashboard = Board(key={key!r}, ...)`")
            from grafanalib._gen import DashboardEncoder

            raw = json.loads(
                json.dumps(board.grafanalib(version, version_number(version)).to_json_data(), cls=DashboardEncoder)
            )
            built.append(BuiltDashboard(key, catalog[key].folder, normalise(raw), path, board))
        missing = set(catalog) - {dashboard.key for dashboard in built}
        if missing:
            raise ValueError(f"CATALOG names dashboards without a source file: {sorted(missing)}")
        order = list(catalog)
    return sorted(built, key=lambda dashboard: order.index(dashboard.key))


def dashboard_text(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row, including those inside collapsed rows, in layout order."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def expected_files(bundle: Path, built: list[BuiltDashboard] | None = None) -> dict[Path, str]:
    """Relative path → content of everything ``build`` writes."""
    built = build_dashboards(bundle) if built is None else built
    files = {dashboard.output_path: dashboard_text(dashboard.json) for dashboard in built}
    files |= {dashboard.docs_path: docs_page(dashboard) for dashboard in built}
    files[DOCS_DIR / "README.md"] = docs_index(built)
    return files


def write_files(bundle: Path, files: dict[Path, str]) -> list[Path]:
    """Write the files; remove generated dashboard JSON that no source produces any more."""
    written = []
    for stale in (bundle / OUTPUT_DIR).glob("*/*.json"):
        if stale.relative_to(bundle) not in files:
            stale.unlink()
            written.append(stale)
    for relative, text in files.items():
        target = bundle / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            written.append(target)
    return written


def stale_files(bundle: Path) -> list[str]:
    """What ``build`` would change: differing, missing and orphaned files (empty when fresh)."""
    files = expected_files(bundle)
    problems = [
        f"{relative} differs" if (bundle / relative).exists() else f"{relative} missing"
        for relative, text in sorted(files.items())
        if not (bundle / relative).exists() or (bundle / relative).read_text() != text
    ]
    problems += [
        f"{path.relative_to(bundle)} has no source"
        for path in sorted((bundle / OUTPUT_DIR).glob("*/*.json"))
        if path.relative_to(bundle) not in files
    ]
    return problems


# --- Docs pages -------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def docs_page(built: BuiltDashboard) -> str:
    dashboard = built.json
    board = built.board
    lines = [
        f"# {dashboard['title']}",
        "",
        "<!-- Generated by `raylens dashboards build` from "
        f"`{SOURCE_DIR / built.source.name}`; edit the source, not this page. -->",
        "",
        dashboard.get("description", ""),
        "",
        f"- uid `{dashboard['uid']}`, folder **{built.folder}**, file `{built.output_path}`",
        f"- source [`{SOURCE_DIR / built.source.name}`](../../{SOURCE_DIR / built.source.name})",
        "",
        f"![{dashboard['title']}](img/{built.key.replace('_', '-')}.png)",
        "",
        "## Variables",
        "",
        "| Variable | Label | Values from | All means |",
        "|---|---|---|---|",
    ]
    for variable in board.variables:
        source = "Prometheus datasources" if variable.kind == "datasource" else f"`{_cell(variable.query)}`"
        everything = f"`{variable.all_value}`" if variable.include_all else "—"
        lines.append(f"| `${variable.name}` | {variable.label} | {source} | {everything} |")
    panel_by_title = {panel["title"]: panel for panel in iter_panels(dashboard)}
    for row in board.rows:
        lines += ["", f"## {row.title}", "", "| Panel | Question it answers | Unit | Queries |", "|---|---|---|---|"]
        for placed in row.panels:
            panel = panel_by_title[placed.panel.title]
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
            queries = "<br>".join(f"`{_cell(target['expr'])}`" for target in panel.get("targets", []))
            lines.append(f"| {_cell(panel['title'])} | {_cell(panel.get('description', ''))} | `{unit}` | {queries} |")
    return "\n".join(lines) + "\n"


def docs_index(built: list[BuiltDashboard]) -> str:
    lines = [
        "# Dashboards",
        "",
        "<!-- Generated by `raylens dashboards build`; edit dashboards/*.dashboard.py instead. -->",
        "",
        "Grafana dashboards written in Python (grafanalib 0.7.1 behind `dashboards/vocabulary.py`),",
        "generated into `provisioning/grafana/dashboards/<folder>/` and provisioned by",
        "`provisioning/grafana/`. Each page lists the question every panel answers and shows a preview",
        "drawn from live data by `raylens dashboards render`.",
        "",
        "| Dashboard | Folder | uid | Panels |",
        "|---|---|---|---|",
    ]
    for dashboard in built:
        count = sum(1 for _ in iter_panels(dashboard.json))
        lines.append(
            f"| [{dashboard.json['title']}]({dashboard.docs_path.name}) | {dashboard.folder} | "
            f"`{dashboard.json['uid']}` | {count} |"
        )
    lines += [
        "",
        "Commands: `raylens dashboards build` (regenerate; CI fails on stale files),",
        "`raylens dashboards diff [OLD] [NEW]` (semantic diff between git revisions or folders),",
        "`raylens dashboards render --prometheus URL` (PNG previews; `pip install raylens[render]`).",
    ]
    return "\n".join(lines) + "\n"
