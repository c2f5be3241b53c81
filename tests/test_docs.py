"""Docs generated from code are fresh, and every exported metric is documented."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from raylens.collectors.base import ScrapeHealthCollector
from raylens.collectors.node import NodeCollector
from raylens.config import NodeConfig
from raylens.exporter import BuildInfoCollector
from raylens.reference import CONFIG_REFERENCE_PATH, config_reference_markdown

REPO = Path(__file__).resolve().parents[1]


def test_config_reference_is_fresh() -> None:
    committed = (REPO / CONFIG_REFERENCE_PATH).read_text()
    assert committed == config_reference_markdown(), "stale: run `raylens docs build` and commit the result"


def documented_metric_names() -> set[str]:
    text = (REPO / "docs" / "metrics.md").read_text()
    return set(re.findall(r"`(raylens_[a-z0-9_]+)`", text))


def test_every_node_and_health_metric_is_documented() -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeHealthCollector([NodeCollector(NodeConfig())]))
    registry.register(BuildInfoCollector())
    emitted = {sample.name for family in registry.collect() for sample in family.samples}
    emitted |= {family.name for family in registry.collect() if not family.samples}
    assert emitted, "the collectors emitted nothing"
    assert emitted - documented_metric_names() == set()
