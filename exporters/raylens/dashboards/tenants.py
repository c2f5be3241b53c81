"""``raylens dashboards tenants``: Grafana folders per audience, from the built dashboards.

Grafana's file provisioning can create folders (one dashboard provider per folder) and fill them; it
cannot create teams or set folder permissions (Grafana OSS provisions neither: they are API calls,
docs/grafana-tenancy.md shows them). From a tenants file::

    audiences:                      # folder name -> dashboards (keys of dashboards/vocabulary.py's CATALOG)
      Platform: all
      Finance: [cost, budgets]
    teams: [ml, vision]             # one folder "Team <name>" each, with the team's own copy of:
    team_dashboards: [cost]

it writes ``<output>/providers.yaml`` (point Grafana's provisioning/dashboards at it) and
``<output>/<folder>/*.json``. A team's copy keeps only the panels whose queries read series that carry a
``team`` label (cost allocation and job spend, job info), with ``team="<name>"`` added to every such
selector, and gets its own uid and title. That narrows what the team *sees*; it does not stop anyone
who can query the data source from asking for other teams' series (see the docs for what does).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from raylens.config import ConfigError, problems_from_validation, read_yaml_mapping
from raylens.dashboards.build import OUTPUT_DIR, dashboard_text
from raylens.promql import with_cluster

# Series that carry the `team` label (docs/metrics.md): the cost engine's allocation and job spend,
# raylens_ray_job_info, and the team-level recording rules.
TEAM_LABELLED = re.compile(r"^(raylens_cost_allocation_|raylens_cost_job_|raylens_ray_job_info$|team:)")
_TEAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class TenantsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    audiences: dict[str, str | list[str]] = Field(default_factory=dict)
    teams: list[str] = Field(default_factory=list)
    team_dashboards: list[str] = Field(default_factory=lambda: ["cost"])

    @field_validator("teams")
    @classmethod
    def _teams(cls, value: list[str]) -> list[str]:
        for team in value:
            if not _TEAM_NAME.match(team):
                raise ValueError(f"expected team names of letters, digits, '.', '_' or '-', got {team!r}")
        return value


def _built(bundle: Path) -> dict[str, dict[str, Any]]:
    """Dashboard key → JSON, from the committed provisioning files."""
    return {path.stem: json.loads(path.read_text()) for path in sorted((bundle / OUTPUT_DIR).glob("*/*.json"))}


def team_copy(dashboard: dict[str, Any], team: str) -> dict[str, Any]:
    """The dashboard narrowed to one team: team-labelled panels only, each such selector matching it."""
    copied = copy.deepcopy(dashboard)
    matcher = f'team="{team}"'
    selects = TEAM_LABELLED.match

    def keep(panel: dict[str, Any]) -> bool:
        targets = panel.get("targets", [])
        if not targets:
            return False
        for target in targets:
            rewritten = with_cluster(
                target["expr"], label="team", matcher=matcher, group_by=False, group_on=False,
                bare_aggregations=False, selects=lambda name: bool(selects(name)),
            )  # fmt: skip
            if rewritten == target["expr"]:
                return False  # this query reads nothing team-labelled: the panel would show every team
            target["expr"] = rewritten
        return True

    panels, pending_row = [], None
    for panel in copied.get("panels", []):
        if panel.get("type") == "row":
            panel["panels"] = [inner for inner in panel.get("panels", []) if keep(inner)]
            pending_row = panel if not panel["panels"] else None
            if panel["panels"]:
                panels.append(panel)
            continue
        if keep(panel):
            if pending_row is not None:
                panels.append(pending_row)
                pending_row = None
            panels.append(panel)
    copied["panels"] = panels
    for variable in copied.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict) and isinstance(query.get("query"), str):
            query["query"] = _team_variable_query(query["query"], matcher)
    copied["uid"] = f"{dashboard['uid']}-team-{team}"[:40]
    copied["title"] = f"{dashboard['title']} (team {team})"
    copied["tags"] = [*dashboard.get("tags", []), f"team-{team}"]
    return copied


def _team_variable_query(query: str, matcher: str) -> str:
    return with_cluster(
        query, label="team", matcher=matcher, group_by=False, group_on=False, bare_aggregations=False,
        selects=lambda name: bool(TEAM_LABELLED.match(name)),
    )  # fmt: skip


def tenant_files(bundle: Path, tenants: TenantsFile, output: Path) -> dict[Path, str]:
    """Path under ``output`` → content."""
    built = _built(bundle)
    named = {key for keys in tenants.audiences.values() if keys != "all" for key in keys} | set(tenants.team_dashboards)
    unknown = sorted(named - set(built))
    if unknown:
        raise ValueError(f"unknown dashboards {unknown}; expected some of {sorted(built)}")
    folders: dict[str, dict[str, dict[str, Any]]] = {}
    for folder, keys in tenants.audiences.items():
        chosen = sorted(built) if keys == "all" else keys
        folders[folder] = {key: built[key] for key in chosen}
    for team in tenants.teams:
        folders[f"Team {team}"] = {f"{key}-{team}": team_copy(built[key], team) for key in tenants.team_dashboards}
    files: dict[Path, str] = {}
    providers = []
    for folder, dashboards in folders.items():
        slug = re.sub(r"[^a-z0-9]+", "-", folder.lower()).strip("-")
        providers.append(
            {
                "name": f"raylens-{slug}",
                "orgId": 1,
                "type": "file",
                "folder": folder,
                "folderUid": f"raylens-{slug}"[:40],
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 30,
                "options": {"path": str(output / slug)},
            }
        )
        for key, dashboard in dashboards.items():
            files[Path(slug) / f"{key}.json"] = dashboard_text(dashboard)
    header = (
        "# Generated by `raylens dashboards tenants`: one Grafana folder per audience. Folder and team\n"
        "# permissions are not file-provisionable in Grafana OSS: set them with the API (docs/grafana-tenancy.md).\n"
    )
    files[Path("providers.yaml")] = header + yaml.safe_dump({"apiVersion": 1, "providers": providers}, sort_keys=False)
    return files


def load_tenants(path: Path) -> TenantsFile:
    try:
        return TenantsFile.model_validate(read_yaml_mapping(path))
    except ValidationError as error:
        raise ConfigError(problems_from_validation(error, TenantsFile, str(path))) from None


def cmd_tenants(args: argparse.Namespace) -> int:
    from raylens.stack.tools import bundle_root

    tenants = load_tenants(args.tenants_file)
    output = args.output.resolve()
    try:
        files = tenant_files(bundle_root(), tenants, output)
    except ValueError as error:
        print(f"raylens: {args.tenants_file}: {error}")
        return 2
    for relative, text in files.items():
        target = output / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    print(f"wrote {len(files)} files under {output}; point Grafana's dashboard provisioning at {output}/providers.yaml")
    return 0


def add_tenant_command(sub: argparse._SubParsersAction) -> None:
    tenants = sub.add_parser("tenants", help="Grafana folders per audience and per-team dashboard copies")
    tenants.add_argument("tenants_file", type=Path, metavar="TENANTS_FILE", help="e.g. examples/tenants.yaml")
    tenants.add_argument("--output", type=Path, required=True, help="folder Grafana provisions dashboards from")
    tenants.set_defaults(handler=cmd_tenants)
