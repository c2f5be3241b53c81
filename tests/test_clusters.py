"""Many clusters, many nodes, without services: the cluster name and label, roles, discovery's target
groups, the http_sd and health routes, and budgets and quotas scoped by cluster."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import MappingProxyType

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from raylens.cluster import ClusterLabelCollector, ClusterName, local_session_name
from raylens.config import ConfigError, load_config
from raylens.config import exporter as exporter_config
from raylens.cost.budgets import validate_budgets
from raylens.cost.quotas import validate_quotas
from raylens.exporter import build_registry, cluster_endpoints
from raylens.ray.discovery import (
    EXPORTER_PORT_LABEL,
    ServeTargets,
    exporter_target_groups,
    on_loopback,
    ray_target_groups,
)
from raylens.ray.endpoints import ClusterEndpoints
from raylens.ray.snapshot import ClusterSnapshot, NodeSnapshot, ServeApplication, ServeState, SourceStatus
from raylens.web.server import make_app, make_http_server
from raylens.web.webconfig import WebConfig

NOW = 1_800_000_000.0


def node(node_id: str, ip: str, head: bool = False, alive: bool = True, **labels: str) -> NodeSnapshot:
    return NodeSnapshot(
        node_id=node_id,
        ip=ip,
        is_head=head,
        state="ALIVE" if alive else "DEAD",
        labels=MappingProxyType(labels),
        metrics_export_port=8080,
    )


def snapshot(serve: ServeState | None = None, listed_at: float = NOW) -> ClusterSnapshot:
    ok = SourceStatus(ok=True)
    return ClusterSnapshot(
        taken_at=listed_at,
        duration_seconds=0.1,
        dashboard_url="http://10.0.0.1:8265",
        session_name="session_2026_1",
        ray_version="2.60.0",
        nodes=(
            node("head", "10.0.0.1", head=True),
            node("w1", "10.0.0.2", **{EXPORTER_PORT_LABEL: "9971"}),
            node("gone", "10.0.0.3", alive=False),
        ),
        sources=MappingProxyType({"nodes": ok, "node_details": ok, "serve": ok}),
        fetched_at=MappingProxyType({"nodes": listed_at, "node_details": listed_at}),
        serve=serve,
    )


# --- the cluster name and label ----------------------------------------------------------------------


def test_cluster_name_comes_from_config_then_kuberay_then_the_local_session(tmp_path: Path) -> None:
    (tmp_path / "session_2026-12-06_10-00-00_1").mkdir()
    os.symlink(tmp_path / "session_2026-12-06_10-00-00_1", tmp_path / "session_latest")
    kuberay = {"RAY_CLUSTER_NAME": "raycluster-a"}
    assert ClusterName("prod", tmp_path, kuberay)() == "prod"
    assert ClusterName(None, tmp_path, kuberay)() == "raycluster-a"
    assert ClusterName(None, tmp_path, {})() == "session_2026-12-06_10-00-00_1"
    assert ClusterName(None, tmp_path / "none", {}, session=lambda: "session_from_dashboard")() == (
        "session_from_dashboard"
    )
    assert ClusterName(None, tmp_path / "none", {})() == ""
    assert local_session_name(tmp_path / "none") == ""


def test_every_series_gets_the_cluster_label_once_without_touching_the_collectors_families() -> None:
    counter = CounterMetricFamily("x_events", "Events.", labels=["kind"])
    counter.add_metric(["a"], 3.0)
    served = [counter, GaugeMetricFamily("y", "Y.", value=1.0)]

    class Fixed:
        def collect(self):
            return iter(served)

    registry = CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
    registry.register(ClusterLabelCollector([Fixed()], lambda: "prod"))
    text = generate_latest(registry).decode()
    assert 'x_events_total{cluster="prod",kind="a"} 3.0' in text
    assert 'y{cluster="prod"} 1.0' in text
    assert "cluster" not in counter.samples[0].labels  # the collector's own family is not modified
    registry = CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
    registry.register(ClusterLabelCollector([Fixed()], lambda: ""))
    assert "cluster" not in generate_latest(registry).decode()


def test_the_exporters_registry_labels_every_series() -> None:
    config = load_config(environ={"RAYLENS_ROLE": "node", "RAYLENS_CLUSTER_NAME": "prod"})
    text = generate_latest(build_registry(config)).decode()
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(samples) > 20
    assert all('cluster="prod"' in line for line in samples), [s for s in samples if 'cluster="prod"' not in s]


# --- roles ---------------------------------------------------------------------------------------------


def test_roles_pick_collectors_and_refuse_the_other_roles(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(exporter_config, "NVIDIA_CONTROL_DEVICE", tmp_path / "nvidiactl")
    assert load_config(environ={"RAYLENS_ROLE": "node"}).exporter.collectors == ("node",)
    assert load_config(environ={"RAYLENS_ROLE": "cluster"}).exporter.collectors == ("ray", "cost")
    (tmp_path / "nvidiactl").touch()
    assert load_config(environ={"RAYLENS_ROLE": "node"}).exporter.collectors == ("node", "gpu")
    assert load_config(environ={"RAYLENS_ROLE": "all"}).exporter.collectors == ("node", "gpu", "ray", "cost")
    with pytest.raises(ConfigError, match="role node runs only node, gpu; ray belongs to another role"):
        load_config(environ={"RAYLENS_ROLE": "node", "RAYLENS_COLLECTORS": "node,ray"})
    with pytest.raises(ConfigError, match=r"cluster\.name"):
        load_config(environ={"RAYLENS_CLUSTER_NAME": "has space"})
    # A node-role exporter never reads Ray: it serves no discovery or cluster health.
    assert cluster_endpoints(load_config(environ={"RAYLENS_ROLE": "node"})) is None


# --- discovery -----------------------------------------------------------------------------------------


def test_target_groups_carry_the_cluster_and_follow_alive_nodes() -> None:
    groups = ray_target_groups(snapshot(), [("autoscaler", "10.0.0.1:44217")], "prod")
    assert [group["targets"] for group in groups] == [["10.0.0.1:8080"], ["10.0.0.2:8080"], ["10.0.0.1:44217"]]
    assert {group["labels"]["cluster"] for group in groups} == {"prod"}
    exporters = exporter_target_groups(snapshot(), 9965, "prod", "10.0.0.1:9966")
    # w1 announces its own port in a node label; the dead node is gone.
    assert exporters == [
        {"targets": ["10.0.0.1:9965", "10.0.0.2:9971"], "labels": {"cluster": "prod", "raylens_role": "node"}},
        {"targets": ["10.0.0.1:9966"], "labels": {"cluster": "prod", "raylens_role": "cluster"}},
    ]
    assert exporter_target_groups(snapshot(), None) == [
        {"targets": ["10.0.0.2:9971"], "labels": {"raylens_role": "node"}}
    ]
    local = on_loopback(exporters, {"10.0.0.1", "10.0.0.2"})
    assert local[0]["targets"] == ["127.0.0.1:9965", "127.0.0.1:9971"]


def test_serve_routes_are_probed_through_the_head_proxy_and_outlive_their_app_for_a_grace_period() -> None:
    clock = [NOW]
    serve = ServeState(
        http_host="0.0.0.0",
        http_port=8000,
        proxy_ips=("10.0.0.1", "10.0.0.2"),
        applications=(
            ServeApplication("classifier", "/classify", "RUNNING"),
            ServeApplication("grpc-only", "", "RUNNING"),
        ),
    )
    targets = ServeTargets(grace_seconds=60, clock=lambda: clock[0])
    assert targets.groups(snapshot(serve), "prod") == [
        {
            "targets": ["http://10.0.0.1:8000/classify"],
            "labels": {"cluster": "prod", "application": "classifier", "route_prefix": "/classify"},
        }
    ]
    through_ingress = ServeTargets().groups(snapshot(serve), "prod", "https://serve.example.com/")
    assert through_ingress[0]["targets"] == ["https://serve.example.com/classify"]
    gone = ServeState(http_host="0.0.0.0", http_port=8000, proxy_ips=(), applications=())
    clock[0] += 30
    assert len(targets.groups(snapshot(gone), "prod")) == 1  # still probed: its alert can fire
    clock[0] += 31
    assert targets.groups(snapshot(gone), "prod") == []


# --- http_sd and cluster health ---------------------------------------------------------------------


class Source:
    def __init__(self, value: ClusterSnapshot | None):
        self.value = value

    def current(self) -> ClusterSnapshot | None:
        return self.value


def test_http_sd_and_health_answer_from_the_snapshot_through_the_real_server() -> None:
    import threading

    serve = ServeState("127.0.0.1", 8000, ("10.0.0.1",), (ServeApplication("app", "/app", "DEPLOY_FAILED"),))
    source = Source(None)
    endpoints = ClusterEndpoints(source, lambda: "prod", 300.0, clock=lambda: NOW + 1)
    registry = CollectorRegistry()
    server = make_http_server("127.0.0.1", 0, make_app(registry, WebConfig(), ["ray"], endpoints.routes()), WebConfig())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        # Before Ray answered: 503, so Prometheus keeps the targets it had.
        assert requests.get(f"{base}/sd/ray", timeout=5).status_code == 503
        assert requests.get(f"{base}/health/cluster", timeout=5).status_code == 503
        source.value = snapshot(serve)
        ray = requests.get(f"{base}/sd/ray", timeout=5)
        assert ray.status_code == 200 and ray.headers["Content-Type"] == "application/json"
        assert [group["targets"] for group in ray.json()] == [["10.0.0.1:8080"], ["10.0.0.2:8080"]]
        raylens = requests.get(f"{base}/sd/raylens?port=9000&cluster_exporter=10.0.0.1:9966", timeout=5).json()
        assert raylens[0]["targets"] == ["10.0.0.1:9000", "10.0.0.2:9971"]
        assert requests.get(f"{base}/sd/raylens?port=x", timeout=5).status_code == 400
        assert requests.get(f"{base}/sd/serve", timeout=5).json()[0]["targets"] == ["http://127.0.0.1:8000/app"]
        health = requests.get(f"{base}/health/cluster", timeout=5)
        assert health.status_code == 503  # the Serve app failed to deploy
        body = health.json()
        assert body["cluster"] == "prod" and body["ray"]["nodes"] == {"alive": 2, "dead": 1}
        assert body["problems"] == ["Serve application app is DEPLOY_FAILED"]
        # A node listing older than max_state_age_seconds is not served.
        source.value = snapshot(serve, listed_at=NOW - 600)
        assert requests.get(f"{base}/sd/ray", timeout=5).status_code == 503
    finally:
        server.shutdown()
        server.server_close()


def test_a_node_exporter_refuses_cluster_routes() -> None:
    app = make_app(CollectorRegistry(), WebConfig(), ["node"])
    statuses = []
    body = b"".join(app({"PATH_INFO": "/sd/ray"}, lambda status, headers, exc=None: statuses.append(status)))
    assert statuses == ["404 Not Found"] and b"cluster-role exporter" in body


# --- budgets and quotas by cluster ----------------------------------------------------------------


def test_budgets_and_quotas_can_be_limited_to_clusters() -> None:
    budgets = validate_budgets(
        {
            "budgets": [
                {"name": "everywhere", "scope": "org", "amount_usd": 10},
                {"name": "prod-only", "scope": "org", "amount_usd": 10, "clusters": ["prod"]},
            ]
        },
        "budgets.yaml",
        [],
    )
    assert [budget.name for budget in budgets if budget.applies_to("dev")] == ["everywhere"]
    assert [budget.name for budget in budgets if budget.applies_to("prod")] == ["everywhere", "prod-only"]
    quotas = validate_quotas(
        {"quotas": [{"name": "q", "scope": "global", "resource": "gpus", "limit": 8, "clusters": ["prod"]}]},
        "quotas.yaml",
        [],
    )
    assert quotas.quotas[0].applies_to("prod") and not quotas.quotas[0].applies_to("dev")


def test_setup_keeps_only_this_clusters_budgets(tmp_path: Path) -> None:
    from raylens.config import CostConfig
    from raylens.cost.loading import load_cost_setup

    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(
        json.dumps(
            {
                "budgets": [
                    {"name": "all", "scope": "org", "amount_usd": 10},
                    {"name": "prod", "scope": "org", "amount_usd": 10, "clusters": ["prod"]},
                ]
            }
        )
    )
    config = CostConfig(budgets_file=budgets, state_dir=tmp_path / "state")
    assert [budget.name for budget in load_cost_setup(config, cluster="dev").budgets] == ["all"]
    assert [budget.name for budget in load_cost_setup(config, cluster="prod").budgets] == ["all", "prod"]


# --- Grafana folders per audience -------------------------------------------------------------------


def test_tenant_folders_and_team_copies(tmp_path: Path) -> None:
    import yaml

    from raylens.dashboards.tenants import TEAM_LABELLED, load_tenants, tenant_files
    from raylens.dashboards.validate import invariant_problems

    repo = Path(__file__).resolve().parents[1]
    files = tenant_files(repo, load_tenants(repo / "examples" / "tenants.yaml"), tmp_path)
    providers = yaml.safe_load(files[Path("providers.yaml")])["providers"]
    assert [provider["folder"] for provider in providers] == ["Platform", "Finance", "Team ml", "Team vision"]
    assert len({provider["folderUid"] for provider in providers}) == 4
    assert sorted(path.name for path in files if path.parent.name == "finance") == ["budgets.json", "cost.json"]
    built = list((repo / "provisioning" / "grafana" / "dashboards").glob("*/*.json"))
    assert len([path for path in files if path.parent.name == "platform"]) == len(built)
    team = json.loads(files[Path("team-ml") / "cost-ml.json"])
    original = json.loads((repo / "provisioning/grafana/dashboards/Cost/cost.json").read_text())
    assert team["uid"] != original["uid"] and "team ml" in team["title"]
    exprs = [target["expr"] for panel in team["panels"] for target in panel.get("targets", [])]
    assert exprs and all('team="ml"' in expr for expr in exprs)
    # Every selector of a team-labelled metric is narrowed; panels of other series are gone.
    from raylens.promql import tokenize

    for expr in exprs:
        tokens = [token.text for token in tokenize(expr) if token.kind != "space"]
        for index, word in enumerate(tokens[:-2]):
            if TEAM_LABELLED.match(word):
                assert tokens[index + 1] == "{" and tokens[index + 2] == "team", expr
    assert invariant_problems(team) == []


def test_the_http_sd_config_in_the_deploy_docs_is_valid_prometheus_config(tmp_path: Path) -> None:
    import re
    import subprocess

    from raylens.stack.tools import find_tool

    text = (Path(__file__).resolve().parents[1] / "docs" / "deploy.md").read_text()
    [block] = re.findall(r"```yaml\n(# prometheus.yml: http_sd.*?)```", text, re.S)
    (tmp_path / "prometheus.yml").write_text(block)
    promtool = find_tool("promtool")
    assert promtool
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
