"""The price catalog: the default file shipped with raylens plus user pricing files merged on top.

Format (the same for the default catalog and for override files; units are in the key names)::

    format_version: 1
    split_ratios: {cpu_to_memory_gib: 7.5, gpu_to_memory_gib: 224}
    instance_types:
      - instance_type: g5.xlarge          # one row per (instance_type, region)
        cloud: aws
        region: us-east-1                 # leave out in an override to apply to every region
        vcpus: 4
        memory_gib: 16
        gpus: 1
        gpu_model: A10G
        usd_per_hour: 1.006               # on-demand, whole instance
        spot_usd_per_hour: 0.451          # optional
        split: {cpu: 0.2, gpu: 0.7, memory: 0.1}   # optional; else derived by split_ratios
        source: "where the figure comes from"
        as_of: 2026-11-09
    resource_prices:                      # custom / on-prem machines, priced by their resources
      - name: onprem
        usd_per_cpu_hour: 0.03
        usd_per_memory_gib_hour: 0.004
        usd_per_gpu_hour: {A100: 1.5, default: 1.0}

An override row with the same ``instance_type`` and ``region`` replaces only the fields it gives; a row
without ``region`` is merged into every region of its type. A new instance type must give ``cloud``,
``vcpus``, ``memory_gib`` and ``usd_per_hour``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from raylens.config import (
    MISSING,
    ConfigError,
    ConfigProblem,
    problems_from_validation,
    read_yaml_mapping,
)
from raylens.config.limits import MAX_PRICING_ROWS, MAX_RESOURCE_PRICES, at_most

DEFAULT_CATALOG_RESOURCE = "default-catalog.yaml"
DEFAULT_CATALOG_NAME = "default catalog (raylens/cost/default-catalog.yaml)"
HOURS_PER_MONTH = 730.0  # the clouds' convention for monthly prices (8760 / 12)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _identifier(value: str) -> str:
    if not value.strip() or value != value.strip():
        raise ValueError("expected a non-empty name without surrounding spaces")
    return value


class SplitRatios(_Strict):
    cpu_to_memory_gib: float = Field(7.5, gt=0, description="Price weight of one vCPU per GiB of memory.")
    gpu_to_memory_gib: float = Field(224.0, gt=0, description="Price weight of one GPU per GiB of memory.")
    source: str | None = None


class ComponentSplit(_Strict):
    """Fractions of an instance's price for its CPUs, GPUs and memory; they sum to 1."""

    cpu: float = Field(ge=0, le=1)
    gpu: float = Field(0.0, ge=0, le=1)
    memory: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> ComponentSplit:
        if not math.isclose(self.cpu + self.gpu + self.memory, 1.0, abs_tol=1e-6):
            raise ValueError(f"expected cpu + gpu + memory = 1, got {self.cpu + self.gpu + self.memory:.6g}")
        return self


class InstancePriceRow(_Strict):
    instance_type: str
    cloud: str | None = None
    region: str | None = None
    vcpus: float | None = Field(None, gt=0)
    memory_gib: float | None = Field(None, gt=0)
    gpus: float | None = Field(None, ge=0)
    gpu_model: str | None = None
    usd_per_hour: float | None = Field(None, ge=0, allow_inf_nan=False)
    spot_usd_per_hour: float | None = Field(None, ge=0, allow_inf_nan=False)
    split: ComponentSplit | None = None
    source: str | None = None
    as_of: date | None = None
    spot_source: str | None = None
    spot_as_of: date | None = None

    _names = field_validator("instance_type", "cloud", "region")(
        lambda value: _identifier(value) if value is not None else value
    )


class ResourcePriceRow(_Strict):
    name: str
    cloud: str = "onprem"
    usd_per_cpu_hour: float = Field(ge=0, allow_inf_nan=False)
    usd_per_memory_gib_hour: float = Field(ge=0, allow_inf_nan=False)
    usd_per_gpu_hour: dict[str, float] = Field(default_factory=dict)
    source: str | None = None
    as_of: date | None = None

    _names = field_validator("name", "cloud")(_identifier)

    @field_validator("usd_per_gpu_hour")
    @classmethod
    def _gpu_prices(cls, value: dict[str, float]) -> dict[str, float]:
        for model, price in value.items():
            if not (isinstance(price, int | float) and math.isfinite(price) and price >= 0):
                raise ValueError(f"expected a price >= 0 for GPU model {model!r}")
        return value


class PricingFile(_Strict):
    format_version: Literal[1] = 1
    split_ratios: SplitRatios | None = None
    instance_types: list[InstancePriceRow] = Field(default_factory=list)
    resource_prices: list[ResourcePriceRow] = Field(default_factory=list)

    _rows = field_validator("instance_types", mode="before")(at_most(MAX_PRICING_ROWS, "instance_types rows"))
    _prices = field_validator("resource_prices", mode="before")(at_most(MAX_RESOURCE_PRICES, "resource_prices"))


PRICING_FILE_KEYS = frozenset(PricingFile.model_fields)


@dataclass(frozen=True)
class CatalogEntry:
    """One priced instance type in one region (``region`` None: any region), after merging."""

    instance_type: str
    cloud: str
    region: str | None
    vcpus: float
    memory_gib: float
    gpus: float
    gpu_model: str | None
    usd_per_hour: float
    spot_usd_per_hour: float | None
    split: ComponentSplit | None
    source: str
    as_of: date | None
    spot_source: str
    spot_as_of: date | None
    # Which file gave the on-demand and spot price: DEFAULT_CATALOG_NAME or an override's path.
    price_origin: str
    spot_origin: str


@dataclass(frozen=True)
class PriceCatalog:
    entries: dict[str, list[CatalogEntry]] = field(default_factory=dict)
    resource_prices: dict[str, ResourcePriceRow] = field(default_factory=dict)
    split_ratios: SplitRatios = field(default_factory=SplitRatios)
    files: tuple[str, ...] = ()

    def lookup(self, instance_type: str, region: str | None) -> tuple[CatalogEntry, str] | None:
        """The entry for a type in a region, and a note when another region's price stands in."""
        rows = self.entries.get(instance_type)
        if not rows:
            return None
        if region is not None:
            for row in rows:
                if row.region == region:
                    return row, ""
        for row in rows:
            if row.region is None:
                return row, ""
        first = rows[0]
        wanted = f"region {region}" if region else "an unknown region"
        return first, f"no price for {instance_type} in {wanted}; used {first.region}"

    def instance_types(self) -> set[str]:
        return set(self.entries)

    def clouds(self) -> set[str]:
        clouds = {row.cloud for rows in self.entries.values() for row in rows}
        return clouds | {row.cloud for row in self.resource_prices.values()}


def validate_pricing(data: dict[str, Any], source: str) -> PricingFile:
    try:
        return PricingFile.model_validate(data)
    except ValidationError as error:
        raise ConfigError(problems_from_validation(error, PricingFile, source)) from None


def load_pricing_file(path: Path) -> PricingFile:
    return validate_pricing(read_yaml_mapping(path), str(path))


@lru_cache(maxsize=1)
def default_pricing_file() -> PricingFile:
    import yaml

    text = resources.files("raylens.cost").joinpath(DEFAULT_CATALOG_RESOURCE).read_text(encoding="utf-8")
    return validate_pricing(yaml.safe_load(text), DEFAULT_CATALOG_NAME)


def _duplicates(rows: Sequence[InstancePriceRow], source: str) -> list[ConfigProblem]:
    seen: dict[tuple[str, str | None], int] = {}
    problems = []
    for index, row in enumerate(rows):
        key = (row.instance_type, row.region)
        if key in seen:
            where = f"region {row.region}" if row.region else "every region"
            problems.append(
                ConfigProblem(
                    source,
                    f"instance_types.{index}",
                    row.instance_type,
                    f"duplicate row for {where}; first given at instance_types.{seen[key]}",
                )
            )
        seen.setdefault(key, index)
    return problems


_SHAPE_FIELDS = ("cloud", "vcpus", "memory_gib", "usd_per_hour")


def _new_entry(row: InstancePriceRow, origin: str, index: int, template: CatalogEntry | None) -> CatalogEntry:
    given = row.model_dump(exclude_unset=True)
    base: dict[str, Any] = {}
    if template is not None:
        base = {name: getattr(template, name) for name in CatalogEntry.__dataclass_fields__}
    missing = [name for name in _SHAPE_FIELDS if given.get(name) is None and base.get(name) is None]
    if missing:
        raise ConfigError(
            [
                ConfigProblem(
                    origin,
                    f"instance_types.{index}",
                    row.instance_type,
                    "a new instance type needs " + ", ".join(missing),
                )
            ]
        )
    merged = {**base, **{key: value for key, value in given.items() if key != "split"}}
    if "split" in given:
        merged["split"] = row.split
    merged.setdefault("gpus", 0.0)
    merged["gpus"] = merged.get("gpus") or 0.0
    merged["region"] = row.region
    for name, default in (
        ("gpu_model", None),
        ("spot_usd_per_hour", None),
        ("split", None),
        ("as_of", None),
        ("spot_as_of", None),
    ):
        merged.setdefault(name, default)
    merged["source"] = merged.get("source") or ""
    merged["spot_source"] = merged.get("spot_source") or ""
    merged["price_origin"] = origin if "usd_per_hour" in given else base.get("price_origin", origin)
    merged["spot_origin"] = origin if "spot_usd_per_hour" in given else base.get("spot_origin", origin)
    return CatalogEntry(**merged)


def _merge_row(entry: CatalogEntry, row: InstancePriceRow, origin: str) -> CatalogEntry:
    given = row.model_dump(exclude_unset=True, exclude={"instance_type", "region"})
    if "split" in given:
        given["split"] = row.split
    if "gpus" in given and given["gpus"] is None:
        given["gpus"] = 0.0
    # A new on-demand price without its own source must not keep citing the old figure's source.
    if "usd_per_hour" in given:
        given.setdefault("source", "")
        given.setdefault("as_of", None)
        given["price_origin"] = origin
    if "spot_usd_per_hour" in given:
        given.setdefault("spot_source", "")
        given.setdefault("spot_as_of", None)
        given["spot_origin"] = origin
    for name in ("source", "spot_source"):
        if name in given and given[name] is None:
            given[name] = ""
    return replace(entry, **given)


def merge_pricing_files(files: Iterable[tuple[str, PricingFile]]) -> PriceCatalog:
    """Merge pricing files in order (default catalog first); raise ``ConfigError`` with every problem."""
    entries: dict[str, list[CatalogEntry]] = {}
    resource_prices: dict[str, ResourcePriceRow] = {}
    ratios = SplitRatios()
    problems: list[ConfigProblem] = []
    names = []
    for origin, pricing in files:
        names.append(origin)
        problems += _duplicates(pricing.instance_types, origin)
        if pricing.split_ratios is not None:
            ratios = pricing.split_ratios
        seen_names: set[str] = set()
        for index, price in enumerate(pricing.resource_prices):
            if price.name in seen_names:
                problems.append(ConfigProblem(origin, f"resource_prices.{index}.name", price.name, "duplicate name"))
            seen_names.add(price.name)
            resource_prices[price.name] = price
        for index, row in enumerate(pricing.instance_types):
            rows = entries.setdefault(row.instance_type, [])
            try:
                if row.region is None and rows:
                    rows[:] = [_merge_row(entry, row, origin) for entry in rows]
                    continue
                for position, entry in enumerate(rows):
                    if entry.region == row.region:
                        rows[position] = _merge_row(entry, row, origin)
                        break
                else:
                    template = rows[0] if rows else None
                    rows.append(_new_entry(row, origin, index, template))
            except ConfigError as error:
                problems += error.problems
            if not rows:
                del entries[row.instance_type]
    for rows in entries.values():
        for entry in rows:
            if entry.cloud is None:  # pragma: no cover - _new_entry guarantees it
                problems.append(ConfigProblem(entry.price_origin, "cloud", MISSING, "missing"))
    if problems:
        raise ConfigError(problems)
    return PriceCatalog(entries, resource_prices, ratios, tuple(names))


def load_catalog(paths: Sequence[Path] = ()) -> PriceCatalog:
    """The default catalog with ``paths`` merged on top, in order."""
    files: list[tuple[str, PricingFile]] = [(DEFAULT_CATALOG_NAME, default_pricing_file())]
    problems: list[ConfigProblem] = []
    for path in paths:
        try:
            files.append((str(path), load_pricing_file(path)))
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)
    return merge_pricing_files(files)
