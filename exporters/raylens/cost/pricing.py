"""Pricing one node: which instance type and market it is, what it costs, and how that splits.

Order of evidence for instance type, market and region (first that answers wins, per item):

1. ``cost.node_rules`` — the first rule whose match holds (labels, IP, resources, head);
2. what Ray says: the instance type from the autoscaler or the ``cost.instance_type_labels`` node labels,
   the market from ``ray.market_labels`` / ``ray.market_by_node_type`` (resolved by the Ray source),
   the region from ``cost.region_labels``;
3. the cloud's instance-metadata service, for the node this exporter runs on (``cost.instance_metadata``);
4. ``cost.default_instance_type`` / ``cost.default_market`` / ``cost.default_region``.

Price: the catalog row for the instance type and region (spot: its spot price, else the on-demand price
less ``cost.spot_discount``); a node with no catalogued type is priced by a ``resource_prices`` entry
(rule's ``resource_price`` or ``cost.default_resource_price``). Anything else is **unpriced**: exported
as such, logged, never silently $0 or on-demand.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from raylens.config import CostConfig, NodeMatch
from raylens.cost.catalog import CatalogEntry, PriceCatalog, ResourcePriceRow
from raylens.cost.instance_metadata import InstanceIdentity
from raylens.cost.model import NodeSpan

log = logging.getLogger("raylens.cost")

GIB = float(1 << 30)
SECONDS_PER_HOUR = 3600.0
RESOURCES = ("cpu", "gpu", "memory")


@dataclass(frozen=True)
class NodePrice:
    """How a node is priced, with where every part came from (what ``raylens cost explain`` prints)."""

    node_id: str
    instance_type: str = ""
    market: str = "on_demand"
    cloud: str = ""
    region: str = ""
    usd_per_hour: float | None = None
    # Whole-node price of each component (all CPUs, all GPUs, all memory), US dollars per hour.
    cpu_usd_per_hour: float = 0.0
    gpu_usd_per_hour: float = 0.0
    memory_usd_per_hour: float = 0.0
    pricing_source: str = "unpriced"  # catalog | override | spot_estimate | resource_rates | unpriced
    instance_type_source: str = ""
    market_source: str = ""
    region_source: str = ""
    split_source: str = ""
    reference: str = ""  # citation and date of the figure, or the override file
    unpriced_reason: str = ""
    notes: tuple[str, ...] = ()

    @property
    def priced(self) -> bool:
        return self.usd_per_hour is not None

    @property
    def dollars_per_second(self) -> float:
        return (self.usd_per_hour or 0.0) / SECONDS_PER_HOUR

    def component_dollars_per_second(self) -> tuple[float, float, float]:
        return (
            self.cpu_usd_per_hour / SECONDS_PER_HOUR,
            self.gpu_usd_per_hour / SECONDS_PER_HOUR,
            self.memory_usd_per_hour / SECONDS_PER_HOUR,
        )

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: every field is a plain value, and dataclasses.asdict's deep copy was a
        # tenth of the accounting step on 10,000 nodes (the explain log writes one per node).
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["notes"] = list(self.notes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodePrice:
        known = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        known["notes"] = tuple(known.get("notes") or ())
        return cls(**known)


def node_matches(match: NodeMatch, node: NodeSpan) -> bool:
    for key, pattern in match.labels.items():
        value = node.labels.get(key)
        if value is None or not fnmatch.fnmatchcase(value, pattern):
            return False
    if match.ip is not None and not _ip_matches(match.ip, node.ip):
        return False
    for name, minimum in match.resources.items():
        if float(node.ray_resources.get(name, 0.0)) < minimum:
            return False
    return match.head is None or match.head == node.is_head


def _ip_matches(pattern: str, address: str) -> bool:
    if not address:
        return False
    if "/" in pattern:
        try:
            return ipaddress.ip_address(address) in ipaddress.ip_network(pattern, strict=False)
        except ValueError:
            return False
    return fnmatch.fnmatchcase(address, pattern)


@dataclass
class _Evidence:
    instance_type: str = ""
    instance_type_source: str = ""
    market: str = ""
    market_source: str = ""
    region: str = ""
    region_source: str = ""
    cloud: str = ""
    resource_price: str = ""
    notes: list[str] = field(default_factory=list)

    def offer(self, source: str, instance_type: str = "", market: str = "", region: str = "") -> None:
        if instance_type and not self.instance_type:
            self.instance_type, self.instance_type_source = instance_type, source
        if market and not self.market:
            self.market, self.market_source = market, source
        if region and not self.region:
            self.region, self.region_source = region, source


class NodePricer:
    """Resolves and caches each node's ``NodePrice`` (labels and resources do not change in a node's life)."""

    def __init__(
        self,
        config: CostConfig,
        catalog: PriceCatalog,
        instance_metadata: Callable[[], InstanceIdentity | None] | None = None,
        local_addresses: Callable[[], set[str]] | None = None,
    ):
        self._config = config
        self._catalog = catalog
        self._instance_metadata = instance_metadata
        self._local_addresses = local_addresses
        self._identity: InstanceIdentity | None = None
        self._identity_asked = False
        self._addresses: set[str] | None = None
        self._cache: dict[str, NodePrice] = {}

    @property
    def catalog(self) -> PriceCatalog:
        return self._catalog

    def price(self, node: NodeSpan) -> NodePrice:
        cached = self._cache.get(node.node_id)
        if cached is None:
            cached = self._resolve(node)
            self._cache[node.node_id] = cached
            if not cached.priced:
                log.warning(
                    "node is unpriced",
                    extra={
                        "node_id": node.node_id,
                        "instance_type": cached.instance_type,
                        "reason": cached.unpriced_reason,
                    },
                )
        return cached

    def forget(self, node_id: str) -> None:
        self._cache.pop(node_id, None)

    def _local_identity(self, node: NodeSpan) -> InstanceIdentity | None:
        if not self._config.instance_metadata or self._instance_metadata is None:
            return None
        if self._addresses is None:
            self._addresses = self._local_addresses() if self._local_addresses else set()
        if node.ip not in self._addresses:
            return None
        if not self._identity_asked:
            self._identity_asked = True
            self._identity = self._instance_metadata()
        return self._identity

    def evidence(self, node: NodeSpan) -> _Evidence:
        config = self._config
        evidence = _Evidence()
        for index, rule in enumerate(config.node_rules):
            if node_matches(rule.match, node):
                source = f"cost.node_rules.{index}"
                evidence.offer(source, rule.instance_type or "", rule.market or "", rule.region or "")
                evidence.cloud = rule.cloud or ""
                evidence.resource_price = rule.resource_price or ""
                break
        if node.instance_type:
            evidence.offer("ray", instance_type=node.instance_type)
        for key in config.instance_type_labels:
            if node.labels.get(key):
                evidence.offer(f"label {key}", instance_type=node.labels[key])
        if node.market:
            evidence.offer("ray", market=node.market)
        for key in config.region_labels:
            if node.labels.get(key):
                evidence.offer(f"label {key}", region=node.labels[key])
        identity = self._local_identity(node)
        if identity is not None:
            evidence.offer("instance metadata", identity.instance_type, identity.market, identity.region)
        evidence.offer("cost.default_instance_type", instance_type=config.default_instance_type or "")
        evidence.offer("cost.default_market", market=config.default_market)
        evidence.offer("cost.default_region", region=config.default_region or "")
        return evidence

    def _resolve(self, node: NodeSpan) -> NodePrice:
        evidence = self.evidence(node)
        base = {
            "node_id": node.node_id,
            "instance_type": evidence.instance_type,
            "market": evidence.market or "on_demand",
            "region": evidence.region,
            "instance_type_source": evidence.instance_type_source,
            "market_source": evidence.market_source,
            "region_source": evidence.region_source,
        }
        resource_price = evidence.resource_price
        if evidence.instance_type and not resource_price:
            found = self._catalog.lookup(evidence.instance_type, evidence.region or None)
            if found is not None:
                entry, note = found
                return self._from_catalog(base, entry, note, evidence.cloud)
            if not self._config.default_resource_price:
                return NodePrice(
                    **base,
                    cloud=evidence.cloud,
                    unpriced_reason=f"instance type {evidence.instance_type} is not in the catalog; add it "
                    "to a pricing file or set cost.default_resource_price",
                )
            evidence.notes.append(f"instance type {evidence.instance_type} is not in the catalog")
        resource_price = resource_price or self._config.default_resource_price or ""
        if not resource_price:
            return NodePrice(
                **base,
                cloud=evidence.cloud,
                unpriced_reason="instance type unknown: no rule, label, instance metadata or "
                "cost.default_instance_type says it, and cost.default_resource_price is unset",
            )
        row = self._catalog.resource_prices.get(resource_price)
        if row is None:
            return NodePrice(
                **base,
                cloud=evidence.cloud,
                unpriced_reason=f"resource price {resource_price!r} is not in any pricing file",
            )
        return self._from_resources(base, node, row, evidence)

    def _from_catalog(self, base: dict[str, Any], entry: CatalogEntry, note: str, cloud: str) -> NodePrice:
        notes = [note] if note else []
        market = base["market"]
        if market == "spot":
            if entry.spot_usd_per_hour is not None:
                price = entry.spot_usd_per_hour
                origin = entry.spot_origin
                source = "catalog" if entry.spot_origin == entry_origin_default(self._catalog) else "override"
                reference = _reference(entry.spot_source, entry.spot_as_of, origin)
            elif self._config.spot_discount is not None:
                price = entry.usd_per_hour * (1.0 - self._config.spot_discount)
                source = "spot_estimate"
                reference = (
                    f"on-demand {entry.usd_per_hour:g} USD/h less cost.spot_discount "
                    f"{self._config.spot_discount:g}; on-demand from "
                    + _reference(entry.source, entry.as_of, entry.price_origin)
                )
            else:
                return NodePrice(
                    **base,
                    cloud=cloud or entry.cloud,
                    unpriced_reason=f"spot price of {entry.instance_type} unknown: add spot_usd_per_hour to a "
                    "pricing file or set cost.spot_discount",
                    notes=tuple(notes),
                )
        else:
            price = entry.usd_per_hour
            source = "catalog" if entry.price_origin == entry_origin_default(self._catalog) else "override"
            reference = _reference(entry.source, entry.as_of, entry.price_origin)
        if entry.split is not None:
            fractions = (entry.split.cpu, entry.split.gpu, entry.split.memory)
            split_source = "split given in the pricing row"
        else:
            ratios = self._catalog.split_ratios
            weights = (
                entry.vcpus * ratios.cpu_to_memory_gib,
                entry.gpus * ratios.gpu_to_memory_gib,
                entry.memory_gib,
            )
            total = sum(weights)
            fractions = tuple(weight / total for weight in weights)  # type: ignore[assignment]
            split_source = (
                f"derived by ratios: {entry.vcpus:g} vCPU x {ratios.cpu_to_memory_gib:g} : "
                f"{entry.gpus:g} GPU x {ratios.gpu_to_memory_gib:g} : {entry.memory_gib:g} GiB x 1"
            )
        return NodePrice(
            **{**base, "region": base["region"] or (entry.region or "")},
            cloud=cloud or entry.cloud,
            usd_per_hour=price,
            cpu_usd_per_hour=price * fractions[0],
            gpu_usd_per_hour=price * fractions[1],
            memory_usd_per_hour=price * fractions[2],
            pricing_source=source,
            split_source=split_source,
            reference=reference,
            notes=tuple(notes),
        )

    def _from_resources(
        self, base: dict[str, Any], node: NodeSpan, row: ResourcePriceRow, evidence: _Evidence
    ) -> NodePrice:
        capacity = node.capacity
        memory_bytes = node.physical_memory_bytes
        if memory_bytes is None:
            memory_bytes = capacity.memory_bytes + float(node.ray_resources.get("object_store_memory", 0.0))
        gpu_rate = 0.0
        notes = list(evidence.notes)
        if capacity.gpu > 0:
            model = node.accelerator_type or node.labels.get("ray.io/accelerator-type", "")
            if model in row.usd_per_gpu_hour:
                gpu_rate = row.usd_per_gpu_hour[model]
            elif "default" in row.usd_per_gpu_hour:
                gpu_rate = row.usd_per_gpu_hour["default"]
                notes.append(f"GPU model {model or 'unknown'} priced at the entry's default GPU rate")
            else:
                return NodePrice(
                    **base,
                    cloud=evidence.cloud or row.cloud,
                    unpriced_reason=f"resource price {row.name!r} has no usd_per_gpu_hour for GPU model "
                    f"{model or 'unknown'} and no 'default'",
                )
        cpu = row.usd_per_cpu_hour * capacity.cpu
        gpu = gpu_rate * capacity.gpu
        memory = row.usd_per_memory_gib_hour * memory_bytes / GIB
        return NodePrice(
            **base,
            cloud=evidence.cloud or row.cloud,
            usd_per_hour=cpu + gpu + memory,
            cpu_usd_per_hour=cpu,
            gpu_usd_per_hour=gpu,
            memory_usd_per_hour=memory,
            pricing_source="resource_rates",
            split_source=(
                f"resource rates of {row.name!r}: {capacity.cpu:g} CPU x {row.usd_per_cpu_hour:g} + "
                f"{capacity.gpu:g} GPU x {gpu_rate:g} + {memory_bytes / GIB:.3g} GiB x {row.usd_per_memory_gib_hour:g}"
            ),
            reference=_reference(row.source or "", row.as_of, "resource_prices"),
            notes=tuple(notes),
        )


def entry_origin_default(catalog: PriceCatalog) -> str:
    return catalog.files[0] if catalog.files else ""


def _reference(source: str, as_of: Any, origin: str) -> str:
    parts = [part for part in (source, f"as of {as_of}" if as_of else "", f"from {origin}") if part]
    return "; ".join(parts)
