"""Plausibility of money: prices and budgets that are valid numbers but almost surely a unit mistake.

A monthly price typed into ``usd_per_hour`` (445.3 for an m5.4xlarge that costs 0.768 an hour) or a
budget in cents is accepted by every type check and then silently makes every dollar figure wrong.
These checks compare each figure with what it should be near:

* an instance price with the shipped catalog's price for the same type (``PRICE_RATIO_LIMIT`` times it
  or more), or, for a type the catalog lacks, with the catalog's most expensive type
  (``PRICE_CEILING_FACTOR`` times it or more); a spot price above the on-demand one;
* a resource price (per CPU, GPU or GiB-hour) with the dearest per-resource price in the catalog;
* a budget with the cluster's spend rate, when one is known (the cost state's alive nodes): more than
  ``BUDGET_RATIO_LIMIT`` times what the cluster spends in the budget's period, or, for an org budget,
  less than 1/``BUDGET_RATIO_LIMIT`` of it.

Each finding is a ``ConfigProblem`` naming the file and field and the likely mistake. ``raylens config
check`` prints them as warnings (errors with ``--strict``); the exporter logs them at start-up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache

from raylens.config import ConfigProblem
from raylens.cost.budgets import Budget
from raylens.cost.catalog import DEFAULT_CATALOG_NAME, HOURS_PER_MONTH, PriceCatalog, default_pricing_file
from raylens.cost.state import EngineState

PRICE_RATIO_LIMIT = 20.0
PRICE_CEILING_FACTOR = 3.0
BUDGET_RATIO_LIMIT = 1000.0
PERIOD_HOURS = {"day": 24.0, "week": 168.0, "month": HOURS_PER_MONTH}
# Factors a figure is most often off by, and what the figure then really was; most frequent first.
_UNIT_MISTAKES = (
    (HOURS_PER_MONTH, "a monthly price"),
    (100.0, "cents"),
    (24.0, "a daily price"),
    (8760.0, "a yearly price"),
)


def _likely_unit(
    ratio: float, value: float, unit: str, mistakes: tuple[tuple[float, str], ...] = _UNIT_MISTAKES
) -> str:
    """A hint such as '; likely a monthly price: 445.3 ÷ 730 = 0.61 USD/h' for a figure ``ratio`` times
    too high, when one of the usual mistakes explains it within a factor of 2."""
    best = min(_UNIT_MISTAKES, key=lambda mistake: abs(math.log(ratio / mistake[0])))
    if abs(math.log(ratio / best[0])) > math.log(2.0):
        return ""
    return _hint(best, value, unit)


def _likely_unit_below(ceiling: float, value: float, unit: str) -> str:
    """The hint for a figure above any plausible one: the first usual mistake that brings it under ``ceiling``."""
    for mistake in _UNIT_MISTAKES:
        if value / mistake[0] <= ceiling:
            return _hint(mistake, value, unit)
    return ""


def _hint(mistake: tuple[float, str], value: float, unit: str) -> str:
    return f"; likely {mistake[1]}: {value:,.6g} ÷ {mistake[0]:g} = {value / mistake[0]:,.4g} {unit}"


@lru_cache(maxsize=1)
def _catalog_maxima() -> tuple[dict[str, float], float, dict[str, float]]:
    """Default catalog: on-demand price per type (highest region), the dearest type's price, and the
    dearest price per vCPU, per GPU and per GiB of memory (whole instance price over that resource)."""
    by_type: dict[str, float] = {}
    per_resource = {"cpu": 0.0, "gpu": 0.0, "memory": 0.0}
    for row in default_pricing_file().instance_types:
        if row.usd_per_hour is None:
            continue
        by_type[row.instance_type] = max(by_type.get(row.instance_type, 0.0), row.usd_per_hour)
        if row.vcpus:
            per_resource["cpu"] = max(per_resource["cpu"], row.usd_per_hour / row.vcpus)
        if row.gpus:
            per_resource["gpu"] = max(per_resource["gpu"], row.usd_per_hour / row.gpus)
        if row.memory_gib:
            per_resource["memory"] = max(per_resource["memory"], row.usd_per_hour / row.memory_gib)
    return by_type, max(by_type.values()), per_resource


def price_warnings(catalog: PriceCatalog) -> list[ConfigProblem]:
    """Prices from pricing files (not the shipped catalog) that look like a unit mistake."""
    by_type, dearest, per_resource = _catalog_maxima()
    dearest_type = max(by_type, key=by_type.__getitem__)
    found = []
    for rows in catalog.entries.values():
        for entry in rows:
            where = f"instance_types: {entry.instance_type} ({entry.region or 'every region'})"
            if entry.price_origin != DEFAULT_CATALOG_NAME:
                found += _instance_price(
                    entry.price_origin, f"{where}.usd_per_hour", entry.usd_per_hour, entry.instance_type, by_type
                )
                if entry.instance_type not in by_type and entry.usd_per_hour >= PRICE_CEILING_FACTOR * dearest:
                    found.append(
                        ConfigProblem(
                            entry.price_origin,
                            f"{where}.usd_per_hour",
                            entry.usd_per_hour,
                            f"{entry.usd_per_hour / dearest:.0f} times the catalog's most expensive type "
                            f"({dearest_type}, {dearest:g} USD/h)"
                            + _likely_unit_below(dearest, entry.usd_per_hour, "USD/h"),
                        )
                    )
            spot = entry.spot_usd_per_hour
            user_file = next((o for o in (entry.spot_origin, entry.price_origin) if o != DEFAULT_CATALOG_NAME), "")
            if spot is not None and spot > entry.usd_per_hour and user_file:
                found.append(
                    ConfigProblem(
                        user_file,
                        f"{where}.spot_usd_per_hour",
                        spot,
                        f"above the on-demand price {entry.usd_per_hour:g}; spot capacity costs less",
                    )
                )
    for name, row in sorted(catalog.resource_prices.items()):
        rates = [
            ("usd_per_cpu_hour", row.usd_per_cpu_hour, "cpu"),
            ("usd_per_memory_gib_hour", row.usd_per_memory_gib_hour, "memory"),
        ]
        rates += [(f"usd_per_gpu_hour.{model}", price, "gpu") for model, price in sorted(row.usd_per_gpu_hour.items())]
        for field, price, resource in rates:
            ceiling = per_resource[resource]
            if ceiling and price >= PRICE_CEILING_FACTOR * ceiling:
                found.append(
                    ConfigProblem(
                        "pricing files",
                        f"resource_prices: {name}.{field}",
                        price,
                        f"{price / ceiling:.0f} times the dearest {resource} price in the catalog "
                        f"({ceiling:.4g} USD/h)" + _likely_unit_below(ceiling, price, "USD/h"),
                    )
                )
    return found


def _instance_price(
    origin: str, field: str, price: float, instance_type: str, by_type: dict[str, float]
) -> list[ConfigProblem]:
    known = by_type.get(instance_type)
    if not known or price < PRICE_RATIO_LIMIT * known:
        return []
    return [
        ConfigProblem(
            origin,
            field,
            price,
            f"{price / known:.0f} times the catalog's price for {instance_type} ({known:g} USD/h)"
            + _likely_unit(price / known, price, "USD/h"),
        )
    ]


def spend_rate(state: EngineState | None) -> float | None:
    """US dollars per hour the cluster's alive nodes cost, as of the state's last save (None: unknown)."""
    if state is None:
        return None
    total = 0.0
    for record in state.nodes.values():
        lived = record.until - record.start
        if record.end is None and lived > 60:
            total += sum(record.dollars) / lived * 3600.0
    return total or None


def budget_warnings(budgets: Iterable[Budget], source: str, usd_per_hour: float | None) -> list[ConfigProblem]:
    """Budgets out of all proportion to the cluster's spend rate (nothing when the rate is unknown)."""
    if not usd_per_hour:
        return []
    found = []
    for index, budget in enumerate(budgets):
        expected = usd_per_hour * PERIOD_HOURS[budget.period]
        ratio = budget.amount_usd / expected
        at_rate = f"the cluster spends {expected:,.2f} USD a {budget.period} at its last known rate"
        if ratio > BUDGET_RATIO_LIMIT:
            found.append(
                ConfigProblem(
                    source,
                    f"budgets.{index}.amount_usd",
                    budget.amount_usd,
                    f"{ratio:,.0f} times what {at_rate}; cents typed as dollars "
                    f"({budget.amount_usd / 100:,.2f} USD), or a digit too many?",
                )
            )
        elif budget.scope == "org" and ratio < 1 / BUDGET_RATIO_LIMIT:
            hours = budget.amount_usd / usd_per_hour
            found.append(
                ConfigProblem(
                    source,
                    f"budgets.{index}.amount_usd",
                    budget.amount_usd,
                    f"gone in {hours * 60:.0f} minutes: {at_rate}; thousands typed as units?",
                )
            )
    return found
