"""How many budgets, quotas, pricing rows and rules raylens accepts (docs/cost-model.md#limits).

Far above what any cluster needs, low enough that ``raylens config check`` on a file at every maximum
answers in well under 2 s (benchmarks/config_check_limits.py) and that a file of 100,000 generated
entries is refused at once with a clear line instead of being validated for tens of seconds. Counts
are checked before the entries themselves, so refusing costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_BUDGETS = 1_000
MAX_QUOTAS = 1_000
MAX_QUOTA_WINDOWS = 14  # per quota: two windows a day
MAX_ROLES = 1_000
MAX_ROLE_MEMBERS = 10_000  # per role
MAX_PRICING_ROWS = 5_000  # instance_types rows per pricing file: every type of a cloud in a few regions
MAX_RESOURCE_PRICES = 1_000  # per pricing file
MAX_PRICING_FILES = 100
MAX_NODE_RULES = 1_000
MAX_VOLUMES = 100

LIMITS_DOC = "docs/cost-model.md#limits"


def at_most(limit: int, what: str) -> Callable[[Any], Any]:
    """A pydantic ``mode="before"`` check: refuse a list longer than ``limit`` before validating it."""

    def check(value: Any) -> Any:
        if isinstance(value, list | tuple | dict) and len(value) > limit:
            raise ValueError(f"expected at most {limit:,} {what}, got {len(value):,} (raylens limit, {LIMITS_DOC})")
        return value

    return check
