"""Every count limit (raylens.config.limits) accepts exactly its maximum and refuses one more with a
clear problem naming the file, the field and the limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from raylens.config import ConfigError, CostConfig, problems_from_validation
from raylens.config.limits import (
    MAX_BUDGETS,
    MAX_NODE_RULES,
    MAX_PRICING_FILES,
    MAX_PRICING_ROWS,
    MAX_QUOTA_WINDOWS,
    MAX_QUOTAS,
    MAX_RESOURCE_PRICES,
    MAX_ROLE_MEMBERS,
    MAX_ROLES,
    MAX_VOLUMES,
)
from raylens.cost.budgets import validate_budgets
from raylens.cost.catalog import validate_pricing
from raylens.cost.quotas import validate_quotas


def budgets(count: int) -> None:
    rows = [{"name": f"b{index}", "scope": "project", "match": f"p{index}", "amount_usd": 10} for index in range(count)]
    validate_budgets({"budgets": rows}, "budgets.yaml", ["aws"])


def quotas(count: int) -> None:
    rows = [
        {"name": f"q{index}", "scope": "user", "match": f"u{index}", "resource": "gpus", "limit": 1}
        for index in range(count)
    ]
    validate_quotas({"quotas": rows}, "quotas.yaml", [])


def roles(count: int) -> None:
    validate_quotas({"roles": {f"r{index}": ["alice"] for index in range(count)}}, "quotas.yaml", [])


def role_members(count: int) -> None:
    validate_quotas({"roles": {"researchers": [f"user{index}" for index in range(count)]}}, "quotas.yaml", [])


def windows(count: int) -> None:
    # Disjoint windows: one hour each, one per day and hour slot.
    spans = [
        {
            "days": [("mon", "tue", "wed", "thu", "fri", "sat", "sun")[index % 7]],
            "start": f"{index // 7:02d}:00",
            "end": f"{index // 7:02d}:30",
        }
        for index in range(count)
    ]
    quota = {"name": "q", "scope": "global", "resource": "gpus", "limit": 1, "windows": spans}
    validate_quotas({"quotas": [quota]}, "quotas.yaml", [])


def pricing_rows(count: int) -> None:
    rows = [
        {"instance_type": f"t{index}", "cloud": "aws", "vcpus": 1, "memory_gib": 1, "usd_per_hour": 0.1}
        for index in range(count)
    ]
    validate_pricing({"instance_types": rows}, "pricing.yaml")


def resource_prices(count: int) -> None:
    rows = [{"name": f"r{index}", "usd_per_cpu_hour": 0.01, "usd_per_memory_gib_hour": 0.001} for index in range(count)]
    validate_pricing({"resource_prices": rows}, "pricing.yaml")


def cost_section(field: str, item: Callable[[int], Any]) -> Callable[[int], None]:
    def check(count: int) -> None:
        try:
            CostConfig.model_validate({field: [item(index) for index in range(count)]})
        except ValidationError as error:  # as load_config reports it
            raise ConfigError(problems_from_validation(error, CostConfig, "raylens.yaml")) from None

    return check


CASES = [
    ("budgets", budgets, MAX_BUDGETS, "at most 1,000 budgets"),
    ("quotas", quotas, MAX_QUOTAS, "at most 1,000 quotas"),
    ("roles", roles, MAX_ROLES, "at most 1,000 roles"),
    ("role members", role_members, MAX_ROLE_MEMBERS, "at most 10,000 members of role 'researchers'"),
    ("quota windows", windows, MAX_QUOTA_WINDOWS, "at most 14 windows per quota"),
    ("pricing rows", pricing_rows, MAX_PRICING_ROWS, "at most 5,000 instance_types rows"),
    ("resource prices", resource_prices, MAX_RESOURCE_PRICES, "at most 1,000 resource_prices"),
    (
        "node rules",
        cost_section("node_rules", lambda index: {"instance_type": "m5.xlarge"}),
        MAX_NODE_RULES,
        "at most 1,000 node rules",
    ),
    (
        "volumes",
        cost_section("volumes", lambda index: {"name": f"v{index}", "size_gib": 1, "usd_per_gib_month": 0.1}),
        MAX_VOLUMES,
        "at most 100 volumes",
    ),
    (
        "pricing files",
        cost_section("pricing_files", lambda index: f"p{index}.yaml"),
        MAX_PRICING_FILES,
        "at most 100 pricing files",
    ),
]


@pytest.mark.parametrize(("what", "check", "maximum", "message"), CASES, ids=[case[0] for case in CASES])
def test_the_maximum_is_accepted_and_one_more_refused(
    what: str, check: Callable[[int], None], maximum: int, message: str
) -> None:
    check(maximum)
    with pytest.raises(ConfigError) as caught:
        check(maximum + 1)
    text = str(caught.value)
    assert message in text and f"got {maximum + 1:,}" in text and "docs/cost-model.md#limits" in text
    assert len(text) < 1000
