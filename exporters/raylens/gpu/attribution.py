"""Which Ray job, actor and task a GPU process belongs to, from ``/proc`` and optionally Ray's state API.

NVML reports host PIDs. A Ray worker sets its process title (``/proc/<pid>/cmdline``) to what it is
running and inherits ``RAY_JOB_ID`` in its environment from the raylet that started it (Ray 2.60.0,
read from a live cluster)::

    ray::IDLE                 a pooled worker with nothing assigned
    ray::Trainer              an actor of class Trainer between method calls
    ray::Trainer.fit          that actor running its method ``fit``
    ray::preprocess           a task running the function ``preprocess`` (or ``.options(name=...)``)
    RAY_JOB_ID=02000000       the job; ``ffffffff`` (nil) on workers Ray pre-started before any job

``/proc`` is local and cheap, so it is always read. It cannot give the actor id, tells an idle actor
from a task only by Python's naming convention (classes are CamelCase), and has no job id for
pre-started workers. When the Ray dashboard's URL and this node's Ray node id are configured, the
state API fills those gaps: one request for the node's live actors and one for its running tasks per
cache period, never one per process.

An attributor is any callable ``pid -> ProcessAttribution``; the collector takes one, so tests pass a
fake ``/proc`` (a temporary directory laid out like it) or recorded state-API answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Protocol

import requests

from raylens.labels import GPU_PROCESS, label_value

log = logging.getLogger("raylens.gpu.attribution")

NIL_JOB_ID = "ffffffff"
TITLE_PREFIX = "ray::"
# Titles of Ray's own processes (ray_constants.WORKER_PROCESS_TYPE_*, AGENT_PROCESS_TYPE_*).
_SYSTEM_TITLES = frozenset({"DashboardAgent", "RuntimeEnvAgent"})
_SYSTEM_TITLE_PREFIXES = ("SPILL_", "RESTORE_", "DELETE_", "IDLE_")


@dataclass(frozen=True)
class ProcessAttribution:
    """Labels for one process. ``ray_worker``: ``actor``, ``task``, ``idle`` (a pooled worker),
    ``system`` (Ray's own), ``subprocess`` (a child of a Ray worker, e.g. a tensor-parallel rank),
    or empty for a process Ray did not start."""

    job_id: str = ""
    actor_id: str = ""
    actor_class: str = ""
    task_name: str = ""
    ray_worker: str = ""

    def overlaid_with(self, other: ProcessAttribution) -> ProcessAttribution:
        """This attribution with every non-empty field of ``other`` taking precedence."""
        changes = {field.name: getattr(other, field.name) for field in fields(other)}
        return replace(self, **{name: value for name, value in changes.items() if value})


NOT_RAY = ProcessAttribution()
Attributor = Callable[[int], ProcessAttribution]


@dataclass(frozen=True)
class ProcessView:
    """What ``/proc/<pid>`` says: argv (after any setproctitle) and the environment, ``None`` when
    unreadable (another user's process without CAP_SYS_PTRACE)."""

    cmdline: Sequence[str]
    environ: Mapping[str, str] | None


class ProcessReader(Protocol):
    def __call__(self, pid: int) -> ProcessView | None:
        """The process, or None when it has exited or is not visible (another PID namespace)."""


def procfs_reader(root: Path = Path("/proc")) -> ProcessReader:
    """Read ``<root>/<pid>/cmdline`` and ``environ``; root is ``/host/proc`` in a container."""

    def read(pid: int) -> ProcessView | None:
        directory = root / str(pid)
        try:
            raw_cmdline = (directory / "cmdline").read_bytes()
        except OSError:
            return None
        environ: dict[str, str] | None
        try:
            raw_environ = (directory / "environ").read_bytes()
        except OSError:
            environ = None
        else:
            environ = {}
            for entry in raw_environ.split(b"\0"):
                key, sep, value = entry.partition(b"=")
                if sep:
                    environ[key.decode(errors="replace")] = value.decode(errors="replace")
        # setproctitle pads argv with NULs; keep the real arguments only.
        cmdline = [part.decode(errors="replace") for part in raw_cmdline.split(b"\0")]
        return ProcessView([part for part in cmdline if part], environ)

    return read


def _clip(text: str) -> str:
    """A process title or Ray name is user text (task names): the label-value policy applies."""
    return label_value(text, GPU_PROCESS)


def attribution_from_process(view: ProcessView) -> ProcessAttribution:
    """Interpret a process title and environment; see the module docstring for the shapes."""
    job_id = _clip((view.environ or {}).get("RAY_JOB_ID", ""))
    if job_id == NIL_JOB_ID:
        job_id = ""
    title = view.cmdline[0].strip() if view.cmdline else ""
    if not title.startswith(TITLE_PREFIX):
        return ProcessAttribution(job_id=job_id, ray_worker="subprocess") if job_id else NOT_RAY
    # Some setproctitle modes join argv into one string; the title is up to the first space.
    name = title[len(TITLE_PREFIX) :].split(" ", 1)[0]
    if name == "IDLE":
        return ProcessAttribution(job_id=job_id, ray_worker="idle")
    if name in _SYSTEM_TITLES or name.startswith(_SYSTEM_TITLE_PREFIXES):
        return ProcessAttribution(ray_worker="system")
    class_name, dot, _method = name.partition(".")
    if dot and class_name:
        return ProcessAttribution(
            job_id=job_id, actor_class=_clip(class_name), task_name=_clip(name), ray_worker="actor"
        )
    if name[:1].isupper():
        # Between calls an actor's title is its class name; Python classes are CamelCase and
        # functions are not. The state API, when configured, replaces this guess.
        return ProcessAttribution(job_id=job_id, actor_class=_clip(name), ray_worker="actor")
    return ProcessAttribution(job_id=job_id, task_name=_clip(name), ray_worker="task")


class ProcAttributor:
    """``pid -> ProcessAttribution`` from ``/proc``, each answer kept for ``ttl_seconds``."""

    def __init__(
        self,
        read: ProcessReader,
        ttl_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._read = read
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache: dict[int, tuple[float, ProcessAttribution]] = {}

    def __call__(self, pid: int) -> ProcessAttribution:
        now = self._clock()
        cached = self._cache.get(pid)
        if cached is not None and cached[0] > now:
            return cached[1]
        view = self._read(pid)
        attribution = attribution_from_process(view) if view is not None else NOT_RAY
        if len(self._cache) > 4096:  # PIDs come and go; drop what expired before growing further
            self._cache = {key: entry for key, entry in self._cache.items() if entry[0] > now}
        self._cache[pid] = (now + self._ttl, attribution)
        return attribution


# (path, params) -> the decoded JSON body
StateFetcher = Callable[[str, Mapping[str, Any]], Any]


def http_state_fetcher(base_url: str, timeout_seconds: float) -> StateFetcher:
    session = requests.Session()

    def fetch(path: str, params: Mapping[str, Any]) -> Any:
        response = session.get(base_url.rstrip("/") + path, params=dict(params), timeout=timeout_seconds)
        response.raise_for_status()
        return response.json()

    return fetch


class StateApiError(Exception):
    pass


def _list_state(fetch: StateFetcher, resource: str, filters: Sequence[tuple[str, str]], timeout: float):
    # The query shape Ray's own StateApiClient sends (ray/util/state/api.py, Ray 2.60.0).
    params = {
        "filter_keys": [key for key, _ in filters],
        "filter_predicates": ["=" for _ in filters],
        "filter_values": [value for _, value in filters],
        "limit": 10000,
        "timeout": max(1, int(timeout)),
        "detail": "false",
    }
    body = fetch(f"/api/v0/{resource}", params)
    if not isinstance(body, dict) or body.get("result") is not True:
        message = body.get("msg") if isinstance(body, dict) else body
        raise StateApiError(f"state API answered an error for {resource}: {message!r}")
    try:
        return list(body["data"]["result"]["result"])
    except (KeyError, TypeError):
        raise StateApiError(f"unexpected state API answer shape for {resource}") from None


class RayStateAttributor:
    """``pid -> ProcessAttribution | None`` from Ray's state API for this node's live actors and
    running tasks, refreshed at most once per ``ttl_seconds``. ``None``: the state API does not know
    the PID (or could not be reached), so ``/proc`` alone answers.

    With ``background=True`` (the exporter) a due refresh runs on its own thread and lookups answer
    from the previous index meanwhile, so a scrape never waits on the dashboard."""

    def __init__(
        self,
        fetch: StateFetcher,
        node_id: str,
        ttl_seconds: float = 10.0,
        timeout_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        background: bool = False,
    ):
        self._fetch = fetch
        self._node_id = node_id
        self._ttl = ttl_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._expires = float("-inf")
        self._by_pid: dict[int, ProcessAttribution] = {}
        self._failing = False
        self._background = background
        self._refreshing = threading.Lock()

    def __call__(self, pid: int) -> ProcessAttribution | None:
        if self._clock() >= self._expires:
            # Whatever happens, wait a full period before asking again: a slow dashboard must not be
            # asked on every scrape.
            self._expires = self._clock() + self._ttl
            if not self._background:
                self._refresh()
            elif self._refreshing.acquire(blocking=False):
                threading.Thread(target=self._refresh_and_release, name="gpu-ray-state", daemon=True).start()
        return self._by_pid.get(pid)

    def _refresh_and_release(self) -> None:
        try:
            self._refresh()
        finally:
            self._refreshing.release()

    def _refresh(self) -> None:
        node = ("node_id", self._node_id)
        try:
            actors = _list_state(self._fetch, "actors", [("state", "ALIVE"), node], self._timeout)
            tasks = _list_state(self._fetch, "tasks", [("state", "RUNNING"), node], self._timeout)
        except (OSError, ValueError, StateApiError) as error:  # requests' errors are OSErrors
            if not self._failing:
                log.warning(
                    "Ray state API unavailable; attributing GPU processes from /proc only",
                    extra={"error": f"{type(error).__name__}: {error}"},
                )
            self._failing = True
            self._by_pid = {}
            return
        if self._failing:
            log.info("Ray state API reachable again")
        self._failing = False
        self._by_pid = self._index(actors, tasks)  # swapped whole: lookups never see half an index

    @staticmethod
    def _index(actors: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> dict[int, ProcessAttribution]:
        by_pid: dict[int, ProcessAttribution] = {}
        for actor in actors:
            pid = actor.get("pid")
            if isinstance(pid, int) and pid > 0:
                by_pid[pid] = ProcessAttribution(
                    job_id=_clip(str(actor.get("job_id") or "")),
                    actor_id=_clip(str(actor.get("actor_id") or "")),
                    actor_class=_clip(str(actor.get("class_name") or "")),
                    ray_worker="actor",
                )
        # Sorted so that a threaded actor running several methods reports the same one each time.
        for task in sorted(tasks, key=lambda task: str(task.get("name") or "")):
            pid = task.get("worker_pid")
            if not (isinstance(pid, int) and pid > 0):
                continue
            name = _clip(str(task.get("name") or ""))
            current = by_pid.get(pid)
            if current is not None and current.ray_worker == "actor":
                if not current.task_name:
                    by_pid[pid] = replace(current, task_name=name)
            elif current is None:
                by_pid[pid] = ProcessAttribution(
                    job_id=_clip(str(task.get("job_id") or "")), task_name=name, ray_worker="task"
                )
        return by_pid


class LayeredAttributor:
    """``/proc`` first, then the state API's answer on top where it has one."""

    def __init__(self, proc: Attributor, state: Callable[[int], ProcessAttribution | None] | None):
        self._proc = proc
        self._state = state

    def __call__(self, pid: int) -> ProcessAttribution:
        local = self._proc(pid)
        remote = self._state(pid) if self._state is not None else None
        if remote is None:
            return local
        merged = local.overlaid_with(remote)
        if remote.ray_worker == "actor" and not remote.task_name and local.ray_worker != "actor":
            # /proc guessed "task" from a lower-case class name; the state API knows it is an actor.
            merged = replace(merged, task_name="")
        return merged
