"""The price catalog and node pricing: shipped data, overrides, evidence order, spot, unpriced nodes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from raylens.config import ConfigError, CostConfig, NodeMatch, NodeRule
from raylens.cost.catalog import (
    DEFAULT_CATALOG_NAME,
    default_pricing_file,
    load_catalog,
    merge_pricing_files,
    validate_pricing,
)
from raylens.cost.instance_metadata import InstanceIdentity, query_instance_metadata
from raylens.cost.model import NodeSpan, Resources
from raylens.cost.pricing import NodePricer

GIB = float(1 << 30)


def catalog_with(*overrides: dict) -> object:
    files = [(DEFAULT_CATALOG_NAME, default_pricing_file())]
    files += [
        (f"override-{index}.yaml", validate_pricing(data, f"override-{index}.yaml"))
        for index, data in enumerate(overrides)
    ]
    return merge_pricing_files(files)


def node(**fields: object) -> NodeSpan:
    values: dict[str, object] = {"node_id": "n1", "start_time": 0.0, "capacity": Resources(4, 0, 16 * GIB)}
    values.update(fields)
    return NodeSpan(**values)  # type: ignore[arg-type]


def test_shipped_catalog_cites_a_source_and_date_for_every_figure() -> None:
    catalog = load_catalog()
    rows = [row for rows in catalog.entries.values() for row in rows]
    assert len(rows) >= 15
    assert {
        "m5.xlarge",
        "g5.xlarge",
        "p4d.24xlarge",
        "p5.48xlarge",
        "a2-highgpu-1g",
        "a3-highgpu-8g",
    } <= catalog.instance_types()
    assert catalog.clouds() == {"aws", "gcp"}
    for row in rows:
        assert row.source and row.as_of, row.instance_type
        assert row.usd_per_hour > 0 and row.vcpus > 0 and row.memory_gib > 0
        if row.spot_usd_per_hour is not None:
            assert row.spot_source and row.spot_as_of, row.instance_type
            assert row.spot_usd_per_hour < row.usd_per_hour, row.instance_type
        if row.gpus:
            assert row.gpu_model
    # Spot-checks against the reference table (docs/cost-model.md cites it).
    p4d = catalog.lookup("p4d.24xlarge", "us-east-1")[0]
    assert (p4d.usd_per_hour, p4d.gpus, p4d.memory_gib) == (21.957642, 8, 1152)


def test_override_replaces_only_the_fields_it_gives() -> None:
    catalog = catalog_with(
        {"instance_types": [{"instance_type": "g5.xlarge", "region": "us-east-1", "spot_usd_per_hour": 0.3}]}
    )
    row = catalog.lookup("g5.xlarge", "us-east-1")[0]
    assert row.spot_usd_per_hour == 0.3 and row.usd_per_hour == 1.006 and row.gpus == 1
    assert row.spot_origin == "override-0.yaml" and row.price_origin == DEFAULT_CATALOG_NAME
    assert row.spot_source == ""  # the old citation does not describe the new figure


def test_override_without_region_applies_to_every_region_and_new_types_need_a_shape() -> None:
    catalog = catalog_with(
        {
            "instance_types": [
                {"instance_type": "m5.4xlarge", "usd_per_hour": 0.5},  # negotiated discount everywhere
                {
                    "instance_type": "dgx-a100",
                    "cloud": "onprem",
                    "vcpus": 128,
                    "memory_gib": 1024,
                    "gpus": 8,
                    "usd_per_hour": 12,
                },
            ]
        }
    )
    assert {row.usd_per_hour for row in catalog.entries["m5.4xlarge"]} == {0.5}
    assert catalog.lookup("dgx-a100", "anywhere")[0].region is None
    with pytest.raises(ConfigError) as caught:
        catalog_with({"instance_types": [{"instance_type": "x1.new", "usd_per_hour": 1.0}]})
    assert "a new instance type needs cloud, vcpus, memory_gib" in str(caught.value)


@pytest.mark.parametrize(
    ("data", "field", "expected"),
    [
        (
            {"instance_types": [{"instance_type": "m5.xlarge", "usd_per_hour": -1}]},
            "instance_types.0.usd_per_hour",
            "greater than or equal to 0",
        ),
        (
            {"instance_types": [{"instance_type": "m5.xlarge", "usd_per_month": 140}]},
            "instance_types.0.usd_per_month",
            "unknown field",
        ),
        (
            {"instance_types": [{"instance_type": "m5.xlarge", "split": {"cpu": 0.5, "memory": 0.6}}]},
            "instance_types.0.split",
            "cpu + gpu + memory = 1",
        ),
        ({"format_version": 2}, "format_version", "expected 1"),
        (
            {
                "resource_prices": [
                    {"name": "r", "usd_per_cpu_hour": 1, "usd_per_memory_gib_hour": 1, "usd_per_gpu_hour": {"A100": -2}}
                ]
            },
            "resource_prices.0.usd_per_gpu_hour",
            "price >= 0",
        ),
    ],
)
def test_pricing_file_errors_name_the_field(data: dict, field: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_pricing(data, "pricing.yaml")
    problem = caught.value.problems[0]
    assert problem.source == "pricing.yaml" and problem.field == field
    assert expected in problem.expected


def test_duplicate_rows_are_errors() -> None:
    row = {"instance_type": "m5.xlarge", "region": "eu-west-1", "usd_per_hour": 0.2}
    with pytest.raises(ConfigError, match="duplicate row for region eu-west-1"):
        catalog_with({"instance_types": [row, row]})


def test_evidence_order_rules_then_ray_then_labels_then_defaults() -> None:
    config = CostConfig(
        node_rules=(
            NodeRule(match=NodeMatch(labels={"pool": "gpu-*"}, head=False), instance_type="g5.12xlarge", market="spot"),
        ),
        default_instance_type="m5.xlarge",
    )
    pricer = NodePricer(config, load_catalog())
    by_rule = pricer.price(
        node(
            node_id="a",
            labels={"pool": "gpu-a", "node.kubernetes.io/instance-type": "m5.4xlarge"},
            instance_type="g5.xlarge",
        )
    )
    assert (by_rule.instance_type, by_rule.market, by_rule.instance_type_source) == (
        "g5.12xlarge",
        "spot",
        "cost.node_rules.0",
    )
    assert by_rule.usd_per_hour == 2.78
    by_ray = pricer.price(
        node(node_id="b", instance_type="g5.xlarge", labels={"node.kubernetes.io/instance-type": "m5.4xlarge"})
    )
    assert (by_ray.instance_type, by_ray.instance_type_source) == ("g5.xlarge", "ray")
    by_label = pricer.price(
        node(
            node_id="c",
            labels={"node.kubernetes.io/instance-type": "m5.4xlarge", "ray.io/availability-region": "us-west-2"},
        )
    )
    assert (by_label.instance_type, by_label.region, by_label.region_source) == (
        "m5.4xlarge",
        "us-west-2",
        "label ray.io/availability-region",
    )
    by_default = pricer.price(node(node_id="d"))
    assert (by_default.instance_type, by_default.instance_type_source, by_default.market_source) == (
        "m5.xlarge",
        "cost.default_instance_type",
        "cost.default_market",
    )
    assert by_default.usd_per_hour == 0.192 and by_default.pricing_source == "catalog"


def test_rules_match_ips_and_resources() -> None:
    config = CostConfig(
        node_rules=(
            NodeRule(match=NodeMatch(ip="10.1.0.0/16"), instance_type="m5.4xlarge"),
            NodeRule(match=NodeMatch(resources={"GPU": 8}), instance_type="p4d.24xlarge"),
        )
    )
    pricer = NodePricer(config, load_catalog())
    assert pricer.price(node(node_id="a", ip="10.1.2.3")).instance_type == "m5.4xlarge"
    assert pricer.price(node(node_id="b", ip="10.2.2.3", ray_resources={"GPU": 8.0})).instance_type == "p4d.24xlarge"
    assert not pricer.price(node(node_id="c", ip="10.2.2.3", ray_resources={"GPU": 4.0})).priced


def test_spot_is_never_silently_priced_on_demand() -> None:
    catalog = load_catalog()
    spot = node(instance_type="p5.4xlarge", market="spot")  # the catalog has no spot price for it
    unpriced = NodePricer(CostConfig(), catalog).price(spot)
    assert not unpriced.priced and "spot price of p5.4xlarge unknown" in unpriced.unpriced_reason
    estimated = NodePricer(CostConfig(spot_discount=0.6), catalog).price(spot)
    assert estimated.pricing_source == "spot_estimate"
    assert estimated.usd_per_hour == pytest.approx(6.88 * 0.4)


def test_split_by_ratios_or_as_given_sums_to_the_price() -> None:
    catalog = catalog_with(
        {"instance_types": [{"instance_type": "p4d.24xlarge", "split": {"cpu": 0.1, "gpu": 0.85, "memory": 0.05}}]}
    )
    pricer = NodePricer(CostConfig(), catalog)
    derived = pricer.price(node(node_id="a", instance_type="g5.xlarge"))
    weights = (4 * 7.5, 1 * 224, 16)
    assert derived.gpu_usd_per_hour == pytest.approx(1.006 * weights[1] / sum(weights))
    assert derived.cpu_usd_per_hour + derived.gpu_usd_per_hour + derived.memory_usd_per_hour == pytest.approx(1.006)
    given = pricer.price(node(node_id="b", instance_type="p4d.24xlarge"))
    assert given.gpu_usd_per_hour == pytest.approx(21.957642 * 0.85)
    assert given.split_source == "split given in the pricing row"


def test_on_prem_nodes_priced_by_resources() -> None:
    catalog = catalog_with(
        {
            "resource_prices": [
                {
                    "name": "rack",
                    "usd_per_cpu_hour": 0.02,
                    "usd_per_memory_gib_hour": 0.004,
                    "usd_per_gpu_hour": {"A100": 1.2, "default": 0.9},
                }
            ]
        }
    )
    pricer = NodePricer(CostConfig(default_resource_price="rack"), catalog)
    price = pricer.price(
        node(
            capacity=Resources(32, 2, 100 * GIB),
            ray_resources={"object_store_memory": 28 * GIB},
            accelerator_type="A100",
        )
    )
    assert price.pricing_source == "resource_rates" and price.cloud == "onprem"
    assert price.usd_per_hour == pytest.approx(32 * 0.02 + 2 * 1.2 + 128 * 0.004)
    other = pricer.price(node(node_id="x", capacity=Resources(8, 1, 8 * GIB), accelerator_type="L4"))
    assert other.gpu_usd_per_hour == pytest.approx(0.9)
    assert "default GPU rate" in other.notes[0]


def test_unpriced_nodes_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    pricer = NodePricer(CostConfig(), load_catalog())
    with caplog.at_level("WARNING", logger="raylens.cost"):
        for _ in range(3):
            price = pricer.price(node(instance_type="z9.mega"))
    assert not price.priced and "z9.mega is not in the catalog" in price.unpriced_reason
    assert [record.getMessage() for record in caplog.records] == ["node is unpriced"]


class FakeMetadata(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, str]] = {}

    def do_PUT(self) -> None:  # IMDSv2 token
        self._answer(self.answers.get("PUT " + self.path))

    def do_GET(self) -> None:
        self._answer(self.answers.get(self.path))

    def _answer(self, body: str | None) -> None:
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write((body or "").encode())

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def metadata_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeMetadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_instance_metadata_aws_and_gcp(metadata_server: str) -> None:
    FakeMetadata.answers = {
        "PUT /latest/api/token": "token",
        "/latest/meta-data/instance-type": "g5.xlarge",
        "/latest/meta-data/instance-life-cycle": "spot",
        "/latest/meta-data/placement/region": "us-east-2",
    }
    assert query_instance_metadata(1.0, aws_base=metadata_server, gcp_base=metadata_server) == InstanceIdentity(
        "aws", "g5.xlarge", "spot", "us-east-2"
    )
    FakeMetadata.answers = {
        "/computeMetadata/v1/instance/machine-type": "projects/1/machineTypes/a2-highgpu-1g",
        "/computeMetadata/v1/instance/scheduling/provisioning-model": "STANDARD",
        "/computeMetadata/v1/instance/scheduling/preemptible": "FALSE",
        "/computeMetadata/v1/instance/zone": "projects/1/zones/us-central1-a",
    }
    assert query_instance_metadata(1.0, aws_base=metadata_server, gcp_base=metadata_server) == InstanceIdentity(
        "gcp", "a2-highgpu-1g", "on_demand", "us-central1"
    )


def test_instance_metadata_absent_means_no_answer_quickly() -> None:
    import time

    started = time.monotonic()
    # A closed loopback port: refused at once, like a machine outside any cloud.
    assert query_instance_metadata(0.2, aws_base="http://127.0.0.1:9", gcp_base="http://127.0.0.1:9") is None
    assert time.monotonic() - started < 2


def test_instance_metadata_applies_to_the_local_node_only() -> None:
    asked = []

    def identity() -> InstanceIdentity:
        asked.append(1)
        return InstanceIdentity("aws", "m5.4xlarge", "spot", "us-east-1")

    pricer = NodePricer(CostConfig(instance_metadata=True), load_catalog(), identity, lambda: {"10.0.0.5"})
    local = pricer.price(node(node_id="local", ip="10.0.0.5"))
    assert (local.instance_type, local.market, local.instance_type_source) == (
        "m5.4xlarge",
        "spot",
        "instance metadata",
    )
    assert local.usd_per_hour == 0.322
    assert not pricer.price(node(node_id="remote", ip="10.0.0.6")).priced
    pricer.price(node(node_id="local2", ip="10.0.0.5"))
    assert len(asked) == 1  # asked once per process
    off = NodePricer(CostConfig(), load_catalog(), identity, lambda: {"10.0.0.5"})
    assert not off.price(node(node_id="local", ip="10.0.0.5")).priced


def test_node_price_round_trips() -> None:
    from raylens.cost.pricing import NodePrice

    price = NodePricer(CostConfig(), load_catalog()).price(node(instance_type="g5.xlarge"))
    assert NodePrice.from_dict(json.loads(json.dumps(price.to_dict()))) == price
