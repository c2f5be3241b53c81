"""Many nodes, many clusters, Serve uptime: on real processes on this machine.

One Ray head and two extra raylets (``ray start --address``, own temp dirs and ports, stopped by PID),
each with a per-node raylens exporter (``--role=node``) on a port it announces as a Ray node label;
one cluster-role exporter (ray, cost); ``raylens sd`` in a loop writing Prometheus' target files;
the blackbox exporter probing Serve routes; a real Prometheus with the bundle's rules. Then:

* node counts, per-node series and cost per node follow a node leaving and a new one joining, and the
  node that left is costed exactly up to its end time;
* the demo Serve route is probed (up), its uptime rule answers, and deleting the app fires
  RaylensServeEndpointDown; http_sd and /health/cluster answer from the refresher;
* a second cluster in the same Prometheus stays apart in every dashboard query.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from ray_cluster import RayHead, kill_node, running_ray_head, short_temp_dir, start_worker_node

from raylens.config import AlertsConfig
from raylens.dashboards.build import iter_panels
from raylens.dashboards.validate import all_values, is_loki, substitute
from raylens.ray.discovery import EXPORTER_PORT_LABEL
from raylens.stack.ports import free_port
from raylens.stack.processes import ManagedProcess, StartError
from services import REPO, RunningExporter, RunningPrometheus, running_blackbox, running_exporter, running_prometheus

pytestmark = pytest.mark.slow

CLUSTER = "multi"
OTHER = "other"
# Priced by the default catalog: m5.xlarge spot in us-east-1.
NODE_LABELS = {"ray.io/market-type": "spot", "node.kubernetes.io/instance-type": "m5.xlarge"}
# Every source each second: cost is accounted as of the oldest answer among nodes, jobs, actors, tasks.
FAST = {"interval_seconds": 1}
SOURCES = ("nodes", "node_details", "resource_usage", "jobs", "actors", "tasks", "serve")


@dataclass
class Node:
    """One Ray node and its per-node exporter."""

    exporter_port: int
    temp_dir: Path | None = None  # None: the head
    process: ManagedProcess | None = None
    exporter: Any = None


@dataclass
class Stack:
    tmp: Path
    head: RayHead
    prometheus: RunningPrometheus
    cluster_exporter: RunningExporter
    nodes: list[Node]
    serve_port: int
    exits: list[Any] = field(default_factory=list)

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.prometheus.query(expr)

    def wait_value(self, expr: str, expected: float, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if len(result) == 1 and float(result[0]["value"][1]) == expected:
                return
            time.sleep(0.5)
        raise AssertionError(f"{expr} != {expected} after {timeout}s: {result}")


def _node_exporter(stack_tmp: Path, node: Node) -> Any:
    manager = running_exporter(
        stack_tmp, "--role=node", f"--cluster.name={CLUSTER}", address=f"127.0.0.1:{node.exporter_port}"
    )
    node.exporter = manager
    manager.__enter__()
    return manager


def _alive_node_id(head: RayHead, port: int) -> str | None:
    rows = requests.get(f"{head.dashboard_url}/api/v0/nodes", params={"detail": "1"}, timeout=30).json()
    for row in rows["data"]["result"]["result"]:
        if row.get("labels", {}).get(EXPORTER_PORT_LABEL) == str(port) and row["state"] == "ALIVE":
            return row["node_id"]
    return None


def _start_worker(stack: Stack, node: Node, attempts: int = 3) -> None:
    """Start a raylet and wait until the GCS lists it; on a loaded machine Ray's fixed 30 s
    registration wait can run out, so a raylet that gave up is started again."""
    labels = {**NODE_LABELS, EXPORTER_PORT_LABEL: str(node.exporter_port)}
    for _ in range(attempts):
        node.temp_dir = short_temp_dir()
        node.process = start_worker_node(stack.head, node.temp_dir, stack.tmp, labels, num_cpus=1)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and node.process.popen.poll() is None:
            if _alive_node_id(stack.head, node.exporter_port):
                _node_exporter(stack.tmp, node)
                return
            time.sleep(1)
        kill_node(node.temp_dir, node.process.pid)
        node.process.stop()
    raise AssertionError(f"worker did not join after {attempts} tries:\n{node.process.log_tail()}")


def _stop_worker(node: Node) -> None:
    """The node leaves the way an autoscaler's scale-down does: its raylet exits, its machine goes."""
    if node.exporter is not None:
        node.exporter.__exit__(None, None, None)
        node.exporter = None
    if node.process is not None:
        node.process.stop(timeout=30)
        kill_node(node.temp_dir, node.process.pid)
        node.process = None


@contextlib.contextmanager
def _ray_head(tmp: Path, labels: dict[str, str], attempts: int = 2) -> Iterator[RayHead]:
    """A head, started again if Ray's fixed 30 s registration wait ran out on a loaded machine."""
    for attempt in range(attempts):
        try:
            manager = running_ray_head(tmp / f"head-{attempt}", num_cpus=1, labels=labels)
            head = manager.__enter__()
        except StartError:
            if attempt == attempts - 1:
                raise
            continue
        try:
            yield head
        finally:
            manager.__exit__(None, None, None)
        return


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("clusters")
    head_node = Node(free_port())
    labels = {**NODE_LABELS, EXPORTER_PORT_LABEL: str(head_node.exporter_port)}
    with _ray_head(tmp, labels) as head, running_blackbox(tmp) as blackbox:
        config = tmp / "cluster.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "cluster": {"name": CLUSTER},
                    "ray": {
                        "address": head.dashboard_url,
                        "sources": {name: FAST for name in SOURCES},
                    },
                    "cost": {"state_dir": str(tmp / "cost-state"), "default_region": "us-east-1"},
                }
            )
        )
        alerts = AlertsConfig(serve_probe_down_for="5s")
        with (
            running_exporter(tmp, "--role=cluster", f"--config.file={config}") as cluster_exporter,
            running_prometheus(tmp, [], alerts_config=alerts, blackbox_address=blackbox) as prometheus,
        ):
            targets = prometheus.config_path.parent / "targets"
            (targets / "raylens.json").write_text("[]")
            sd = ManagedProcess(
                "sd",
                [sys.executable, "-m", "raylens", "sd", f"--ray.address={head.dashboard_url}",
                 f"--cluster.name={CLUSTER}", f"--output-dir={targets}",
                 f"--cluster-exporter={cluster_exporter.address}", "--interval=1", "--loopback", "--log.format=text"],
                tmp / "sd.log",
            )  # fmt: skip
            sd.start()
            stack = Stack(tmp, head, prometheus, cluster_exporter, [head_node], free_port())
            try:
                _node_exporter(tmp, head_node)
                for _ in range(2):
                    node = Node(free_port())
                    stack.nodes.append(node)
                    _start_worker(stack, node)
                yield stack
            finally:
                sd.stop()
                for node in stack.nodes:
                    if node.temp_dir is not None:
                        _stop_worker(node)
                    elif node.exporter is not None:
                        node.exporter.__exit__(None, None, None)
                for process in stack.exits:
                    process.stop()


def test_nodes_series_and_cost_follow_scaling(stack: Stack) -> None:
    alive_nodes = f'sum(raylens_ray_nodes{{cluster="{CLUSTER}",state="ALIVE"}})'
    node_exporters = f'count(up{{job="raylens",raylens_role="node",cluster="{CLUSTER}"}} == 1)'
    ray_agents = f'count(up{{job="ray",ray_component="node",cluster="{CLUSTER}"}} == 1)'
    per_node = f'count(count by (instance) (raylens_node_load1{{cluster="{CLUSTER}"}}))'
    costed = f'count(count by (node_id) (raylens_cost_node_dollars_total{{cluster="{CLUSTER}"}}))'
    for expr in (alive_nodes, node_exporters, ray_agents, per_node, costed):
        stack.wait_value(expr, 3, timeout=180)

    leaving = stack.nodes[2]
    node_id = _alive_node_id(stack.head, leaving.exporter_port)
    assert node_id
    node = f'cluster="{CLUSTER}",node_id="{node_id}"'
    [rate] = stack.prometheus.wait_for(f"sum(raylens_cost_node_dollars_per_second{{{node}}})")
    price = float(rate["value"][1])
    assert price > 0
    _stop_worker(leaving)

    for expr in (alive_nodes, node_exporters, ray_agents):
        stack.wait_value(expr, 2, timeout=120)
    stack.wait_value(f'sum(raylens_ray_nodes{{cluster="{CLUSTER}",state="DEAD"}})', 1)
    [end] = stack.prometheus.wait_for(f"raylens_ray_node_end_time_seconds{{{node}}}", timeout=60)
    [start] = stack.query(f"raylens_ray_node_start_time_seconds{{{node}}}")
    lifetime = float(end["value"][1]) - float(start["value"][1])
    # The dead node is costed up to its end time: price x lifetime (accounting trails the newest
    # answers by a few seconds), and no further.
    spent = f"sum(raylens_cost_node_dollars_total{{{node}}})"
    expected = price * lifetime
    deadline = time.monotonic() + 90
    previous = None
    while True:
        total = float(stack.query(spent)[0]["value"][1])
        if total == previous and total >= expected * 0.98:
            break  # accounting has passed the node's end time: its total no longer moves
        assert time.monotonic() < deadline, ("cost kept growing", previous, total, expected)
        previous = total
        time.sleep(5)  # several accounting rounds and scrapes
    assert total == pytest.approx(expected, rel=0.02), (total, price, lifetime)
    # Its series stay (finished_grace_seconds), so per-node cost still lists it.
    assert float(stack.query(costed)[0]["value"][1]) == 3

    arriving = Node(free_port())
    stack.nodes.append(arriving)
    _start_worker(stack, arriving)
    for expr in (alive_nodes, node_exporters, ray_agents):
        stack.wait_value(expr, 3, timeout=180)
    stack.wait_value(costed, 4, timeout=60)  # the new node has its own node_id and cost


def test_serve_route_probed_uptime_and_down_alert(stack: Stack) -> None:
    env = {**os.environ, **stack.head.environment()}
    app = ManagedProcess(
        "serve-demo",
        [sys.executable, "-m", "raylens.demo.serve_app", f"--port={stack.serve_port}", "--duration=600", "--rate=2"],
        stack.tmp / "serve-demo.log",
        env=env,
    )
    app.start()
    stack.exits.append(app)
    probe = f'probe_success{{job="serve-probe",cluster="{CLUSTER}",application="classifier"}}'
    stack.prometheus.wait_for(f"{probe} == 1", timeout=240)
    # The uptime rule answers: the share of probes that succeeded (the first ones, before the app
    # was deployed, failed).
    [uptime] = stack.prometheus.wait_for('instance:probe_success:avg_over_time30d{application="classifier"} > 0')
    assert uptime["metric"]["instance"] == f"http://127.0.0.1:{stack.serve_port}/classify"
    assert uptime["metric"]["cluster"] == CLUSTER and 0 < float(uptime["value"][1]) <= 1

    # http_sd and the health summary answer from the exporter's snapshot, like the files.
    base = stack.cluster_exporter.url
    served = requests.get(f"{base}/sd/serve", timeout=5).json()
    written = json.loads((stack.prometheus.config_path.parent / "targets" / "serve.json").read_text())
    assert served == written  # Serve binds 127.0.0.1 here, so both name the same URL
    assert all(group["labels"]["cluster"] == CLUSTER for group in served)
    ray_groups = requests.get(f"{base}/sd/ray", timeout=5).json()
    assert len(ray_groups) == 3 and {group["labels"]["cluster"] for group in ray_groups} == {CLUSTER}
    health = requests.get(f"{base}/health/cluster", timeout=5)
    assert health.status_code == 200, health.text
    assert health.json()["ray"]["serve_applications"] == {"classifier": "RUNNING"}
    # `raylens status --json` on a stack that names this exporter and Prometheus.
    state = stack.tmp / "status-state"
    state.mkdir(exist_ok=True)
    components = [{"name": "exporter", "pid": stack.cluster_exporter.process.pid, "command": "raylens"}]
    urls = {"prometheus": stack.prometheus.url, "exporter": f"{base}/metrics"}
    (state / "stack.json").write_text(json.dumps({"components": components, "urls": urls}))
    status = subprocess.run(
        [sys.executable, "-m", "raylens", "status", "--json", f"--state-dir={state}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    report = json.loads(status.stdout)
    assert report["cluster"]["cluster"] == CLUSTER and report["cluster"]["ray"]["nodes"]["alive"] == 3
    assert {target["job"] for target in report["targets"]} >= {"raylens", "ray", "serve-probe"}
    assert status.returncode == (0 if report["healthy"] else 1)

    # Kill the app (Serve's REST API shuts Serve down): the probe fails and the alert fires.
    app.stop()
    requests.delete(f"{stack.head.dashboard_url}/api/serve/applications/", timeout=60).raise_for_status()
    stack.prometheus.wait_for(f"{probe} == 0", timeout=120)
    firing = stack.prometheus.wait_for(
        'ALERTS{alertname="RaylensServeEndpointDown",alertstate="firing",application="classifier"}', timeout=120
    )
    assert firing[0]["metric"]["cluster"] == CLUSTER


def test_two_clusters_stay_apart_in_every_dashboard(stack: Stack) -> None:
    """A second cluster-role exporter labelled `other` joins the same Prometheus: with the dashboard's
    cluster variable at `other`, no query returns a series of `multi`, and the reverse."""
    config = stack.tmp / "other.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "cluster": {"name": OTHER},
                "ray": {"address": stack.head.dashboard_url},
                "cost": {"state_dir": str(stack.tmp / "other-cost"), "default_region": "us-east-1"},
            }
        )
    )
    manager = running_exporter(stack.tmp, "--role=cluster", f"--config.file={config}")
    other = manager.__enter__()
    stack.exits.append(other.process)
    targets = stack.prometheus.config_path.parent / "targets"
    (targets / f"raylens-{OTHER}.json").write_text(json.dumps([{"targets": [other.address], "labels": {}}]))
    stack.prometheus.wait_for(f'raylens_cost_node_dollars_total{{cluster="{OTHER}"}}', timeout=120)
    stack.prometheus.wait_for(f'raylens_cost_node_dollars_total{{cluster="{CLUSTER}"}}', timeout=30)

    checked = 0
    for path in sorted((REPO / "provisioning" / "grafana" / "dashboards").glob("*/*.json")):
        dashboard = json.loads(path.read_text())
        for chosen, excluded in ((CLUSTER, OTHER), (OTHER, CLUSTER)):
            values = {**all_values(dashboard), "cluster": chosen}
            for panel in iter_panels(dashboard):
                for target in panel.get("targets", []):
                    if is_loki(target):
                        continue  # log streams: no Loki here, and they carry no cluster label
                    expr = substitute(target["expr"], values).replace("$__range", "1h")
                    for series in stack.query(expr):
                        assert series["metric"].get("cluster") != excluded, (path.name, panel["title"], expr)
                    checked += 1
    assert checked > 100
    # And the split is real: each cluster's own spend, summed, is what All shows.
    per_cluster = stack.query("sum by (cluster) (raylens_cost_node_dollars_total)")
    assert {series["metric"]["cluster"] for series in per_cluster} >= {CLUSTER, OTHER}
