"""Each source of Ray state as one bounded HTTP call to the dashboard, fetched on its own.

=================  ==================================================  ======================  =========
source             call                                                feeds                   default
=================  ==================================================  ======================  =========
``version``        ``GET /api/version``                                session, Ray version    60 s
``nodes``          ``GET /api/v0/nodes?detail=1`` (State API)          nodes                   5 s
``node_details``   ``GET /nodes?view=summary``                         ports, node type,       15 s
                                                                       object store
``resource_usage`` ``GET /api/cluster_status``                         resources held now      5 s
``jobs``           ``GET /api/jobs/`` (Job API)                        jobs + metadata         5 s
``actors``         ``GET /api/v0/actors?detail=1&limit=…``             actors                  10 s
``tasks``          ``GET /api/v0/tasks?detail=1&limit=…``              task attempts           15 s
=================  ==================================================  ======================  =========

What each costs is measured in docs/ray.md ("What each source costs"): all but ``tasks`` answer in
milliseconds; the task listing costs the dashboard about 2 s for 10,000 task events whatever the
``limit`` (it converts the GCS's whole task-event store first), so it runs least often. Object-store
figures come from the dashboard's node summary (``storeStats``, which the dashboard itself refreshes
from every raylet each 15 s), so the exporter needs neither the ``ray`` package nor a route to every
raylet for them.

Answers are streamed (``raylens.ray.rows``): rows are parsed one at a time and kept only as
snapshot records, and every answer is bounded by ``ray.max_response_bytes``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from raylens.config import RayConfig
from raylens.ray.address import DashboardLocator, RayUnavailable
from raylens.ray.from_api import (
    actor_from_api,
    job_from_api,
    object_store_from_dashboard,
    serve_from_api,
    task_from_api,
)
from raylens.ray.rows import CHUNK_BYTES, Rows, RowsError, read_rows

SOURCES = ("version", "nodes", "node_details", "resource_usage", "jobs", "actors", "tasks", "serve")


@dataclass(frozen=True)
class SourceResult:
    """One fetch of one source: its value (already parsed) or why there is none."""

    source: str
    started_at: float
    """Exporter clock (epoch seconds) when the request was sent: the data is at least this new."""
    seconds: float
    value: Any = None
    error: str = ""
    returned: int = 0
    total: int = 0
    warning: str = ""
    connection_failed: bool = False
    response_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class _Call:
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    array_key: str | None = None
    """For listings: the key of the row array, streamed row by row."""
    parse: Callable[[Any], Any] | None = None
    max_rows: int = 10**9


def _raylet_row(entry: Any) -> dict[str, Any] | None:
    """What raylens keeps of one ``/nodes?view=summary`` entry (its per-worker stats are dropped)."""
    raylet = (entry or {}).get("raylet") or {}
    node_id = raylet.get("nodeId")
    if not node_id:
        return None
    store = raylet.get("storeStats")
    return {
        "nodeId": str(node_id),
        "nodeTypeName": str(raylet.get("nodeTypeName") or ""),
        "instanceTypeName": str(raylet.get("instanceTypeName") or ""),
        "metricsExportPort": raylet.get("metricsExportPort"),
        "nodeManagerPort": raylet.get("nodeManagerPort"),
        "objectStore": object_store_from_dashboard(store) if isinstance(store, Mapping) else None,
    }


class DashboardClient:
    """Fetches one source at a time from the Ray dashboard. Thread-safe (one HTTP session per thread
    is not needed: ``requests.Session`` pools connections safely for concurrent GETs)."""

    def __init__(
        self,
        config: RayConfig,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        locator: DashboardLocator | None = None,
    ):
        self._config = config
        self._http = session or requests.Session()
        self._clock = clock
        self._monotonic = monotonic
        self._locator = locator or DashboardLocator(config.address, config.temp_dir)

    def sources(self) -> tuple[str, ...]:
        """The sources this configuration reads (``max_actors: 0`` / ``max_tasks: 0`` turn some off)."""
        skipped = {"actors"} if not self._config.max_actors else set()
        skipped |= {"tasks"} if not self._config.max_tasks else set()
        skipped |= {"serve"} if not self._config.serve_routes else set()
        return tuple(source for source in SOURCES if source not in skipped)

    def url(self, timeout: float) -> str:
        return self._locator.url(timeout)

    def forget_url(self) -> None:
        self._locator.forget()

    def fetch(self, source: str, timeout: float) -> SourceResult:
        """One bounded request for ``source``; never raises for Ray's faults (they are in ``error``)."""
        started_wall, started = self._clock(), self._monotonic()

        def failed(error: str, connection_failed: bool = False) -> SourceResult:
            return SourceResult(
                source, started_wall, self._monotonic() - started, error=error, connection_failed=connection_failed
            )

        try:
            base = self._locator.url(timeout)
        except RayUnavailable as error:
            return failed(str(error), connection_failed=True)
        call = self._call(source)
        remaining = timeout - (self._monotonic() - started)
        if remaining <= 0:
            return failed("no time left after finding the dashboard")
        params = dict(call.params)
        if call.path.startswith("/api/v0/"):
            # The State API's own server-side timeout (whole seconds), so it answers before ours.
            params["timeout"] = str(max(1, int(remaining)))
        try:
            response = self._http.get(
                f"{base}{call.path}", params=params, timeout=(min(remaining, 3.0), remaining), stream=True
            )
        except requests.ConnectionError as error:
            return failed(f"connection failed: {error}", connection_failed=True)
        except requests.Timeout:
            return failed(f"timed out after {remaining:.1f}s")
        except requests.RequestException as error:
            return failed(f"{type(error).__name__}: {error}")
        try:
            return self._read(source, call, response, started_wall, started, timeout)
        except requests.RequestException as error:  # the body stopped coming (timeout, reset)
            return failed(f"reading the answer failed: {type(error).__name__}: {str(error)[:200]}")
        except RowsError as error:
            return failed(str(error))
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            return failed(f"unexpected answer shape from {call.path}: {type(error).__name__}: {str(error)[:200]}")
        finally:
            response.close()

    def _call(self, source: str) -> _Call:
        config = self._config
        if source == "version":
            return _Call("/api/version")
        if source == "nodes":
            return _Call("/api/v0/nodes", {"detail": "1", "limit": "10000"}, "result", dict, 10000)
        if source == "node_details":
            return _Call("/nodes", {"view": "summary"}, "summary", _raylet_row)
        if source == "resource_usage":
            return _Call("/api/cluster_status")
        if source == "jobs":
            return _Call("/api/jobs/", array_key="", parse=job_from_api, max_rows=config.max_jobs)
        if source == "actors":
            params = {"detail": "1", "limit": str(config.max_actors)}
            return _Call("/api/v0/actors", params, "result", actor_from_api, config.max_actors)
        if source == "serve":
            return _Call("/api/serve/applications/")
        if source == "tasks":
            params = {"detail": "1", "limit": str(config.max_tasks)}
            return _Call("/api/v0/tasks", params, "result", task_from_api, config.max_tasks)
        raise ValueError(f"unknown Ray state source {source!r}")

    def _read(
        self, source: str, call: _Call, response: requests.Response, started_wall: float, started: float, timeout: float
    ) -> SourceResult:
        limit = self._config.max_response_bytes
        deadline = started + timeout

        def chunks():
            for chunk in response.iter_content(CHUNK_BYTES):
                if self._monotonic() > deadline:
                    raise RowsError(f"answer still arriving after {timeout:g}s")
                yield chunk

        if response.status_code != 200:
            body = response.raw.read(4096, decode_content=True) or b""
            text = body.decode("utf-8", "replace")
            return SourceResult(
                source,
                started_wall,
                self._monotonic() - started,
                error=f"HTTP {response.status_code}: {text[:300]}",
            )
        if call.array_key is None:
            body = b"".join(chunks())
            if len(body) > limit:
                raise RowsError(f"answer larger than {limit} bytes (ray.max_response_bytes)")
            value = _unwrap_small(call.path, _json(body))
            return SourceResult(source, started_wall, self._monotonic() - started, value, response_bytes=len(body))
        if call.array_key == "":  # the Job API answers a bare array
            rows = _read_bare_array(chunks(), call, limit)
        else:
            rows = read_rows(chunks(), call.array_key, call.parse or dict, call.max_rows, limit)
            if rows.scalar("result") is False:
                raise RowsError(str(rows.scalar("msg") or "the dashboard reported a failure")[:300])
        total = rows.scalar("total")
        returned = len(rows.rows)
        if not isinstance(total, int) and rows.stopped_at_rows:
            total = returned + 1  # the answer had more rows than we read; how many more is unknown
        return SourceResult(
            source,
            started_wall,
            self._monotonic() - started,
            tuple(rows.rows),
            returned=returned,
            total=int(total) if isinstance(total, int) else returned,
            warning=str(rows.scalar("partial_failure_warning") or ""),
            response_bytes=rows.bytes_read,
        )


def _json(body: bytes) -> Any:
    import json

    try:
        return json.loads(body)
    except ValueError:
        raise RowsError(f"not JSON: {body[:200]!r}") from None


def _unwrap_small(path: str, body: Any) -> Any:
    if path == "/api/version":
        return dict(body)
    if path == "/api/serve/applications/":
        return serve_from_api(body)
    if body.get("result") is False:
        raise RowsError(str(body.get("msg") or "the dashboard reported a failure")[:300])
    status = body["data"].get("clusterStatus") or {}
    return (status.get("loadMetricsReport") or {}).get("usageByNode")


def _read_bare_array(chunks: Any, call: _Call, limit: int) -> Rows[Any]:
    """``[...]`` at the top level: wrap it so the streaming reader finds it under a key."""

    def wrapped():
        yield b'{"rows": '
        yield from chunks
        yield b"}"

    return read_rows(wrapped(), "rows", call.parse or dict, call.max_rows, limit + 10)
