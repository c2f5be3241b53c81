"""The one place raylens talks to Ray: a round of API calls with a deadline, cached, as a snapshot.

``RayStateSource.snapshot()`` returns a ``ClusterSnapshot`` (see ``raylens.ray.snapshot``). A round
runs these calls in parallel, each bounded by what is left of ``ray.timeout_seconds``:

=================  =========================================================  ==================
source             call (dashboard HTTP unless noted)                          feeds
=================  =========================================================  ==================
``version``        ``GET /api/version``                                        session, version
``nodes``          ``GET /api/v0/nodes?detail=1`` (State API)                  nodes
``node_details``   ``GET /nodes?view=summary``                                 ports, node type
``resource_usage`` ``GET /api/cluster_status`` (autoscaler's load report)      resources used
``jobs``           ``GET /api/jobs/`` (Job API)                                jobs + metadata
``actors``         ``GET /api/v0/actors?detail=1&limit=…``                     actors
``tasks``          ``GET /api/v0/tasks?detail=1&limit=…``                      tasks
``object_store``   gRPC ``NodeManagerService.GetNodeStats`` per alive raylet   object store
=================  =========================================================  ==================

Why HTTP and not ``ray.util.state``: the State API *is* this HTTP server (``ray.util.state`` wraps
the same endpoints), so talking to it directly needs no ``ray.init()``, no Ray install for a
dashboard URL, gives explicit timeouts per call, and reads truncation (``total`` vs rows returned)
instead of raising (the equivalent of ``raise_on_missing_output=False``).

Answers are cached for ``ray.cache_seconds``; a failed round is cached too, so a down cluster is
not hammered. A round that reaches nothing raises ``RayUnavailable``; a partial round returns a
snapshot whose ``sources`` say what failed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, replace
from functools import lru_cache
from types import MappingProxyType
from typing import Any, TypeVar

import requests

from raylens.config import RayConfig
from raylens.ray.address import DashboardLocator, RayUnavailable, import_ray_module
from raylens.ray.snapshot import (
    ClusterSnapshot,
    NodeSnapshot,
    ObjectStoreStats,
    SourceStatus,
    actor_from_api,
    first_label,
    job_from_api,
    node_from_api,
    normalise_market,
    object_store_from_grpc,
    task_from_api,
)

__all__ = ["ClusterSnapshot", "RayStateSource", "RayUnavailable", "grpc_object_store_stats"]

log = logging.getLogger("raylens.ray")

HTTP_SOURCES = ("version", "nodes", "node_details", "resource_usage", "jobs", "actors", "tasks")
ALL_SOURCES = (*HTTP_SOURCES, "object_store")

T = TypeVar("T")
ObjectStoreFetcher = Callable[[str, float], ObjectStoreStats]


def _camel(name: str) -> str:
    """The dashboard's ``to_camel_case`` (it rewrites resource names in ``/api/cluster_status``)."""
    parts = name.split("_")
    return parts[0] + "".join(part.title() for part in parts[1:])


class _Channels:
    """gRPC channels to raylets, kept between rounds and closed when their node goes away."""

    def __init__(self) -> None:
        self._channels: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, address: str) -> Any:
        import grpc

        with self._lock:
            channel = self._channels.get(address)
            if channel is None:
                channel = grpc.insecure_channel(
                    address, options=[("grpc.max_receive_message_length", 512 * 1024 * 1024)]
                )
                self._channels[address] = channel
            return channel

    def keep_only(self, addresses: set[str]) -> None:
        with self._lock:
            for address in set(self._channels) - addresses:
                self._channels.pop(address).close()


_CHANNELS = _Channels()


def grpc_object_store_stats(address: str, timeout: float) -> ObjectStoreStats:
    """``GetNodeStats(include_memory_info=False)`` on the raylet at ``ip:node_manager_port``."""
    try:
        node_manager_pb2 = import_ray_module("ray.core.generated.node_manager_pb2")
        node_manager_pb2_grpc = import_ray_module("ray.core.generated.node_manager_pb2_grpc")
    except ImportError as error:
        raise RayUnavailable(
            f"object-store stats need the ray package (pip install 'raylens[ray]') or ray.object_store: false: {error}"
        ) from None
    stub = node_manager_pb2_grpc.NodeManagerServiceStub(_CHANNELS.get(address))
    reply = stub.GetNodeStats(node_manager_pb2.GetNodeStatsRequest(include_memory_info=False), timeout=timeout)
    return object_store_from_grpc(reply.store_stats)


@dataclass
class _Outcome:
    value: Any = None
    error: str = ""
    seconds: float = 0.0
    returned: int = 0
    total: int = 0
    warning: str = ""
    connection_failed: bool = False


class RayStateSource:
    """Cached, deadline-bound snapshots of one Ray cluster. Thread-safe; share one per cluster."""

    def __init__(
        self,
        config: RayConfig,
        session: requests.Session | None = None,
        object_store_stats: ObjectStoreFetcher = grpc_object_store_stats,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        locator: DashboardLocator | None = None,
    ):
        self._config = config
        self._http = session or requests.Session()
        self._object_store_stats = object_store_stats
        self._clock = clock
        self._monotonic = monotonic
        self._locator = locator or DashboardLocator(config.address, config.temp_dir)
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="ray-state")
        self._lock = threading.Lock()
        self._cached: ClusterSnapshot | None = None
        self._cached_at = float("-inf")
        self._cached_error: RayUnavailable | None = None
        self._last_good: ClusterSnapshot | None = None
        self._session_name = ""
        self._ray_version = ""
        self.rounds = 0
        """Rounds of calls made since start (each scrape does at most one; cache hits do none)."""
        self.source_errors: dict[str, int] = dict.fromkeys(ALL_SOURCES, 0)
        self.last_round_failed = False

    @property
    def last_good(self) -> ClusterSnapshot | None:
        """The newest snapshot any round produced (its ``taken_at`` gives its age)."""
        return self._last_good

    def snapshot(self) -> ClusterSnapshot:
        """The cached snapshot if fresh, else a new round. Raises ``RayUnavailable`` when Ray is
        unreachable (also cached for ``cache_seconds``)."""
        deadline = self._monotonic() + self._config.timeout_seconds
        # A concurrent scrape already fetching: wait for it rather than start a second round.
        if not self._lock.acquire(timeout=self._config.timeout_seconds + 1.0):
            if self._cached is not None:
                return self._cached
            raise RayUnavailable("another scrape is still fetching Ray state")
        try:
            if self._monotonic() - self._cached_at < self._config.cache_seconds:
                if self._cached_error is not None:
                    raise self._cached_error
                assert self._cached is not None
                return self._cached
            try:
                snapshot = self._round(deadline)
            except RayUnavailable as error:
                self._cached, self._cached_error = None, error
                self.last_round_failed = True
                raise
            finally:
                self._cached_at = self._monotonic()
            self._cached, self._cached_error, self._last_good = snapshot, None, snapshot
            self.last_round_failed = False
            return snapshot
        finally:
            self._lock.release()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- one round -----------------------------------------------------------------------------

    def _round(self, deadline: float) -> ClusterSnapshot:
        self.rounds += 1
        started_wall, started = self._clock(), self._monotonic()
        try:
            base = self._locator.url(deadline - self._monotonic())
        except RayUnavailable:
            for source in ALL_SOURCES:
                self.source_errors[source] += 1
            raise
        config = self._config
        calls: dict[str, tuple[str, dict[str, Any]]] = {
            "version": ("/api/version", {}),
            "nodes": ("/api/v0/nodes", {"detail": "1", "limit": "10000"}),
            "node_details": ("/nodes", {"view": "summary"}),
            "resource_usage": ("/api/cluster_status", {}),
            "jobs": ("/api/jobs/", {}),
        }
        if config.max_actors:
            calls["actors"] = ("/api/v0/actors", {"detail": "1", "limit": str(config.max_actors)})
        if config.max_tasks:
            calls["tasks"] = ("/api/v0/tasks", {"detail": "1", "limit": str(config.max_tasks)})
        futures = {
            source: self._pool.submit(self._get, base, path, params, deadline)
            for source, (path, params) in calls.items()
        }
        outcomes = {source: self._result(future, deadline) for source, future in futures.items()}
        if all(outcome.error for outcome in outcomes.values()):
            # Nothing answered: the dashboard is down, or up without a GCS behind it.
            if all(outcome.connection_failed for outcome in outcomes.values()):
                self._locator.forget()  # it may come back elsewhere
            for source in ALL_SOURCES:
                self.source_errors[source] += 1
            reason = outcomes["version"].error or outcomes["nodes"].error
            raise RayUnavailable(f"dashboard {base} unreachable: {reason}")

        version = outcomes["version"]
        if not version.error:
            self._session_name = str(version.value.get("session_name") or self._session_name)
            self._ray_version = str(version.value.get("ray_version") or self._ray_version)

        nodes = self._nodes(outcomes)
        if config.object_store:
            if outcomes["nodes"].error:
                outcomes["object_store"] = _Outcome(error="skipped: the node listing failed")
            else:
                nodes, outcomes["object_store"] = self._with_object_store(nodes, deadline)

        statuses: dict[str, SourceStatus] = {}
        for source, outcome in outcomes.items():
            if outcome.error:
                self.source_errors[source] += 1
                log.warning("ray source failed", extra={"source": source, "error": outcome.error})
            if outcome.warning:
                log.warning("ray source partial", extra={"source": source, "warning": outcome.warning})
            statuses[source] = SourceStatus(
                ok=not outcome.error,
                error=outcome.error,
                seconds=outcome.seconds,
                returned=outcome.returned,
                total=outcome.total,
                warning=outcome.warning,
            )
        return ClusterSnapshot(
            taken_at=started_wall,
            duration_seconds=self._monotonic() - started,
            dashboard_url=base,
            session_name=self._session_name,
            ray_version=self._ray_version,
            nodes=nodes,
            jobs=_rows(outcomes.get("jobs"), job_from_api),
            actors=_rows(outcomes.get("actors"), actor_from_api),
            tasks=_rows(outcomes.get("tasks"), task_from_api),
            sources=MappingProxyType(statuses),
        )

    def _get(self, base: str, path: str, params: dict[str, Any], deadline: float) -> _Outcome:
        started = self._monotonic()
        remaining = deadline - started
        if remaining <= 0:
            return _Outcome(error="no time left in the round")
        if path.startswith("/api/v0/"):
            # The State API's own server-side timeout (whole seconds), so it answers before ours.
            params = {**params, "timeout": str(max(1, int(remaining)))}
        try:
            response = self._http.get(f"{base}{path}", params=params, timeout=(min(remaining, 3.0), remaining))
        except requests.ConnectionError as error:
            return _Outcome(
                error=f"connection failed: {error}",
                connection_failed=True,
                seconds=self._monotonic() - started,
            )
        except requests.Timeout:
            return _Outcome(error=f"timed out after {remaining:.1f}s", seconds=self._monotonic() - started)
        except requests.RequestException as error:
            return _Outcome(error=f"{type(error).__name__}: {error}", seconds=self._monotonic() - started)
        outcome = _Outcome(seconds=self._monotonic() - started)
        try:
            body = response.json()
        except ValueError:
            outcome.error = f"HTTP {response.status_code}, not JSON: {response.text[:200]!r}"
            return outcome
        if response.status_code != 200:
            message = body.get("msg") if isinstance(body, dict) else body
            outcome.error = f"HTTP {response.status_code}: {str(message)[:300]}"
            return outcome
        try:
            self._unwrap(path, body, outcome)
        except (KeyError, TypeError, AttributeError) as error:
            outcome.error = f"unexpected answer shape from {path}: {type(error).__name__}: {error}"
        return outcome

    @staticmethod
    def _unwrap(path: str, body: Any, outcome: _Outcome) -> None:
        if path == "/api/jobs/":
            outcome.value = list(body)
            outcome.returned = outcome.total = len(body)
            return
        if path == "/api/version":
            outcome.value = dict(body)
            return
        if body.get("result") is False:
            outcome.error = str(body.get("msg") or "the dashboard reported a failure")[:300]
            return
        data = body["data"]
        if path == "/nodes":
            outcome.value = [entry.get("raylet") or {} for entry in data["summary"]]
        elif path == "/api/cluster_status":
            status = data.get("clusterStatus") or {}
            outcome.value = (status.get("loadMetricsReport") or {}).get("usageByNode")
        else:  # State API listing
            result = data["result"]
            outcome.value = list(result["result"])
            outcome.returned = len(outcome.value)
            outcome.total = int(result.get("total") or outcome.returned)
            outcome.warning = str(result.get("partial_failure_warning") or "")

    def _result(self, future: Future[_Outcome], deadline: float) -> _Outcome:
        done, _ = wait_futures([future], timeout=max(0.0, deadline - self._monotonic()))
        if not done:
            # The call keeps its own timeout in the background; the scrape moves on now.
            return _Outcome(error=f"no answer within the {self._config.timeout_seconds:g}s deadline")
        try:
            return future.result()
        except Exception as error:  # a bug in parsing must not fail the other sources
            return _Outcome(error=f"{type(error).__name__}: {error}")

    def _nodes(self, outcomes: Mapping[str, _Outcome]) -> tuple[NodeSnapshot, ...]:
        listing = outcomes["nodes"]
        if listing.error or not listing.value:
            return ()
        details_outcome = outcomes["node_details"]
        details = {
            str(raylet.get("nodeId")): raylet
            for raylet in (details_outcome.value or [] if not details_outcome.error else [])
        }
        usage_outcome = outcomes["resource_usage"]
        usage_by_node = usage_outcome.value if not usage_outcome.error and usage_outcome.value else None
        config = self._config
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
                used = self._used_resources(node, usage_by_node.get(node.node_id))
            nodes.append(
                replace(
                    node,
                    node_type=node_type,
                    market=market,
                    instance_type=str(raylet.get("instanceTypeName") or ""),
                    resources_used=used,
                    metrics_export_port=_port(raylet.get("metricsExportPort")),
                    node_manager_port=_port(raylet.get("nodeManagerPort")),
                )
            )
        return tuple(nodes)

    @staticmethod
    def _used_resources(node: NodeSnapshot, usage: Mapping[str, Any] | None) -> Mapping[str, float] | None:
        if usage is None:
            return None
        used = {}
        for name in node.resources_total:
            pair = usage.get(_camel(name), usage.get(name))
            if isinstance(pair, list | tuple) and pair:
                used[name] = float(pair[0])
        return MappingProxyType(used)

    def _with_object_store(
        self, nodes: tuple[NodeSnapshot, ...], deadline: float
    ) -> tuple[tuple[NodeSnapshot, ...], _Outcome]:
        started = self._monotonic()
        targets = {
            node.node_id: f"{node.ip}:{node.node_manager_port}"
            for node in nodes
            if node.alive and node.node_manager_port
        }
        remaining = deadline - started
        futures = {
            node_id: self._pool.submit(self._object_store_stats, address, max(0.1, remaining))
            for node_id, address in targets.items()
        }
        done, _ = wait_futures(list(futures.values()), timeout=max(0.0, remaining))
        stats: dict[str, ObjectStoreStats] = {}
        errors = []
        for node_id, future in futures.items():
            if future not in done:
                errors.append(f"{targets[node_id]}: no answer in time")
                continue
            try:
                stats[node_id] = future.result()
            except Exception as error:
                errors.append(f"{targets[node_id]}: {type(error).__name__}: {str(error)[:200]}")
        if self._object_store_stats is grpc_object_store_stats:
            _CHANNELS.keep_only(set(targets.values()))
        outcome = _Outcome(
            seconds=self._monotonic() - started,
            returned=len(stats),
            total=len(targets),
            error="; ".join(errors) if errors and not stats else "",
            warning="; ".join(errors) if errors and stats else "",
        )
        updated = tuple(
            replace(node, object_store=stats[node.node_id]) if node.node_id in stats else node for node in nodes
        )
        return updated, outcome


def _rows(outcome: _Outcome | None, parse: Callable[[Any], T]) -> tuple[T, ...]:
    if outcome is None or outcome.error or not outcome.value:
        return ()
    return tuple(parse(row) for row in outcome.value)


def _port(value: Any) -> int | None:
    try:
        port = int(value)
    except (TypeError, ValueError):
        return None
    return port if 0 < port < 65536 else None


@lru_cache(maxsize=8)
def _shared_source(key: str) -> RayStateSource:
    return RayStateSource(RayConfig.model_validate_json(key))


def shared_state_source(config: RayConfig) -> RayStateSource:
    """One ``RayStateSource`` per Ray configuration in this process, so the ray and cost collectors
    reading the same cluster share one cache instead of each making a round of calls per scrape."""
    return _shared_source(config.model_dump_json())
