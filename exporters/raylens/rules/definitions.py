"""Every raylens alert group that is rendered from the typed config.

Add an alert to a module under ``groups/`` (a new module needs a line here), run
``raylens rules build``, write ``docs/runbooks/<AlertName>.md`` and a firing and a not-firing case
in ``tests/rules/``; the tests insist on all three.

Groups are listed in the order of their files under alerting-rules/ (by name), which is also their
order in the jsonnet mixin. Budget thresholds are generated from a budgets file: ``alert_groups``
adds them.
"""

from __future__ import annotations

from collections.abc import Iterable

from raylens.cost.budgets import Budget
from raylens.rules.budgets import BudgetThresholdAlerts
from raylens.rules.groups.cost import COST, OPTIMISATION
from raylens.rules.groups.exporter import EXPORTER
from raylens.rules.groups.gpu import GPU
from raylens.rules.groups.node import NODE
from raylens.rules.groups.performance import PERFORMANCE
from raylens.rules.groups.ray import RAY
from raylens.rules.groups.recommendations import RECOMMENDATIONS
from raylens.rules.groups.uptime import UPTIME
from raylens.rules.model import AlertGroup, GeneratedAlertGroup

GROUPS: tuple[AlertGroup, ...] = (
    COST,
    EXPORTER,
    GPU,
    NODE,
    OPTIMISATION,
    PERFORMANCE,
    RAY,
    RECOMMENDATIONS,
    UPTIME,
)


def alert_groups(budgets: Iterable[Budget]) -> tuple[AlertGroup | GeneratedAlertGroup, ...]:
    """``GROUPS`` and the threshold alerts of ``budgets``, in file-name order."""
    return tuple(sorted((*GROUPS, BudgetThresholdAlerts.from_budgets(budgets)), key=lambda group: group.name))
