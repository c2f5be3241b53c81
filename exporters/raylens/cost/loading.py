"""Everything the cost collector needs, loaded and cross-checked from ``cost`` configuration.

Every problem in every file is reported at once (``ConfigError``), each naming its file, field path,
value and what was expected, before the exporter serves anything.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from raylens.config import MISSING, ConfigError, ConfigProblem, CostConfig
from raylens.cost.budgets import Budget, load_budgets
from raylens.cost.catalog import PriceCatalog, load_catalog
from raylens.cost.engine import CostEngine
from raylens.cost.instance_metadata import local_addresses, query_instance_metadata
from raylens.cost.plausibility import budget_warnings, price_warnings, spend_rate
from raylens.cost.pricing import NodePricer
from raylens.cost.quotas import Quotas, load_quotas
from raylens.cost.state import STATE_FILE, EngineState, StateShapeError, default_state_dir, read_json
from raylens.cost.state_health import StateHealth, set_aside_name
from raylens.files import FileMissing, FileRefused
from raylens.files import read_json as read_bounded_json

log = logging.getLogger("raylens.cost")


def reference_problems(config: CostConfig, catalog: PriceCatalog, source: str) -> list[ConfigProblem]:
    """Names in the ``cost`` section that must exist in the merged catalog."""
    problems = []
    types = catalog.instance_types()
    resource_prices = set(catalog.resource_prices)
    clouds = catalog.clouds()

    def check_type(field: str, value: str | None) -> None:
        if value is not None and value not in types:
            problems.append(
                ConfigProblem(
                    source, field, value, "unknown instance type; add it to a pricing file (cost.pricing_files)"
                )
            )

    def check_resource_price(field: str, value: str | None) -> None:
        if value is not None and value not in resource_prices:
            known = ", ".join(sorted(resource_prices)) or "none in the pricing files"
            problems.append(ConfigProblem(source, field, value, f"unknown resource price; known: {known}"))

    check_type("cost.default_instance_type", config.default_instance_type)
    check_resource_price("cost.default_resource_price", config.default_resource_price)
    for index, rule in enumerate(config.node_rules):
        check_type(f"cost.node_rules.{index}.instance_type", rule.instance_type)
        check_resource_price(f"cost.node_rules.{index}.resource_price", rule.resource_price)
        if rule.cloud is not None and rule.cloud not in clouds:
            problems.append(
                ConfigProblem(
                    source,
                    f"cost.node_rules.{index}.cloud",
                    rule.cloud,
                    "unknown cloud; expected one of: " + ", ".join(sorted(clouds)),
                )
            )
    return problems


@dataclass
class CostSetup:
    catalog: PriceCatalog
    budgets: tuple[Budget, ...]
    quotas: Quotas
    pricer: NodePricer
    engine: CostEngine
    state_dir: Path | None
    state_health: StateHealth


def load_files(config: CostConfig, source: str = "configuration") -> tuple[PriceCatalog, tuple[Budget, ...], Quotas]:
    catalog = load_catalog(config.pricing_files)
    problems = reference_problems(config, catalog, source)
    budgets: tuple[Budget, ...] = ()
    quotas = Quotas((), {})
    if config.budgets_file is not None:
        try:
            budgets = load_budgets(config.budgets_file, catalog.clouds())
        except ConfigError as error:
            problems += error.problems
    if config.quotas_file is not None:
        try:
            quotas = load_quotas(config.quotas_file, catalog.instance_types())
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)
    return catalog, budgets, quotas


def restore_state(state_dir: Path, health: StateHealth | None = None) -> EngineState | None:
    """The saved state, or None when there is none or it cannot be used.

    A file that cannot be used (unreadable, too large, not JSON, of another shape) is renamed
    ``cost-state.json.unreadable-<UTC time>`` and reported (log line, ``health``); the exporter starts
    afresh instead of failing on every restart. Atomic writes make this rare (a disk fault, a hand
    edit, a file from another program). Node spend is re-derived from node lifetimes Ray still knows;
    attribution history is lost until the file is restored (docs/runbooks/RaylensCostStateSetAside.md).
    """
    path = state_dir / STATE_FILE
    try:
        # Read directly, not through state.read_json: a file holding `null` is corrupt, not absent.
        return EngineState.from_json(read_bounded_json(path))
    except FileMissing:
        return None
    except (FileRefused, StateShapeError) as error:
        reason = str(error)
        if isinstance(error, FileRefused):  # the path is logged apart
            reason = f"line {error.line}: {error.reason}" if error.line is not None else error.reason
        aside = set_aside_name(path, time.time())
        try:
            os.replace(path, aside)
        except OSError as move_error:
            # Starting afresh would overwrite the only copy on the first save: refuse to start instead.
            raise ConfigError(
                [
                    ConfigProblem(
                        str(path),
                        "",
                        MISSING,
                        f"unusable cost state ({reason}) and it cannot be set aside ({move_error.strerror}); "
                        "move it away by hand",
                    )
                ]
            ) from None
        (health or StateHealth(state_dir)).restore_failed(path, aside, reason)
        return None


def peek_state(state_dir: Path) -> EngineState | None:
    """The saved state for reading only (``config check``): None when absent or unusable, untouched."""
    try:
        data = read_json(state_dir / STATE_FILE)
        return EngineState.from_json(data) if data is not None else None
    except (FileRefused, StateShapeError):
        return None


def log_plausibility(
    catalog: PriceCatalog, budgets: tuple[Budget, ...], budgets_source: str, state: EngineState | None
) -> None:
    """Start-up warnings for implausible money (``raylens.cost.plausibility``); the exporter still starts."""
    for warning in price_warnings(catalog) + budget_warnings(budgets, budgets_source, spend_rate(state)):
        log.warning(
            "implausible money in the configuration; check the unit",
            extra={"file": warning.source, "field": warning.field, "value": warning.value, "why": warning.expected},
        )


def load_cost_setup(config: CostConfig, source: str = "configuration", cluster: str | None = None) -> CostSetup:
    """``cluster``: this exporter's cluster name; budgets and quotas limited to other clusters
    (their ``clusters`` field) are left out. ``None`` keeps every one (``raylens cost explain``)."""
    catalog, budgets, quotas = load_files(config, source)
    if cluster is not None:
        budgets = tuple(budget for budget in budgets if budget.applies_to(cluster))
        quotas = replace(quotas, quotas=tuple(quota for quota in quotas.quotas if quota.applies_to(cluster)))
    state_dir = config.state_dir or default_state_dir()
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        probe = state_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ConfigError(
            [
                ConfigProblem(
                    source, "cost.state_dir", str(state_dir), f"expected a writable directory ({error.strerror})"
                )
            ]
        ) from None
    pricer = NodePricer(
        config,
        catalog,
        instance_metadata=lambda: query_instance_metadata(config.instance_metadata_timeout_seconds),
        local_addresses=local_addresses,
    )
    health = StateHealth(state_dir)
    state = restore_state(state_dir, health)
    log_plausibility(catalog, budgets, str(config.budgets_file), state)
    engine = CostEngine(config, pricer, budgets, state)
    return CostSetup(catalog, budgets, quotas, pricer, engine, state_dir, health)
