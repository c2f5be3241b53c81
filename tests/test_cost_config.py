"""Cost configuration: the `cost` section, budgets.yaml, quotas.yaml and `raylens config check FILE…`.

Every error names the file, the field path, the bad value and what was expected.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from raylens.config import ConfigError, load_config
from raylens.cost.budgets import validate_budgets
from raylens.cost.catalog import load_catalog
from raylens.cost.loading import load_files
from raylens.cost.quotas import Holding, NodeCapacity, Quotas, evaluate_quotas, validate_quotas

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CLOUDS = ("aws", "gcp")
TYPES = load_catalog().instance_types()


def write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def check(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raylens", "config", "check", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )


# ----------------------------------------------------------------------------- the cost section


def test_cost_section_defaults_and_errors(tmp_path: Path) -> None:
    config = load_config(None, environ={})
    assert (config.cost.timezone, config.cost.default_market, config.cost.spot_discount) == ("UTC", "on_demand", None)
    path = write(
        tmp_path / "raylens.yaml",
        {
            "cost": {
                "timezone": "Mars/Olympus",
                "spot_discount": 1.5,
                "node_rules": [{"match": {"ip": "10.0.0.0/99"}, "market": "reserved"}],
                "volumes": [{"name": "root", "size_gib": -1, "usd_per_gib_month": 0.08}],
            }
        },
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    problems = {problem.field: problem for problem in caught.value.problems}
    assert set(problems) == {
        "cost.timezone",
        "cost.spot_discount",
        "cost.node_rules.0.match.ip",
        "cost.node_rules.0.market",
        "cost.volumes.0.size_gib",
    }
    assert "IANA time zone" in problems["cost.timezone"].expected
    assert all(problem.source == str(path) for problem in problems.values())


def test_cost_names_must_exist_in_the_catalog(tmp_path: Path) -> None:
    path = write(
        tmp_path / "raylens.yaml",
        {
            "cost": {
                "default_instance_type": "m9.gigantic",
                "node_rules": [{"resource_price": "rack", "cloud": "azure"}],
            }
        },
    )
    config = load_config(path, environ={})
    with pytest.raises(ConfigError) as caught:
        load_files(config.cost, source=str(path))
    fields = {problem.field for problem in caught.value.problems}
    assert fields == {"cost.default_instance_type", "cost.node_rules.0.resource_price", "cost.node_rules.0.cloud"}


def test_state_dir_must_be_writable(tmp_path: Path) -> None:
    from raylens.cost.loading import load_cost_setup

    blocker = tmp_path / "file"
    blocker.write_text("")
    config = load_config(write(tmp_path / "r.yaml", {"cost": {"state_dir": str(blocker / "sub")}}), environ={})
    with pytest.raises(ConfigError, match=r"cost\.state_dir.*expected a writable directory"):
        load_cost_setup(config.cost)


# ----------------------------------------------------------------------------- budgets


@pytest.mark.parametrize(
    ("budget", "field", "expected"),
    [
        ({"name": "a", "scope": "org", "amount_usd": -10}, "budgets.0.amount_usd", "greater than 0"),
        (
            {"name": "a", "scope": "department", "match": "x", "amount_usd": 1},
            "budgets.0.scope",
            "'org', 'cloud', 'project'",
        ),
        ({"name": "a", "scope": "project", "amount_usd": 1}, "budgets.0", "needs `match`"),
        ({"name": "a", "scope": "org", "match": "x", "amount_usd": 1}, "budgets.0", "leave `match` out"),
        (
            {"name": "a", "scope": "org", "amount_usd": 1, "period": "quarter"},
            "budgets.0.period",
            "'day', 'week' or 'month'",
        ),
        (
            {"name": "a", "scope": "org", "amount_usd": 1, "thresholds_percent": [80, 50]},
            "budgets.0.thresholds_percent",
            "increasing",
        ),
        (
            {"name": "a", "scope": "org", "amount_usd": 1, "thresholds_percent": [0]},
            "budgets.0.thresholds_percent",
            "above 0",
        ),
        ({"name": "a", "scope": "cloud", "match": "azure", "amount_usd": 1}, "budgets.0.match", "unknown cloud"),
        ({"name": "a", "scope": "org", "amount_usd": 1, "amount": 5}, "budgets.0.amount", "unknown field"),
    ],
)
def test_budget_errors(budget: dict, field: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_budgets({"budgets": [budget]}, "budgets.yaml", CLOUDS)
    problem = caught.value.problems[0]
    assert (problem.source, problem.field) == ("budgets.yaml", field)
    assert expected in problem.expected


def test_budget_defaults_and_duplicates() -> None:
    (budget,) = validate_budgets(
        {"budgets": [{"name": "b", "scope": "team", "match": "ml", "amount_usd": 10}]}, "b", CLOUDS
    )
    assert (budget.period, budget.thresholds_percent, budget.key) == ("month", (50.0, 80.0, 100.0), "team:ml")
    twice = {"budgets": [{"name": "b", "scope": "org", "amount_usd": 1}] * 2}
    with pytest.raises(ConfigError, match="duplicate name"):
        validate_budgets(twice, "b", CLOUDS)


BUDGET_FIELDS = ("name", "scope", "match", "amount_usd", "period", "thresholds_percent", "colour")
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.sampled_from(["org", "project", "month", "aws", "", "x"]),
    st.lists(st.integers(-10, 200), max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(BUDGET_FIELDS), values)
def test_any_budget_value_loads_or_fails_naming_that_field(field: str, value: object) -> None:
    budget: dict[str, object] = {"name": "b", "scope": "project", "match": "p", "amount_usd": 10}
    budget[field] = value
    try:
        (loaded,) = validate_budgets({"budgets": [budget]}, "budgets.yaml", CLOUDS)
    except ConfigError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.source == "budgets.yaml"
            assert problem.field.startswith("budgets.0"), problem
            assert problem.expected
        return
    assert loaded.amount_usd > 0
    assert (loaded.scope == "org") == (loaded.match is None)


# ----------------------------------------------------------------------------- quotas


def quota(**fields: object) -> dict[str, object]:
    return {"name": "q", "scope": "user", "match": "*", "resource": "gpus", "limit": 4, **fields}


@pytest.mark.parametrize(
    ("data", "field", "expected"),
    [
        ({"quotas": [quota(limit=-1)]}, "quotas.0.limit", "greater than or equal to 0"),
        ({"quotas": [quota(scope="galaxy")]}, "quotas.0.scope", "'global', 'user'"),
        ({"quotas": [quota(instance_type="m9.gigantic")]}, "quotas.0.instance_type", "unknown instance type"),
        ({"quotas": [quota(resource="tpus")]}, "quotas.0.resource", "'instances', 'gpus' or 'cpus'"),
        ({"quotas": [quota(scope="role", match="admins")]}, "quotas.0.match", "unknown role"),
        ({"quotas": [quota(windows=[{"start": "18:00", "end": "09:00"}])]}, "quotas.0.windows.0", "end after start"),
        ({"quotas": [quota(windows=[{"start": "25:00"}])]}, "quotas.0.windows.0.start", "HH:MM"),
        ({"quotas": [quota(windows=[{"days": ["funday"]}])]}, "quotas.0.windows.0.days.0", "'mon'"),
        (
            {
                "quotas": [
                    quota(
                        windows=[
                            {"days": ["mon"], "start": "09:00", "end": "12:00"},
                            {"days": ["mon", "tue"], "start": "11:00", "end": "13:00"},
                        ]
                    )
                ]
            },
            "quotas.0.windows.1",
            "overlaps windows.0",
        ),
        (
            {"quotas": [quota(name="a"), quota(name="b", windows=[{"days": ["sat"]}])]},
            "quotas.1.windows",
            "overlapping times",
        ),
        ({"quotas": [quota(), quota()]}, "quotas.1.name", "duplicate name"),
    ],
)
def test_quota_errors(data: dict, field: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_quotas(data, "quotas.yaml", TYPES)
    matching = [problem for problem in caught.value.problems if problem.field == field]
    assert matching, caught.value.problems
    assert expected in matching[0].expected
    assert matching[0].source == "quotas.yaml"


def test_disjoint_windows_on_the_same_target_are_fine() -> None:
    data = {
        "quotas": [
            quota(
                name="day",
                limit=2,
                windows=[{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "20:00"}],
            ),
            quota(
                name="night", limit=8, windows=[{"start": "00:00", "end": "08:00"}, {"start": "20:00", "end": "24:00"}]
            ),
        ]
    }
    assert len(validate_quotas(data, "q", TYPES).quotas) == 2


window = st.builds(
    lambda days, start, length: {
        "days": days,
        "start": f"{start // 60:02d}:{start % 60:02d}",
        "end": f"{(start + length) // 60:02d}:{(start + length) % 60:02d}",
    },
    st.lists(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1, max_size=3, unique=True),
    st.integers(0, 22 * 60).map(lambda m: m - m % 30),
    st.integers(30, 120).map(lambda m: m - m % 30),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(window, min_size=1, max_size=4))
def test_quota_windows_are_accepted_exactly_when_they_do_not_overlap(windows: list[dict]) -> None:
    def minutes(w: dict) -> list[tuple[int, int]]:
        days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        start, end = (int(w[k][:2]) * 60 + int(w[k][3:]) for k in ("start", "end"))
        return [(days.index(d) * 1440 + start, days.index(d) * 1440 + end) for d in w["days"]]

    spans = [minutes(w) for w in windows]
    overlapping = any(
        a < d and c < b
        for i in range(len(spans))
        for j in range(i + 1, len(spans))
        for a, b in spans[i]
        for c, d in spans[j]
    )
    try:
        validate_quotas({"quotas": [quota(windows=windows)]}, "q", TYPES)
    except ConfigError as error:
        assert overlapping, error
        assert all("overlaps" in problem.expected for problem in error.problems)
        return
    assert not overlapping


def test_quota_usage_per_scope_and_window() -> None:
    quotas = validate_quotas(
        {
            "roles": {"researchers": ["alice", "bob"]},
            "quotas": [
                quota(name="gpus-each"),
                quota(name="cpus-role", scope="role", match="researchers", resource="cpus", limit=10),
                quota(
                    name="p4d", scope="global", match=None, resource="instances", instance_type="p4d.24xlarge", limit=1
                ),
                quota(
                    name="vision-nodes",
                    scope="project",
                    match="vision",
                    resource="instances",
                    limit=3,
                    windows=[{"days": ["mon"], "start": "09:00", "end": "10:00"}],
                ),
            ],
        },
        "q",
        TYPES,
    )
    holdings = [
        Holding("alice", "vision", "ml", "p4d.24xlarge", 8, 4, frozenset({"n1"})),
        Holding("alice", "vision", "ml", "m5.xlarge", 2, 0, frozenset({"n2"})),
        Holding("bob", "nlp", "ml", "m5.xlarge", 1, 0, frozenset({"n2"})),
        Holding("carol", "vision", "ml", "g5.xlarge", 1, 1, frozenset({"n3"})),
    ]
    nodes = [
        NodeCapacity("n1", "p4d.24xlarge", 96, 8),
        NodeCapacity("n4", "p4d.24xlarge", 96, 8),
        NodeCapacity("n2", "m5.xlarge", 4, 0),
    ]
    monday_morning = datetime(2026, 6, 29, 9, 30, tzinfo=ZoneInfo("UTC")).timestamp()
    readings = {
        (r.quota.name, r.match): r for r in evaluate_quotas(quotas, monday_morning, ZoneInfo("UTC"), nodes, holdings)
    }
    assert readings[("gpus-each", "alice")].usage == 4 and readings[("gpus-each", "carol")].usage == 1
    assert readings[("cpus-role", "researchers")].usage == 11
    assert readings[("p4d", "")].usage == 2
    assert readings[("vision-nodes", "vision")].usage == 3 and readings[("vision-nodes", "vision")].active
    later = evaluate_quotas(quotas, monday_morning + 7200, ZoneInfo("UTC"), nodes, holdings)
    assert not next(r for r in later if r.quota.name == "vision-nodes").active
    assert evaluate_quotas(Quotas((), {}), 0, ZoneInfo("UTC"), nodes, holdings) == []


# ----------------------------------------------------------------------------- the files users copy


def test_examples_are_valid_together() -> None:
    result = check(EXAMPLES / "pricing.yaml", EXAMPLES / "budgets.yaml", EXAMPLES / "quotas.yaml")
    assert result.returncode == 0, result.stderr
    assert f"{EXAMPLES / 'budgets.yaml'}: OK (budgets:" in result.stdout
    assert f"{EXAMPLES / 'quotas.yaml'}: OK (quotas:" in result.stdout
    assert f"{EXAMPLES / 'pricing.yaml'}: OK (pricing:" in result.stdout


def test_config_check_reports_every_problem_in_every_file(tmp_path: Path) -> None:
    budgets = write(tmp_path / "budgets.yaml", {"budgets": [{"name": "x", "scope": "department", "amount_usd": -5}]})
    quotas = write(tmp_path / "quotas.yaml", {"quotas": [quota(instance_type="onprem-box")]})
    main = write(tmp_path / "raylens.yaml", {"log": {"level": "loud"}})
    result = check(main, budgets, quotas)
    assert result.returncode == 2
    assert "invalid configuration (4 problems)" in result.stderr
    assert f"{budgets}: budgets.0.scope: got 'department'" in result.stderr
    assert f"{budgets}: budgets.0.amount_usd: got -5: expected greater than 0" in result.stderr
    assert f"{quotas}: quotas.0.instance_type: got 'onprem-box': unknown instance type" in result.stderr
    assert f"{main}: log.level: got 'loud'" in result.stderr
    # The instance type becomes known once a pricing file defining it is checked alongside.
    pricing = write(
        tmp_path / "pricing.yaml",
        {
            "instance_types": [
                {"instance_type": "onprem-box", "cloud": "onprem", "vcpus": 64, "memory_gib": 256, "usd_per_hour": 1.5}
            ]
        },
    )
    result = check(quotas, pricing)
    assert result.returncode == 0, result.stderr


def test_main_config_check_follows_its_cost_files(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "pricing.yaml", tmp_path / "pricing.yaml")
    write(
        tmp_path / "budgets.yaml", {"budgets": [{"name": "b", "scope": "cloud", "match": "nowhere", "amount_usd": 1}]}
    )
    main = write(
        tmp_path / "raylens.yaml",
        {"cost": {"pricing_files": [str(tmp_path / "pricing.yaml")], "budgets_file": str(tmp_path / "budgets.yaml")}},
    )
    result = check(main)
    assert result.returncode == 2
    assert f"{tmp_path / 'budgets.yaml'}: budgets.0.match: got 'nowhere': unknown cloud" in result.stderr
    write(tmp_path / "budgets.yaml", {"budgets": [{"name": "b", "scope": "cloud", "match": "onprem", "amount_usd": 1}]})
    result = check(main)
    assert result.returncode == 0, result.stderr
    assert f"{main}: OK" in result.stdout  # the main config's report is unchanged
