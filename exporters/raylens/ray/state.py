"""Ray state as snapshots: composing the sources' answers, and one-shot reads for commands.

The exporter reads Ray in the background (``raylens.ray.refresher``): every source on its own
schedule, each scrape serialising the newest snapshot. Commands that need one look at the cluster
(``raylens sd``) use ``RayStateSource.snapshot()``, which asks every source once, in parallel,
bounded by ``ray.timeout_seconds``. Both build the snapshot with ``compose`` from the sources'
answers (``raylens.ray.sources``).

Why HTTP and not ``ray.util.state``: the State API *is* this HTTP server (``ray.util.state`` wraps
the same endpoints), so talking to it directly needs no ``ray.init()``, no Ray install for a
dashboard URL, gives explicit timeouts per call, and reads truncation (``total`` vs rows returned)
instead of raising (the equivalent of ``raise_on_missing_output=False``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import replace
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import requests

from raylens.config import RayConfig
from raylens.ray.address import DashboardLocator, RayUnavailable
from raylens.ray.from_api import first_label, node_from_api, normalise_market
from raylens.ray.snapshot import ClusterSnapshot, NodeSnapshot, SourceStatus
from raylens.ray.sources import SOURCES, DashboardClient, SourceResult

__all__ = ["ALL_SOURCES", "ClusterSnapshot", "RayStateSource", "RayUnavailable", "compose"]

log = logging.getLogger("raylens.ray")

# ``object_store`` is not a call of its own: it is read from ``node_details`` (see raylens.ray.sources).
ALL_SOURCES = (*SOURCES, "object_store")


def _camel(name: str) -> str:
    """The dashboard's ``to_camel_case`` (it rewrites resource names in ``/api/cluster_status``)."""
    parts = name.split("_")
    return parts[0] + "".join(part.title() for part in parts[1:])


def compose(
    config: RayConfig,
    answers: Mapping[str, SourceResult],
    attempts: Mapping[str, SourceResult],
    dashboard_url: str,
    generation: int = 0,
    now: float | None = None,
) -> ClusterSnapshot:
    """One snapshot from each source's newest good answer (``answers``) and last attempt
    (``attempts``, for the statuses). Answers older than ``ray.max_state_age_seconds`` are left out."""
    now = time.time() if now is None else now
    fresh = {
        source: answer
        for source, answer in answers.items()
        if answer.ok and now - answer.started_at <= config.max_state_age_seconds
    }
    version = fresh.get("version")
    session = str(version.value.get("session_name") or "") if version else ""
    ray_version = str(version.value.get("ray_version") or "") if version else ""
    nodes = _nodes(config, fresh)

    statuses: dict[str, SourceStatus] = {}
    fetched_at: dict[str, float] = {}
    for source, attempt in attempts.items():
        data = fresh.get(source)
        statuses[source] = SourceStatus(
            ok=attempt.ok,
            error=attempt.error,
            seconds=attempt.seconds,
            returned=data.returned if data else 0,
            total=data.total if data else 0,
            warning=data.warning if data else "",
        )
        if data is not None:
            fetched_at[source] = data.started_at
    if config.object_store and "node_details" in attempts:
        details = attempts["node_details"]
        alive = [node for node in nodes if node.alive]
        with_stats = sum(1 for node in alive if node.object_store is not None)
        statuses["object_store"] = SourceStatus(
            ok=details.ok, error=details.error, seconds=details.seconds, returned=with_stats, total=len(alive)
        )
        if "node_details" in fetched_at:
            fetched_at["object_store"] = fetched_at["node_details"]

    def rows(source: str) -> tuple[Any, ...]:
        answer = fresh.get(source)
        return tuple(answer.value) if answer is not None and answer.value else ()

    return ClusterSnapshot(
        taken_at=max(fetched_at.values(), default=now),
        duration_seconds=max((answer.seconds for answer in fresh.values()), default=0.0),
        dashboard_url=dashboard_url,
        session_name=session,
        ray_version=ray_version,
        nodes=nodes,
        jobs=rows("jobs"),
        actors=rows("actors"),
        tasks=rows("tasks"),
        sources=MappingProxyType(statuses),
        fetched_at=MappingProxyType(fetched_at),
        generation=generation,
        serve=fresh["serve"].value if "serve" in fresh else None,
    )


def _nodes(config: RayConfig, fresh: Mapping[str, SourceResult]) -> tuple[NodeSnapshot, ...]:
    listing = fresh.get("nodes")
    if listing is None or not listing.value:
        return ()
    details_answer = fresh.get("node_details")
    details = {row["nodeId"]: row for row in (details_answer.value or ())} if details_answer else {}
    usage_answer = fresh.get("resource_usage")
    usage_by_node = usage_answer.value if usage_answer is not None and usage_answer.value else None
    nodes = []
    for row in listing.value:
        node = node_from_api(row)
        raylet = details.get(node.node_id, {})
        node_type = first_label(node.labels, config.node_type_labels) or str(raylet.get("nodeTypeName") or "")
        if not node_type:
            node_type = "head" if node.is_head else "worker"
        market = normalise_market(first_label(node.labels, config.market_labels))
        market = market or config.market_by_node_type.get(node_type) or config.default_market or ""
        used = None
        if usage_by_node is not None and node.alive:
            used = _used_resources(node, usage_by_node.get(node.node_id))
        nodes.append(
            replace(
                node,
                node_type=node_type,
                market=market,
                instance_type=str(raylet.get("instanceTypeName") or ""),
                resources_used=used,
                metrics_export_port=_port(raylet.get("metricsExportPort")),
                node_manager_port=_port(raylet.get("nodeManagerPort")),
                object_store=raylet.get("objectStore") if config.object_store and node.alive else None,
            )
        )
    return tuple(nodes)


def _used_resources(node: NodeSnapshot, usage: Mapping[str, Any] | None) -> Mapping[str, float] | None:
    if usage is None:
        return None
    used = {}
    for name in node.resources_total:
        pair = usage.get(_camel(name), usage.get(name))
        if isinstance(pair, list | tuple) and pair:
            used[name] = float(pair[0])
    return MappingProxyType(used)


def _port(value: Any) -> int | None:
    try:
        port = int(value)
    except (TypeError, ValueError):
        return None
    return port if 0 < port < 65536 else None


class RayStateSource:
    """One-shot snapshots for commands: every source once, in parallel, cached for
    ``ray.cache_seconds``. The exporter uses ``raylens.ray.refresher.StateRefresher`` instead."""

    def __init__(
        self,
        config: RayConfig,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        locator: DashboardLocator | None = None,
    ):
        self._config = config
        self._client = DashboardClient(config, session, clock, monotonic, locator)
        self._clock = clock
        self._monotonic = monotonic
        self._pool = ThreadPoolExecutor(max_workers=len(SOURCES), thread_name_prefix="ray-state")
        self._lock = threading.Lock()
        self._cached: ClusterSnapshot | None = None
        self._cached_error: RayUnavailable | None = None
        self._cached_at = float("-inf")
        self.last_good: ClusterSnapshot | None = None
        self.rounds = 0

    def snapshot(self) -> ClusterSnapshot:
        """Every source asked once (or the cached answer). Raises ``RayUnavailable`` when nothing
        answered."""
        with self._lock:
            if self._monotonic() - self._cached_at < self._config.cache_seconds:
                if self._cached_error is not None:
                    raise self._cached_error
                assert self._cached is not None
                return self._cached
            try:
                snapshot = self._round()
            except RayUnavailable as error:
                self._cached, self._cached_error = None, error
                raise
            finally:
                self._cached_at = self._monotonic()
            self._cached, self._cached_error, self.last_good = snapshot, None, snapshot
            return snapshot

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _round(self) -> ClusterSnapshot:
        self.rounds += 1
        timeout = self._config.timeout_seconds
        sources = self._client.sources()
        futures = {source: self._pool.submit(self._client.fetch, source, timeout) for source in sources}
        wait_futures(list(futures.values()), timeout=timeout + 1.0)
        results: dict[str, SourceResult] = {}
        for source, future in futures.items():
            if future.done():
                results[source] = future.result()
            else:
                results[source] = SourceResult(source, self._clock(), timeout, error=f"no answer within {timeout:g}s")
        if not any(result.ok for result in results.values()):
            if all(result.connection_failed for result in results.values()):
                self._client.forget_url()  # it may come back elsewhere
            reason = results["version"].error or results["nodes"].error
            raise RayUnavailable(f"Ray dashboard unreachable: {reason}")
        for result in results.values():
            if not result.ok:
                log.warning("ray source failed", extra={"source": result.source, "error": result.error})
        return compose(self._config, results, results, self._client.url(timeout), now=self._clock())


@lru_cache(maxsize=8)
def _shared_refresher(key: str) -> Any:
    from raylens.ray.refresher import StateRefresher

    refresher = StateRefresher(RayConfig.model_validate_json(key))
    refresher.start()
    return refresher


def shared_refresher(config: RayConfig) -> Any:
    """One background ``StateRefresher`` per Ray configuration in this process, started on first
    use, so the ray and cost collectors reading the same cluster share one set of calls."""
    return _shared_refresher(config.model_dump_json())
