"""Rule files: promtool-valid, named level:metric:operations, and unit-tested with promtool."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RULE_FILES = sorted((REPO / "recording-rules").glob("*.yml")) + sorted((REPO / "alerting-rules").glob("*.yml"))
RULE_TESTS = sorted((REPO / "tests" / "rules").glob("*_test.yml"))
RECORD_NAME = re.compile(r"^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$")


def test_there_are_rules_and_tests() -> None:
    assert RULE_FILES and RULE_TESTS


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda path: path.name)
def test_promtool_check_rules(path: Path) -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", "--lint=all", "--lint-fatal", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda path: path.name)
def test_recording_rule_names_follow_level_metric_operations(path: Path) -> None:
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                assert RECORD_NAME.match(rule["record"]), rule["record"]


def test_every_recording_rule_is_unit_tested() -> None:
    recorded = {
        rule["record"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    tested = {
        case["expr"]
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("promql_expr_test", [])
    }
    assert recorded - tested == set()


@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda path: path.name)
def test_promtool_test_rules(path: Path) -> None:
    result = subprocess.run(
        ["promtool", "test", "rules", path.name], cwd=path.parent, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# --- alerting rules: generated, documented, unit-tested, and the same in YAML and jsonnet ---

ALERT_FILES = sorted((REPO / "alerting-rules").glob("*.yml"))
RUNBOOKS = REPO / "docs" / "runbooks"


def all_alerts() -> list[dict]:
    return [
        rule
        for path in ALERT_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_generated_alert_files_are_fresh() -> None:
    from raylens.config import AlertsConfig
    from raylens.rules.build import sample_budgets
    from raylens.rules.definitions import alert_groups
    from raylens.rules.render import alert_files

    # Budget thresholds are generated from the sample budgets.yaml, as `raylens rules build` does.
    expected = alert_files(alert_groups(sample_budgets(REPO)), AlertsConfig())
    committed = {path.name: path.read_text() for path in ALERT_FILES if path.name in expected}
    assert committed == expected, "stale: run `raylens rules build` and commit the result"


def test_every_alert_is_complete_and_named_by_convention() -> None:
    alerts = all_alerts()
    assert alerts
    for rule in alerts:
        assert re.fullmatch(r"Raylens[A-Z][A-Za-z0-9]+", rule["alert"]), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        annotations = rule["annotations"]
        assert annotations["summary"].endswith(".") and annotations["description"]
        assert annotations["runbook_url"].endswith(f"/{rule['alert']}.md")
        assert rule.get("for"), f"{rule['alert']} has no `for`"


def test_every_alert_has_a_runbook_with_meaning_confirm_and_act() -> None:
    for rule in all_alerts():
        page = RUNBOOKS / f"{rule['alert']}.md"
        assert page.is_file(), f"missing runbook {page}"
        text = page.read_text()
        for heading in ("## Meaning", "## Confirm", "## Act"):
            assert heading in text, f"{page.name} lacks {heading}"
        assert "```promql" in text, f"{page.name} shows no PromQL to confirm with"


def test_every_alert_has_a_firing_and_a_not_firing_test() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {rule["alert"] for rule in all_alerts()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - silent == set(), "alerts never shown staying silent"


def test_jsonnet_mixin_renders_the_same_rules() -> None:
    import _jsonnet

    from raylens.rules.render import MIXIN_PATH

    snippet = f"local m = import '{MIXIN_PATH}'; {{alerts: m.prometheusAlerts, rules: m.prometheusRules}}"
    rendered = json.loads(_jsonnet.evaluate_snippet("check", snippet, jpathdir=str(REPO)))
    python_alert_groups = [group for path in ALERT_FILES for group in yaml.safe_load(path.read_text())["groups"]]
    python_rule_groups = [
        group
        for path in RULE_FILES
        if path.parent.name == "recording-rules"
        for group in yaml.safe_load(path.read_text())["groups"]
    ]
    assert rendered["alerts"]["groups"] == python_alert_groups
    assert rendered["rules"]["groups"] == python_rule_groups


def test_mixin_config_overrides_reach_the_rules() -> None:
    import _jsonnet

    snippet = (
        "local m = (import 'mixin/mixin.libsonnet') + { _config+:: { memory_utilisation_warning_percent: 97,"
        " exporter_selector: 'job=\"ray-exporters\"' } }; m.prometheusAlerts"
    )
    groups = json.loads(_jsonnet.evaluate_snippet("override", snippet, jpathdir=str(REPO)))["groups"]
    exprs = {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}
    assert "> 97 / 100" in exprs["RaylensNodeMemoryPressure"]
    assert 'job="ray-exporters"' in exprs["RaylensExporterDown"]


def test_mixin_is_fresh() -> None:
    from raylens.config import AlertsConfig
    from raylens.rules.build import recording_rule_files, sample_budgets
    from raylens.rules.definitions import alert_groups
    from raylens.rules.render import MIXIN_PATH, mixin_source

    expected = mixin_source(alert_groups(sample_budgets(REPO)), AlertsConfig(), recording_rule_files(REPO))
    assert (REPO / MIXIN_PATH).read_text() == expected, "stale: run `raylens rules build`"


# --- budget thresholds: generated from a budgets file, by `raylens rules build` and by `raylens up` ---


def _budgets_file(path: Path) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "budgets": [
                    {
                        "name": "ml",
                        "scope": "team",
                        "match": "ml",
                        "amount_usd": 100,
                        "thresholds_percent": [60, 90, 110],
                    },
                    {"name": "all", "scope": "org", "amount_usd": 1000, "period": "day"},
                ]
            }
        )
    )
    return path


def _budget_rules(text: str) -> list[dict]:
    (group,) = yaml.safe_load(text)["groups"]
    assert group["name"] == "raylens-budgets"
    return group["rules"]


def test_budget_thresholds_are_generated_per_budget_and_threshold(tmp_path: Path) -> None:
    from raylens.config import AlertsConfig
    from raylens.rules.budgets import load_budgets_file
    from raylens.rules.definitions import alert_groups
    from raylens.rules.render import alert_files

    budgets = load_budgets_file(_budgets_file(tmp_path / "budgets.yaml"))
    files = alert_files(alert_groups(budgets), AlertsConfig(budget_critical_percent=110))
    rules = _budget_rules(files["budgets.yml"])
    summary = [
        (r["labels"]["budget"], r["labels"]["threshold"], r["labels"]["severity"], r["labels"].get("team"))
        for r in rules
    ]
    assert summary == [
        ("ml", "60", "info", "ml"),
        ("ml", "90", "warning", "ml"),
        ("ml", "110", "critical", "ml"),
        ("all", "50", "info", None),
        ("all", "80", "warning", None),
        ("all", "100", "warning", None),  # critical only from 110 % in this config
    ]
    assert rules[2]["expr"] == 'budget:raylens_budget_spend:ratio{job="raylens", budget="ml"} >= 110 / 100'
    (tmp_path / "budgets.yml").write_text(files["budgets.yml"])
    result = subprocess.run(
        ["promtool", "check", "rules", "--lint=all", "--lint-fatal", str(tmp_path / "budgets.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_build_takes_budgets_from_the_flag_then_the_config_then_the_sample(tmp_path: Path) -> None:
    import shutil

    from raylens.rules.build import build

    bundle = tmp_path / "bundle"
    for folder in ("recording-rules", "examples"):
        shutil.copytree(REPO / folder, bundle / folder)
    budgets = _budgets_file(tmp_path / "budgets.yaml")

    def names() -> set[str]:
        return {
            rule["labels"]["budget"] for rule in _budget_rules((bundle / "alerting-rules" / "budgets.yml").read_text())
        }

    build(bundle)
    assert names() == {"org-monthly", "aws-monthly", "vision", "ml-team-weekly", "alice-daily"}
    config = tmp_path / "raylens.yaml"
    config.write_text(yaml.safe_dump({"cost": {"budgets_file": str(budgets)}}))
    build(bundle, config)
    assert names() == {"ml", "all"}
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"budgets": [{"name": "solo", "scope": "user", "match": "bob", "amount_usd": 5}]}))
    build(bundle, config, other)
    assert names() == {"solo"}
    # The mixin carries the same budgets, for jsonnet users to override.
    assert '"name": "solo"' in (bundle / "mixin" / "mixin.libsonnet").read_text()


def test_raylens_up_renders_the_budget_alerts_of_the_budgets_its_exporter_reads(tmp_path: Path) -> None:
    from raylens.config import load_config
    from raylens.rules.budgets import budgets_for
    from raylens.stack.demo import apply_demo_settings
    from raylens.stack.prometheus import prepare_prometheus_dir

    # What `raylens up --demo` gives its exporter, and what it renders for Prometheus from it.
    exporter_config = tmp_path / "raylens.yaml"
    exporter_config.write_text(yaml.safe_dump(apply_demo_settings({}, tmp_path / "state")))
    budgets = budgets_for(load_config(exporter_config).cost)
    prepare_prometheus_dir(REPO, tmp_path / "prometheus", ["127.0.0.1:9965"], budgets=budgets)
    rules = _budget_rules((tmp_path / "prometheus" / "rules" / "alerting" / "budgets.yml").read_text())
    assert {rule["labels"]["budget"] for rule in rules} == {
        "org-monthly",
        "vision-daily",
        "search-daily",
        "alice-daily",
    }
