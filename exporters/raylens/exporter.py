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
from raylens.collectors import ScrapeHealthCollector, build_collectors
from raylens.config import RaylensConfig, parse_listen_address
from raylens.labels import LabelPolicyCollector
from raylens.web.server import make_app, make_http_server
from raylens.web.webconfig import WebConfig, load_web_config

log = logging.getLogger("raylens.exporter")


class BuildInfoCollector(PrometheusCollector):
    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("raylens_exporter_build", "raylens exporter version and Python runtime.")
        info.add_metric([], {"version": __version__, "python_version": platform.python_version()})
        yield info


def build_registry(config: RaylensConfig) -> CollectorRegistry:
    # Our collectors cannot describe themselves without scraping; registering them as "without
    # names" keeps them out of collection at registration and still lets `?name[]=` filter them.
    registry = CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
    registry.register(ScrapeHealthCollector(build_collectors(config)))
    registry.register(BuildInfoCollector())
    registry.register(LabelPolicyCollector())
    ProcessCollector(registry=registry)
    return registry


def load_exporter_web_config(config: RaylensConfig) -> WebConfig:
    path = config.exporter.web_config_file
    return load_web_config(path) if path is not None else WebConfig()


def run_exporter(config: RaylensConfig, web_config: WebConfig, stop: threading.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set). Config must already be validated."""
    host, port = parse_listen_address(config.exporter.listen_address)
    registry = build_registry(config)
    app = make_app(registry, web_config, list(config.exporter.collectors))
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
