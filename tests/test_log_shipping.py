"""Log shipping configs, offline: Grafana Alloy (syntax, components, references, and its labelling
rules run against real Ray file names), Loki, the compose services and datasources, and the Vector
and Fluent Bit examples. None of these servers can be installed here (docs/logs.md says how each
check stands in for them)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from alloy_syntax import AlloySyntaxError, Block, Call, parse_alloy, references

from raylens.ray.logs.files import classify
from services import REPO

ALLOY = REPO / "provisioning" / "alloy" / "config.alloy"
SESSION_LOGS = "/tmp/ray/session_2026-12-06_22-17-45_189368_16507/logs"
# File names from a Ray 2.60 head that ran tasks, actors, a submitted job and a Serve app.
RAY_FILES = [
    "worker-4d3c4856e62a218edabf910e7db28310325b8f6cceba80eaa080ebaa-02000000-22986.out",
    "worker-4d3c4856e62a218edabf910e7db28310325b8f6cceba80eaa080ebaa-02000000-22986.err",
    "worker-ae4d5258efc6ce8725f6ec3b9ff81a76cc8c6be48e593b853e1fd6e0-ffffffff-21844.out",
    "python-core-worker-4d3c4856e62a218edabf910e7db28310325b8f6cceba80eaa080ebaa_22986.log",
    "python-core-driver-02000000ffffffffffffffffffffffffffffffffffffffffffffffff_22555.log",
    "job-driver-raysubmit_ufMpAZqHUGR14ac3.log",
    "runtime_env_setup-02000000.log",
    "raylet.out",
    "raylet.err",
    "gcs_server.out",
    "monitor.log",
    "monitor.out",
    "log_monitor.log",
    "dashboard.log",
    "dashboard_StateHead.log",
    "dashboard_agent.log",
    "runtime_env_agent.log",
    "ray_client_server.err",
    "serve/controller_25970.log",
    "serve/proxy_192.0.2.2.log",
    "serve/replica_helloapp_Hello_dqocozgz.log",
]
# Each component's arguments Alloy requires, blocks it accepts, and fields it exports (Alloy docs).
COMPONENTS: dict[str, tuple[set[str], set[str], set[str]]] = {
    "local.file_match": ({"path_targets"}, set(), {"targets"}),
    "discovery.relabel": ({"targets"}, {"rule"}, {"output", "rules"}),
    "loki.source.file": ({"targets", "forward_to"}, {"decompression", "file_watch"}, set()),
    "loki.process": (
        {"forward_to"},
        {
            "stage.regex",
            "stage.timestamp",
            "stage.json",
            "stage.labels",
            "stage.structured_metadata",
            "stage.static_labels",
        },
        {"receiver"},
    ),
    "loki.write": (set(), {"endpoint"}, {"receiver"}),
}
STDLIB = {("sys", "env"), ("constants", "hostname"), ("coalesce",)}


@pytest.fixture(scope="module")
def alloy() -> list[Block]:
    return parse_alloy(ALLOY.read_text())


def test_alloy_reader_rejects_broken_syntax() -> None:
    for broken in ('loki.write "x" {', "a = [1, 2", 'loki.write "x" { endpoint { url = } }', "x = 1"):
        with pytest.raises(AlloySyntaxError):
            parse_alloy(broken)


def test_alloy_components_arguments_and_references(alloy) -> None:
    declared = {(block.name, block.label) for block in alloy}
    assert len(declared) == len(alloy), "a component name and label used twice"
    for block in alloy:
        assert block.name in COMPONENTS, f"line {block.line}: unknown component {block.name}"
        required, allowed_blocks, _ = COMPONENTS[block.name]
        assert required <= set(block.attributes), (
            f"{block.name} {block.label}: missing {required - set(block.attributes)}"
        )
        assert {child.name for child in block.blocks} <= allowed_blocks, block.name
        for value in [*block.attributes.values(), *(v for c in block.blocks for v in c.attributes.values())]:
            for path in references(value):
                if path[:2] in STDLIB or path[:1] in STDLIB:
                    continue
                component, label, export = ".".join(path[:2]), path[2], path[3]
                assert (component, label) in declared, f"{block.name} {block.label}: {'.'.join(path)} undeclared"
                assert export in COMPONENTS[component][2], f"{'.'.join(path)}: {component} exports no {export}"
    # Everything read ends in Loki.
    writes = [block for block in alloy if block.name == "loki.write"]
    assert writes and all(block.children("endpoint") for block in writes)


def _relabel(rules: list[Block], labels: dict[str, str]) -> dict[str, str]:
    """Prometheus relabelling (action replace, the only one used): anchored regex on the joined
    source labels; a match sets target_label to the expanded replacement (empty removes it)."""
    labels = dict(labels)
    for rule in rules:
        attributes = rule.attributes
        assert attributes.get("action", "replace") == "replace"
        replacement = attributes.get("replacement", "$1")
        if isinstance(replacement, Call):
            replacement = "<call>"
        value = attributes.get("separator", ";").join(
            labels.get(name, "") for name in attributes.get("source_labels", [])
        )
        match = re.fullmatch(attributes.get("regex", "(.*)"), value)
        if match is None:
            continue
        result = match.expand(re.sub(r"\$(\d+)|\$\{(\d+)\}", lambda m: rf"\g<{m.group(1) or m.group(2)}>", replacement))
        if result:
            labels[attributes["target_label"]] = result
        else:
            labels.pop(attributes["target_label"], None)
    return labels


def test_alloy_labels_agree_with_raylens_on_real_ray_file_names(alloy) -> None:
    relabel = next(block for block in alloy if block.name == "discovery.relabel" and block.label == "ray")
    for name in RAY_FILES:
        labels = _relabel(relabel.children("rule"), {"__path__": f"{SESSION_LOGS}/{name}"})
        ours = classify("n", "ip", name)
        assert labels["component"] == ours.component, name
        assert labels.get("job_id", "") == ours.job_id, name
        assert labels.get("submission_id", "") == ours.submission_id, name
        assert labels["session"] == "session_2026-12-06_22-17-45_189368_16507" and labels["filename"] == name
        assert labels["service_name"] == "ray" and labels["node"] == "<call>"


def test_alloy_line_regex_reads_ray_times_and_levels(alloy) -> None:
    process = next(block for block in alloy if block.name == "loki.process" and block.label == "ray")
    expression = process.children("stage.regex")[0].attributes["expression"]
    pattern = re.compile(expression)  # RE2 named groups (?P<…>) read the same in Python
    python_line = pattern.match("2026-12-06 22:19:26,625\tINFO worker.py:1691 -- Using address")
    cpp_line = pattern.match("[2026-12-06 22:18:04,396 W 18747 18747] (raylet) main.cc:283: Setting")
    assert python_line and python_line["time"] == "2026-12-06 22:19:26,625" and python_line["level"] == "INFO"
    assert cpp_line and cpp_line["time"] == "2026-12-06 22:18:04,396" and cpp_line["level"] == "W"
    assert pattern.match("hello-from-task 0") is None
    timestamp = process.children("stage.timestamp")[0].attributes
    assert timestamp["source"] == "time" and timestamp["format"] == "2006-01-02 15:04:05,000"  # Go layout


def _compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_runs_loki_and_alloy_on_the_shipped_configs() -> None:
    services = _compose()["services"]
    alloy = services["alloy"]
    assert "./provisioning/alloy/config.alloy:/etc/alloy/config.alloy:ro" in alloy["volumes"]
    assert "/etc/alloy/config.alloy" in alloy["command"]
    assert "${RAY_TEMP_DIR:-/tmp/ray}:/tmp/ray:ro" in alloy["volumes"]
    assert any(volume.endswith(":/var/lib/raylens:ro") for volume in alloy["volumes"])
    assert "./provisioning/loki/loki.yaml:/etc/loki/loki.yaml:ro" in services["loki"]["volumes"]
    assert alloy["environment"]["LOKI_PUSH_URL"] == "http://loki:3100/loki/api/v1/push"
    loki = yaml.safe_load((REPO / "provisioning" / "loki" / "loki.yaml").read_text())
    assert loki["server"]["http_listen_port"] == 3100
    schema = loki["schema_config"]["configs"][-1]
    assert schema["schema"] == "v13" and schema["store"] == "tsdb"  # structured metadata needs both
    assert loki["limits_config"]["allow_structured_metadata"] is True
    assert loki["compactor"]["retention_enabled"] is True and loki["compactor"]["delete_request_store"]
    assert re.fullmatch(r"\d+h", loki["limits_config"]["retention_period"])


def test_grafana_has_loki_tempo_and_jaeger_datasources() -> None:
    provisioning = yaml.safe_load((REPO / "provisioning/grafana/datasources/datasources.yml").read_text())
    by_type = {source["type"]: source for source in provisioning["datasources"]}
    assert by_type["loki"]["uid"] == "raylens-loki" and by_type["loki"]["url"] == "http://loki:3100"
    assert by_type["tempo"]["uid"] == "raylens-tempo" and by_type["jaeger"]["uid"] == "raylens-jaeger"
    uids = {source["uid"] for source in provisioning["datasources"]}
    for source in (by_type["tempo"], by_type["jaeger"]):
        assert source["jsonData"]["tracesToLogsV2"]["datasourceUid"] in uids
    assert by_type["loki"]["jsonData"]["derivedFields"][0]["datasourceUid"] in uids


def test_vector_example_pipeline_is_wired_and_labels_like_raylens() -> None:
    config = yaml.safe_load((REPO / "examples" / "log-shipping" / "vector.yaml").read_text())
    producers = set(config["sources"]) | set(config["transforms"])
    for section in ("transforms", "sinks"):
        for name, component in config[section].items():
            assert set(component["inputs"]) <= producers, f"{section}.{name} reads an undeclared input"
    assert {sink["type"] for sink in config["sinks"].values()} == {"elasticsearch", "splunk_hec_logs"}
    program = config["transforms"]["ray_fields"]["source"]
    rules = re.findall(r"if match\(name, r'([^']+)'\) \{ \.component = \"(\w+)\" \}", program)
    assert len(rules) >= 12
    for name in RAY_FILES:
        component = "internal"
        for regex, value in rules:
            if re.search(regex, name):
                component = value
        assert component == classify("n", "ip", name).component, name


def test_fluent_bit_example_pipeline_is_wired() -> None:
    config = yaml.safe_load((REPO / "examples" / "log-shipping" / "fluent-bit.yaml").read_text())
    pipeline = config["pipeline"]
    tags = {entry["tag"] for entry in pipeline["inputs"]}
    assert tags == {"ray", "raylens.events"}
    assert all(entry["name"] for section in pipeline.values() for entry in section)
    assert all(entry["match"] in tags | {"*"} for entry in pipeline["filters"] + pipeline["outputs"])
    assert {entry["name"] for entry in pipeline["outputs"]} == {"es", "splunk"}
    lua = pipeline["filters"][0]["code"]
    assert f"function {pipeline['filters'][0]['call']}(" in lua and lua.count("end") >= lua.count("function ")


def test_every_shipping_file_is_referenced_from_the_docs() -> None:
    docs = (REPO / "docs" / "logs.md").read_text()
    for path in (
        ALLOY,
        REPO / "provisioning/loki/loki.yaml",
        REPO / "examples/log-shipping/vector.yaml",
        REPO / "examples/log-shipping/fluent-bit.yaml",
    ):
        assert str(Path(path).relative_to(REPO)) in docs, path


def test_dashboard_log_queries_use_labels_alloy_sets(alloy) -> None:
    from raylens.dashboards.build import build_dashboards
    from raylens.dashboards.validate import iter_log_queries

    labels = {"service_name"}
    for block in alloy:
        for rule in block.children("rule"):
            labels.add(rule.attributes["target_label"])
        for stage in block.children("stage.labels"):
            labels |= set(stage.attributes["values"])
    queries = [query for built in build_dashboards(REPO) for query in iter_log_queries(built.json)]
    assert queries, "no dashboard reads Loki"
    for query in queries:
        for selector in re.findall(r"\{([^{}]*)\}", query.expr):
            used = set(re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", selector))
            assert used <= labels, f"{query.where}: {sorted(used - labels)} not set by config.alloy"
