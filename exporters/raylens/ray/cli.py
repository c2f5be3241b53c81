"""``raylens sd``: keep Prometheus file_sd target lists in step with a Ray cluster."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raylens.cluster import ClusterName
from raylens.config import RaylensConfig, load_config
from raylens.logs import configure_logging
from raylens.ray.address import RayUnavailable
from raylens.ray.discovery import (
    EXPORTER_TARGETS_FILE,
    RAY_TARGETS_FILE,
    SERVE_TARGETS_FILE,
    ServeTargets,
    exporter_target_groups,
    node_exporter_port,
    on_loopback,
    ray_service_endpoints,
    ray_target_groups,
    write_targets,
)
from raylens.ray.state import RayStateSource

log = logging.getLogger("raylens.sd")


@dataclass
class Discovery:
    """What one ``raylens sd`` loop writes, and the Serve routes it remembers between lookups."""

    output_dir: Path
    exporter_port: int | None = None
    cluster_exporter: str | None = None
    serve_base_url: str | None = None
    serve: ServeTargets = field(default_factory=ServeTargets)
    loopback: bool = False
    per_cluster_files: bool = False


def discover_once(config: RaylensConfig, discovery: Discovery) -> list[Path]:
    """One lookup; writes the files and returns those whose content changed."""
    ray_config = config.ray
    output_dir = discovery.output_dir
    # Service discovery needs nodes, the dashboard and Serve's routes, nothing heavy.
    light = ray_config.model_copy(update={"max_actors": 0, "max_tasks": 0, "object_store": False, "cache_seconds": 0})
    source = RayStateSource(light)
    try:
        snapshot = source.snapshot()
    finally:
        source.close()
    if not snapshot.ok("nodes") or not snapshot.ok("node_details"):
        failed = {name: status.error for name, status in snapshot.sources.items() if not status.ok}
        raise RayUnavailable(f"node listing incomplete: {failed}")
    cluster = ClusterName(config.cluster.name, ray_config.temp_dir, session=lambda: snapshot.session_name)()
    node_groups = ray_target_groups(snapshot)
    node_targets = {target for group in node_groups for target in group["targets"]}
    try:
        extra = ray_service_endpoints(snapshot.dashboard_url, node_targets, ray_config.timeout_seconds)
    except Exception as error:  # the node targets are still worth writing
        log.warning("no autoscaler/dashboard metrics endpoints", extra={"error": f"{type(error).__name__}: {error}"})
        extra = []
    files = {RAY_TARGETS_FILE: ray_target_groups(snapshot, extra, cluster)}
    labelled = any(node_exporter_port(node.labels) for node in snapshot.alive_nodes)
    if discovery.exporter_port or discovery.cluster_exporter or labelled:
        files[EXPORTER_TARGETS_FILE] = exporter_target_groups(
            snapshot, discovery.exporter_port, cluster, discovery.cluster_exporter
        )
    if ray_config.serve_routes:
        files[SERVE_TARGETS_FILE] = discovery.serve.groups(snapshot, cluster, discovery.serve_base_url)
    if discovery.loopback:
        ips = {node.ip for node in snapshot.nodes}
        files = {name: on_loopback(groups, ips) for name, groups in files.items()}
    if discovery.per_cluster_files and cluster:
        # ray-<cluster>.json and so on: one folder (and one Prometheus job each) serves many clusters.
        files = {name.replace(".json", f"-{cluster}.json"): groups for name, groups in files.items()}
    return [output_dir / name for name, groups in files.items() if write_targets(output_dir / name, groups)]


def cmd_sd(args: argparse.Namespace) -> int:
    overrides: dict[tuple[str, ...], tuple[str, Any]] = {
        ("ray", "address"): ("flag --ray.address", args.ray_address),
        ("cluster", "name"): ("flag --cluster.name", args.cluster_name),
        ("log", "level"): ("flag --log.level", args.log_level),
        ("log", "format"): ("flag --log.format", args.log_format),
    }
    config = load_config(args.config_file, overrides=overrides)
    configure_logging(config.log.level, config.log.format)
    discovery = Discovery(
        args.output_dir,
        args.exporter_port,
        args.cluster_exporter,
        args.serve_base_url,
        ServeTargets(grace_seconds=args.serve_grace),
        args.loopback,
        args.per_cluster_files,
    )
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while True:
        try:
            changed = discover_once(config, discovery)
            for path in changed:
                log.info("targets written", extra={"file": str(path)})
            if args.once:
                return 0
        except Exception as error:
            # Keep the previous files: a blip must not empty Prometheus' target list.
            log.warning("service discovery failed", extra={"error": f"{type(error).__name__}: {error}"})
            if args.once:
                return 1
        if stop.wait(args.interval):
            return 0


def add_ray_commands(commands: argparse._SubParsersAction) -> None:
    sd = commands.add_parser(
        "sd", help="write Prometheus file_sd targets for Ray's metrics endpoints and raylens exporters"
    )
    sd.add_argument(
        "--config.file",
        dest="config_file",
        type=Path,
        default=os.environ.get("RAYLENS_CONFIG_FILE") or None,
        help="raylens.yaml; its `ray` section says how to reach the cluster",
    )
    sd.add_argument("--ray.address", dest="ray_address", help="auto, GCS host:port or dashboard URL")
    sd.add_argument("--cluster.name", dest="cluster_name", help="`cluster` label on every target (see cluster.name)")
    sd.add_argument(
        "--output-dir",
        type=Path,
        default=Path("targets"),
        help=f"folder for {RAY_TARGETS_FILE}, {SERVE_TARGETS_FILE}, {EXPORTER_TARGETS_FILE} (default: %(default)s)",
    )
    sd.add_argument(
        "--exporter-port", type=int, help=f"also write {EXPORTER_TARGETS_FILE}: raylens on every node at this port"
    )
    sd.add_argument(
        "--cluster-exporter", metavar="HOST:PORT", help=f"the cluster-role exporter, in {EXPORTER_TARGETS_FILE}"
    )
    sd.add_argument(
        "--serve-base-url", help="probe Serve routes here (your ingress); default: Serve's proxy on the head"
    )
    sd.add_argument(
        "--serve-grace",
        type=float,
        default=600.0,
        help="seconds a vanished Serve route stays probed (default: %(default)s)",
    )
    sd.add_argument("--interval", type=float, default=30.0, help="seconds between lookups (default: %(default)s)")
    sd.add_argument(
        "--per-cluster-files",
        action="store_true",
        help="name files ray-<cluster>.json, raylens-<cluster>.json, serve-<cluster>.json (many clusters, one folder)",
    )
    sd.add_argument(
        "--loopback", action="store_true", help="every node runs on this machine: target 127.0.0.1 (tests, demos)"
    )
    sd.add_argument("--once", action="store_true", help="write once and exit (non-zero when Ray is unreachable)")
    sd.add_argument("--log.level", dest="log_level", help="debug, info, warning or error")
    sd.add_argument("--log.format", dest="log_format", help="json (default) or text")
    sd.set_defaults(handler=cmd_sd)
