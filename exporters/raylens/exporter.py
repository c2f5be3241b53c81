"""``raylens exporter``: wire the configured collectors into a registry and serve it until stopped."""

from __future__ import annotations

import logging
import platform
import signal
import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import InfoMetricFamily, Metric
from prometheus_client.registry import Collector as PrometheusCollector

from raylens import __version__
from raylens.cluster import ClusterLabelCollector, ClusterName
from raylens.collectors import ScrapeHealthCollector, build_collectors
from raylens.config import RaylensConfig, parse_listen_address
from raylens.gc_schedule import FullCollections
from raylens.labels import LabelPolicyCollector
from raylens.ray.endpoints import ClusterEndpoints
from raylens.ray.state import shared_refresher
from raylens.web.server import make_app, make_http_server
from raylens.web.webconfig import WebConfig, load_web_config

log = logging.getLogger("raylens.exporter")


class BuildInfoCollector(PrometheusCollector):
    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("raylens_exporter_build", "raylens exporter version and Python runtime.")
        info.add_metric([], {"version": __version__, "python_version": platform.python_version()})
        yield info


def cluster_name(config: RaylensConfig) -> ClusterName:
    """The ``cluster`` label's source (raylens.cluster); only exporters that read Ray anyway fall back
    to the session the dashboard reports."""
    session = None
    if {"ray", "cost"} & set(config.exporter.collectors):
        refresher = shared_refresher(config.ray)

        def session() -> str:
            snapshot = refresher.current()
            return snapshot.session_name if snapshot is not None else ""

    return ClusterName(config.cluster.name, config.ray.temp_dir, session=session)


def cluster_endpoints(config: RaylensConfig) -> ClusterEndpoints | None:
    """http_sd and cluster health, on exporters that read Ray anyway (the cluster role)."""
    if not {"ray", "cost"} & set(config.exporter.collectors):
        return None
    return ClusterEndpoints(shared_refresher(config.ray), cluster_name(config), config.ray.max_state_age_seconds)


def build_registry(config: RaylensConfig) -> CollectorRegistry:
    # Our collectors cannot describe themselves without scraping; registering them as "without
    # names" keeps them out of collection at registration and still lets `?name[]=` filter them.
    registry = CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
    collectors = [ScrapeHealthCollector(build_collectors(config)), BuildInfoCollector(), LabelPolicyCollector()]
    collectors.append(ProcessCollector(registry=None))
    # Every series, ours and the process ones, carries `cluster`: added here once, never per collector.
    registry.register(ClusterLabelCollector(collectors, cluster_name(config)))
    return registry


def load_exporter_web_config(config: RaylensConfig) -> WebConfig:
    path = config.exporter.web_config_file
    return load_web_config(path) if path is not None else WebConfig()


def run_exporter(config: RaylensConfig, web_config: WebConfig, stop: threading.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set). Config must already be validated."""
    host, port = parse_listen_address(config.exporter.listen_address)
    registry = build_registry(config)
    endpoints = cluster_endpoints(config)
    routes = endpoints.routes() if endpoints is not None else None
    app = make_app(registry, web_config, list(config.exporter.collectors), routes)
    server = make_http_server(host, port, app, web_config)
    stop = stop or threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    full_collections = FullCollections()  # after start-up, so what it built is frozen out of them
    full_collections.start()
    bound_host, bound_port = server.server_address[:2]
    log.info(
        "listening",
        extra={
            "address": f"{bound_host}:{bound_port}",
            "tls": web_config.tls_server_config is not None,
            "basic_auth": bool(web_config.basic_auth_users),
            "collectors": list(config.exporter.collectors),
        },
    )
    stop.wait()
    server.shutdown()
    server.server_close()
    full_collections.stop()
