"""Which cluster this process belongs to, and the ``cluster`` label on every series it exports.

One Prometheus often scrapes many Ray clusters. Every series the exporter emits therefore carries
``cluster="<name>"``, added in one place (``ClusterLabelCollector``, around the whole registry) so no
collector can forget it; ``raylens sd`` puts the same name on Ray's own targets as a target label.

The name comes, first found wins, from:

1. ``cluster.name`` (file, ``RAYLENS_CLUSTER_NAME``, ``--cluster.name``);
2. ``RAY_CLUSTER_NAME``, which KubeRay sets in Ray containers from the pod's ``ray.io/cluster`` label
   (a sidecar gets it through the downward API: deploy/kubernetes/);
3. the Ray session of this machine: the target of ``<ray.temp_dir>/session_latest``, which every Ray
   node (head and workers) creates, so a per-node exporter needs no Ray API call;
4. for the ``ray``/``cost`` collectors only: the session the dashboard reports.

Without any of them the label is left off (an empty label is no label to Prometheus). Sample::

    raylens_node_load1{cluster="prod-us-east"} 0.42
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from prometheus_client.core import Metric
from prometheus_client.registry import Collector as PrometheusCollector

from raylens.ray.address import DEFAULT_TEMP_DIR

CLUSTER_LABEL = "cluster"
KUBERAY_CLUSTER_VARIABLE = "RAY_CLUSTER_NAME"
SESSION_LINK = "session_latest"


def local_session_name(temp_dir: Path | None) -> str:
    """The session of the Ray node on this machine, from the ``session_latest`` link; ``""`` if none."""
    try:
        target = os.readlink((temp_dir or DEFAULT_TEMP_DIR) / SESSION_LINK)
    except OSError:
        return ""
    name = Path(target).name
    return name if name.startswith("session_") else ""


class ClusterName:
    """Resolves the cluster name: fixed sources once, the session ones on every call (a Ray restart
    starts a new session). ``session`` gives the dashboard's session, for cluster-role exporters."""

    def __init__(
        self,
        configured: str | None,
        temp_dir: Path | None = None,
        environ: Mapping[str, str] | None = None,
        session: Callable[[], str] | None = None,
    ):
        environ = os.environ if environ is None else environ
        self._fixed = configured or (environ.get(KUBERAY_CLUSTER_VARIABLE) or "").strip() or None
        self._temp_dir = temp_dir
        self._session = session

    @property
    def fixed(self) -> str | None:
        return self._fixed

    def __call__(self) -> str:
        if self._fixed:
            return self._fixed
        local = local_session_name(self._temp_dir)
        if local:
            return local
        return (self._session() or "") if self._session is not None else ""


class ClusterLabelCollector(PrometheusCollector):
    """Collects ``collectors`` and adds ``cluster=<name()>`` to every sample (overriding a ``cluster``
    label a collector set itself, so a series can never claim another cluster)."""

    def __init__(self, collectors: Iterable[PrometheusCollector], name: Callable[[], str]):
        self._collectors = list(collectors)
        self._name = name

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not run the collectors

    def collect(self) -> Iterator[Metric]:
        cluster = self._name()
        for collector in self._collectors:
            for metric in collector.collect():
                yield _labelled(metric, cluster) if cluster else metric


def _labelled(metric: Metric, cluster: str) -> Metric:
    # A copy: collectors may serve the same family objects to several scrapes (the cost collector does).
    copy = Metric(metric.name, metric.documentation, metric.type, metric.unit)
    copy.samples = [sample._replace(labels={**sample.labels, CLUSTER_LABEL: cluster}) for sample in metric.samples]
    return copy
