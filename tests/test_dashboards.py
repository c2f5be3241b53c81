"""Dashboards as code, offline: fresh, deterministic, schema-valid, house rules, PromQL parses,
provisioning and compose consistent. The live panel check is in test_dashboards_live.py."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess

import pytest
import yaml

from raylens import __version__
from raylens.cli import main
from raylens.dashboards.build import OUTPUT_DIR, build_dashboards, iter_panels, stale_files, version_number
from raylens.dashboards.diff import diff_dashboards
from raylens.dashboards.normalise import SCHEMA_VERSION, normalise, strip_nulls
from raylens.dashboards.validate import (
    SCHEMA_PATH,
    all_values,
    invariant_problems,
    iter_queries,
    promtool_problems,
    schema_errors,
    substitute,
)
from services import REPO

SCHEMA = REPO / SCHEMA_PATH


@pytest.fixture(scope="module")
def built():
    return build_dashboards(REPO)


def by_key(built, key):
    return next(dashboard for dashboard in built if dashboard.key == key)


def test_committed_json_and_docs_are_fresh() -> None:
    assert stale_files(REPO) == [], "stale: run `raylens dashboards build` and commit the result"


def test_build_is_deterministic(built) -> None:
    again = build_dashboards(REPO)
    assert [json.dumps(d.json, sort_keys=True) for d in built] == [json.dumps(d.json, sort_keys=True) for d in again]


def test_every_dashboard_validates_against_grafanas_schema(built) -> None:
    errors = {dashboard.key: schema_errors(dashboard.json, SCHEMA) for dashboard in built}
    assert errors == {dashboard.key: [] for dashboard in built}


def test_house_invariants(built) -> None:
    problems = [problem for dashboard in built for problem in invariant_problems(dashboard.json)]
    assert problems == []


def test_every_query_parses_with_promtool(built) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run scripts/setup.sh"
    problems = [
        problem
        for dashboard in built
        for problem in promtool_problems(iter_queries(dashboard.json), all_values(dashboard.json), promtool)
    ]
    assert problems == []


def test_promtool_check_catches_a_broken_query() -> None:
    from raylens.dashboards.validate import PanelQuery

    broken = [PanelQuery("x", 1, "ok", "A", "up"), PanelQuery("x", 2, "bad", "A", "sum(rate(up[5m])")]
    problems = promtool_problems(broken, {}, shutil.which("promtool") or "promtool")
    assert len(problems) == 1 and "'bad'" in problems[0]


def test_schema_gate_rejects_grafanalib_raw_output_and_angular_panels(built) -> None:
    dashboard = copy.deepcopy(built[0].json)
    dashboard["rows"] = []  # a legacy key grafanalib emits
    dashboard["panels"][1]["error"] = False
    errors = schema_errors(dashboard, SCHEMA)
    assert any("rows" in error for error in errors) and any("error" in error for error in errors)
    dashboard = copy.deepcopy(built[0].json)
    dashboard["panels"][1]["type"] = "graph"
    assert any("Angular" in problem for problem in invariant_problems(dashboard))


def test_uids_titles_and_folders_are_fixed_and_unique(built) -> None:
    uids = [dashboard.json["uid"] for dashboard in built]
    assert len(set(uids)) == len(uids) == 9
    assert all(re.fullmatch(r"raylens-[a-z-]+", uid) for uid in uids)
    titles = [dashboard.json["title"] for dashboard in built]
    assert len(set(titles)) == len(titles)
    for dashboard in built:
        assert (REPO / dashboard.output_path).parent.parent == REPO / OUTPUT_DIR


def test_version_is_tied_to_the_package(built) -> None:
    for dashboard in built:
        assert dashboard.json["version"] == version_number(__version__)
        assert f"raylens-{__version__}" in dashboard.json["tags"]
        assert dashboard.json["schemaVersion"] == SCHEMA_VERSION
    assert version_number("0.1.0") == 100 and version_number("1.12.3") == 11203


def test_schema_file_came_from_the_committed_script() -> None:
    schema = json.loads(SCHEMA.read_text())
    script = REPO / "schemas" / "generate-grafana-dashboard-schema.sh"
    assert script.is_file() and "GRAFANA_SCHEMA_VERSION=13.2.3" in script.read_text()
    assert "@grafana/schema@13.2.3" in schema["$comment"]
    assert f"schemaVersion {SCHEMA_VERSION}" in schema["$comment"]
    assert schema["definitions"]["Panel"]["additionalProperties"] is False  # the strict variant


def test_overview_links_to_every_other_dashboard(built) -> None:
    overview = by_key(built, "overview").json
    urls = [link["url"] for panel in iter_panels(overview) for link in panel.get("links", [])]
    for dashboard in built:
        if dashboard.key != "overview":
            assert any(f"/d/{dashboard.json['uid']}?" in url for url in urls), dashboard.key
    # Links carry the time range and variables.
    assert all("${__url_time_range}" in url and "${datasource:queryparam}" in url for url in urls)
    for dashboard in built:
        menu = dashboard.json["links"][0]
        assert menu["type"] == "dashboards" and menu["keepTime"] and menu["includeVars"]


def test_cost_drill_down_goes_project_then_user_then_job(built) -> None:
    cost = by_key(built, "cost").json
    links = {
        panel["title"]: panel["fieldConfig"]["defaults"].get("links", [])
        for panel in iter_panels(cost)
        if panel["type"] == "table"
    }
    assert "var-project=${__data.fields.Project}" in links["Spend by project"][0]["url"]
    assert "var-user=${__data.fields.User}" in links["Spend by user"][0]["url"]
    assert "${project:queryparam}" in links["Spend by user"][0]["url"]
    assert "var-job=" in links["Spend by Ray job"][0]["url"]
    # Each job row also opens its logs.
    assert "/d/raylens-logs-events?" in links["Spend by Ray job"][1]["url"]
    assert "var-job_id=${__data.fields.Job}" in links["Spend by Ray job"][1]["url"]
    for table in links.values():
        for link in table:
            assert "${__url_time_range}" in link["url"]
    names = [variable["name"] for variable in cost["templating"]["list"]]
    assert names == ["datasource", "cluster", "project", "user", "job"]


def test_variables_are_multi_select_with_all(built) -> None:
    defaults = {"prometheus": "raylens-prometheus", "loki": "raylens-loki"}
    for dashboard in built:
        for variable in dashboard.json["templating"]["list"]:
            if variable["type"] == "datasource":
                assert variable["current"]["value"] == defaults[variable["query"]]
            elif variable["type"] == "textbox":  # free text (a regex), default matches everything
                assert variable["query"] in ("", ".*") and variable["current"]["value"] == variable["query"]
            elif variable["type"] == "custom":
                assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"
                assert [option["value"] for option in variable["options"]] == variable["query"].split(",")
            else:
                assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"
                assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_ray_percent_and_mib_never_reach_a_panel_unconverted(built) -> None:
    for dashboard in built:
        for query in iter_queries(dashboard.json):
            for metric in (
                "ray_node_cpu_utilization",
                "ray_node_gpus_utilization",
                "ray_serve_replica_utilization_percent",
            ):
                if metric in query.expr:
                    assert "/ 100" in query.expr, query.where
            if "ray_node_gram_" in query.expr:
                assert "1024" in query.expr, query.where


def test_substitute_formats_like_grafana() -> None:
    expr = 'sum(rate(x{a=~"$node",b=~"${SessionName}"}[$__rate_interval])) offset $__range'
    assert substitute(expr, {"node": ".*", "SessionName": "(s1|s2)"}) == (
        'sum(rate(x{a=~".*",b=~"(s1|s2)"}[1m])) offset 1h'
    )
    with pytest.raises(KeyError):
        substitute("$unknown", {})


def test_normalise_removes_legacy_keys_and_keeps_threshold_nulls() -> None:
    raw = {
        "rows": [],
        "style": "dark",
        "schemaVersion": 12,
        "panels": [
            {
                "type": "bargauge",
                "error": False,
                "span": None,
                "options": {"fieldOptions": {"calcs": ["mean"], "defaults": {"unit": "bytes", "max": 5}}},
                "fieldConfig": {
                    "defaults": {"thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]}}
                },
                "targets": [{"expr": "up", "refId": "A", "step": 10, "intervalFactor": 2, "query": "up"}],
            }
        ],
    }
    out = normalise(raw)
    assert "rows" not in out and "style" not in out and out["schemaVersion"] == SCHEMA_VERSION
    panel = out["panels"][0]
    assert "error" not in panel and "fieldOptions" not in panel["options"]
    assert panel["fieldConfig"]["defaults"]["unit"] == "bytes"
    assert panel["fieldConfig"]["defaults"]["thresholds"]["steps"][0] == {"color": "green", "value": None}
    assert panel["targets"][0] == {"expr": "up", "refId": "A", "editorMode": "code", "range": True}
    assert strip_nulls({"a": None, "b": [{"c": None}]}) == {"b": [{}]}


def test_semantic_diff_reports_moves_queries_units_thresholds(built) -> None:
    old = {d.json["uid"]: d.json for d in built}
    new = copy.deepcopy(old)
    hardware = new["raylens-hardware"]
    panels = [panel for panel in hardware["panels"] if panel["type"] != "row"]
    panels[1]["targets"][0]["expr"] = "up"
    panels[1]["fieldConfig"]["defaults"]["unit"] = "percent"
    panels[1]["fieldConfig"]["defaults"]["thresholds"]["steps"].append({"color": "red", "value": 2})
    panels[2]["gridPos"]["x"] += 1
    removed = panels[3]["title"]
    hardware["panels"].remove(panels[3])
    del new["raylens-budgets"]
    lines = "\n".join(diff_dashboards(old, new))
    assert f"~ panel {panels[1]['title']!r}: query A:" in lines and "+ up" in lines
    assert "unit percentunit → percent" in lines
    assert "thresholds [" in lines
    assert f"~ panel {panels[2]['title']!r}: moved from" in lines
    assert f"- panel {removed!r}" in lines
    assert "- dashboard raylens-budgets" in lines
    assert diff_dashboards(old, old) == []


def test_diff_command_between_git_revisions(tmp_path, built, capsys, monkeypatch) -> None:
    """`raylens dashboards diff OLD NEW` reads each revision's generated JSON from git."""
    repo = tmp_path / "repo"
    target = repo / OUTPUT_DIR / "Ray" / "ray_serve.json"
    target.parent.mkdir(parents=True)
    (repo / "provisioning/prometheus").mkdir(parents=True)
    (repo / "provisioning/prometheus/prometheus.yml").write_text("global: {}\n")

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "test@example.com")
    git("config", "user.name", "test")
    serve = by_key(built, "ray_serve").json
    target.write_text(json.dumps(serve))
    git("add", ".")
    git("commit", "-q", "-m", "one")
    changed = copy.deepcopy(serve)
    panel = next(panel for panel in iter_panels(changed) if panel["title"] == "Latency quantiles")
    panel["targets"][0]["expr"] = panel["targets"][0]["expr"].replace("0.5,", "0.75,")
    target.write_text(json.dumps(changed))
    git("commit", "-q", "-am", "two")
    monkeypatch.setenv("RAYLENS_BUNDLE_DIR", str(repo))
    assert main(["dashboards", "diff", "HEAD~1", "HEAD"]) == 0
    out = capsys.readouterr().out
    assert "raylens-ray-serve" in out and "~ panel 'Latency quantiles': query A:" in out and "0.75" in out
    assert main(["dashboards", "diff", "HEAD"]) == 0
    assert "no dashboard changes" in capsys.readouterr().out


# --- Provisioning and compose -----------------------------------------------------------------------


def test_datasources_have_the_uids_dashboards_default_to(built) -> None:
    provisioning = yaml.safe_load((REPO / "provisioning/grafana/datasources/datasources.yml").read_text())
    assert provisioning["apiVersion"] == 1
    uids = {source["type"]: source["uid"] for source in provisioning["datasources"]}
    assert uids == {
        "prometheus": "raylens-prometheus",
        "alertmanager": "raylens-alertmanager",
        "loki": "raylens-loki",
        "tempo": "raylens-tempo",
        "jaeger": "raylens-jaeger",
    }
    assert all(source["editable"] is False for source in provisioning["datasources"])
    scrape = yaml.safe_load((REPO / "provisioning/prometheus/prometheus.yml").read_text())["global"]["scrape_interval"]
    prometheus = next(source for source in provisioning["datasources"] if source["type"] == "prometheus")
    assert prometheus["jsonData"]["timeInterval"] == scrape


def test_dashboard_provider_maps_folders_to_the_generated_tree(built) -> None:
    provider = yaml.safe_load((REPO / "provisioning/grafana/dashboards/raylens.yml").read_text())["providers"][0]
    assert provider["options"]["foldersFromFilesStructure"] is True
    assert provider["folder"] == "" and provider["type"] == "file"
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert "./provisioning/grafana:/etc/grafana/provisioning:ro" in compose["services"]["grafana"]["volumes"]
    assert provider["options"]["path"] == "/etc/grafana/provisioning/dashboards"
    folders = {path.parent.name for path in (REPO / OUTPUT_DIR).glob("*/*.json")}
    assert folders == {dashboard.folder for dashboard in built}


def test_docker_compose_config_is_valid() -> None:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose (Debian package) missing: run scripts/setup.sh --test"
    result = subprocess.run(
        [binary, "-f", str(REPO / "docker-compose.yml"), "config", "-q"], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr


def test_compose_pins_images_mounts_what_exists_and_checks_health() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"prometheus", "alertmanager", "grafana", "raylens-exporter", "loki", "alloy"}
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image ({image})"
        assert "healthcheck" in service, name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
    mounts = services["prometheus"]["volumes"]
    assert "./recording-rules:/etc/prometheus/rules/recording:ro" in mounts
    assert "./alerting-rules:/etc/prometheus/rules/alerting:ro" in mounts
    assert "./provisioning/compose/prometheus-targets:/etc/prometheus/targets:ro" in mounts
    assert "./provisioning/alertmanager:/etc/alertmanager:ro" in services["alertmanager"]["volumes"]
    for target_file in ("raylens.json", "ray.json"):
        assert isinstance(
            json.loads((REPO / "provisioning/compose/prometheus-targets" / target_file).read_text()), list
        )
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
