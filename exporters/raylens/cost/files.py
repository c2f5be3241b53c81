"""``raylens config check FILE…``: recognise and validate any of raylens' configuration files.

Kinds, told apart by their top-level keys: the main config (``raylens.yaml``: ``exporter``, ``log``,
``cost``…), budgets (``budgets:``), quotas (``quotas:``/``roles:``) and pricing files
(``instance_types:``/``resource_prices:``/``split_ratios:``). Files are checked together: budgets and
quotas are validated against the default catalog merged with the pricing files given on the command
line and those a given main config names, so an instance type defined in a pricing override is known.
Every problem in every file is reported at once.

Money that is valid but implausible (``raylens.cost.plausibility``: a monthly price in ``usd_per_hour``,
a budget out of all proportion to the cluster's spend rate, read from the cost state when there is
one) comes back as warnings; ``strict`` makes them problems.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raylens.config import ConfigError, ConfigProblem, RaylensConfig, read_yaml_mapping
from raylens.cost.budgets import validate_budgets
from raylens.cost.catalog import (
    DEFAULT_CATALOG_NAME,
    PRICING_FILE_KEYS,
    PricingFile,
    default_pricing_file,
    merge_pricing_files,
    validate_pricing,
)
from raylens.cost.loading import load_files, peek_state
from raylens.cost.plausibility import budget_warnings, price_warnings, spend_rate
from raylens.cost.quotas import validate_quotas
from raylens.cost.state import default_state_dir

MAIN, BUDGETS, QUOTAS, PRICING = "config", "budgets", "quotas", "pricing"


def detect_kind(data: dict[str, Any]) -> str:
    keys = set(data)
    if "budgets" in keys:
        return BUDGETS
    if keys & {"quotas", "roles"}:
        return QUOTAS
    if keys & (PRICING_FILE_KEYS - {"format_version"}) or keys == {"format_version"}:
        return PRICING
    return MAIN


@dataclass
class CheckResult:
    report: list[str] = field(default_factory=list)  # one line per non-main file
    warnings: list[ConfigProblem] = field(default_factory=list)


def check_config_files(
    paths: Sequence[Path], check_main: Callable[[Path], RaylensConfig], strict: bool = False
) -> CheckResult:
    """Validate ``paths`` together; raise ``ConfigError`` listing every problem (warnings too when
    ``strict``), else return one line per non-main file (``check_main`` prints its own report for main
    configs) and the warnings."""
    problems: list[ConfigProblem] = []
    warnings: list[ConfigProblem] = []
    state_dir: Path | None = None
    loaded: list[tuple[Path, str, dict[str, Any]]] = []
    for path in paths:
        try:
            data = read_yaml_mapping(path)
        except ConfigError as error:
            problems += error.problems
            continue
        loaded.append((path, detect_kind(data), data))

    pricing: list[tuple[str, PricingFile]] = [(DEFAULT_CATALOG_NAME, default_pricing_file())]
    for path, kind, data in loaded:
        if kind == MAIN:
            try:
                config = check_main(path)
                main_catalog, main_budgets, _quotas = load_files(config.cost, source=str(path))
            except ConfigError as error:
                problems += error.problems
                continue
            state_dir = state_dir or config.cost.state_dir or default_state_dir()
            warnings += price_warnings(main_catalog)
            if config.cost.budgets_file is not None:
                rate = spend_rate(peek_state(state_dir))
                warnings += budget_warnings(main_budgets, str(config.cost.budgets_file), rate)
        elif kind == PRICING:
            try:
                pricing.append((str(path), validate_pricing(data, str(path))))
            except ConfigError as error:
                problems += error.problems
    try:
        catalog = merge_pricing_files(pricing)
    except ConfigError as error:
        problems += error.problems
        catalog = merge_pricing_files(pricing[:1])

    warnings += price_warnings(catalog)
    report = []
    for path, kind, data in loaded:
        try:
            if kind == BUDGETS:
                budgets = validate_budgets(data, str(path), catalog.clouds())
                report.append(f"{path}: OK (budgets: {len(budgets)})")
                rate = spend_rate(peek_state(state_dir or default_state_dir()))
                warnings += budget_warnings(budgets, str(path), rate)
            elif kind == QUOTAS:
                quotas = validate_quotas(data, str(path), catalog.instance_types())
                report.append(f"{path}: OK (quotas: {len(quotas.quotas)}, roles: {len(quotas.roles)})")
            elif kind == PRICING:
                file = dict(pricing)[str(path)]
                report.append(
                    f"{path}: OK (pricing: {len(file.instance_types)} instance rows, "
                    f"{len(file.resource_prices)} resource prices)"
                )
        except (ConfigError, KeyError) as error:
            if isinstance(error, ConfigError):
                problems += error.problems
    # The same pricing file reached twice (named on the command line and by a main config) warns once.
    warnings = list({str(warning): warning for warning in warnings}.values())
    if strict:
        problems += warnings
    if problems:
        raise ConfigError(problems)
    return CheckResult(report, warnings)
