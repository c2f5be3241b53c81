"""Which files a query reads, and reading them: once (``read_all``) or live (``follow``).

Files are chosen by their names (``raylens.ray.logs.files``) on every alive node, then narrowed by
node, component, job (job id or submission id), actor (its worker's files) or task (Ray cuts the
task's own lines out of its worker's output). Lines are filtered while they stream: memory holds
one chunk and one line per file, whatever the file's size.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from raylens.ray.logs.api import LogApi, LogApiError
from raylens.ray.logs.files import COMPONENTS, LogFile, with_worker_jobs
from raylens.ray.logs.lines import split_lines
from raylens.ray.logs.records import LineFilter, LogRecord, records

log = logging.getLogger("raylens.logs")
Emit = Callable[[LogRecord], None]
# Ray's state API serves at most 100 calls at once (RAY_STATE_SERVER_MAX_HTTP_REQUEST), shared with
# every other State API client (the raylens exporter among them); every followed file holds one.
MAX_FOLLOWED_FILES = 32


class QueryError(ValueError):
    """The query names something the cluster does not have (unknown job, actor, node)."""


@dataclass(frozen=True)
class LogQuery:
    nodes: tuple[str, ...] = ()
    """Node ids (or their first characters) or node IPs; empty: every alive node."""
    components: tuple[str, ...] = ()
    job: str = ""
    """A job id (``02000000``) or a submission id (``raysubmit_…``)."""
    actor: str = ""
    task: str = ""
    line_filter: LineFilter = field(default_factory=LineFilter)
    tail: int = -1
    """Per file: the last N lines; -1 reads whole files (with ``follow``: lines shown before new ones)."""


@dataclass
class Selection:
    files: list[LogFile]
    context: dict[str, str] = field(default_factory=dict)
    """Ids every record of the selection carries (the actor asked for)."""


def _matches_node(row: dict, wanted: tuple[str, ...]) -> bool:
    node_id, ip = str(row.get("node_id") or ""), str(row.get("node_ip") or "")
    return not wanted or any(node_id.startswith(item) or ip == item for item in wanted)


def select_files(api: LogApi, query: LogQuery) -> Selection:
    unknown = sorted(set(query.components) - set(COMPONENTS))
    if unknown:
        raise QueryError(f"unknown component {', '.join(unknown)}; expected one of: {', '.join(COMPONENTS)}")
    nodes = [row for row in api.nodes() if row.get("state") == "ALIVE" and _matches_node(row, query.nodes)]
    if query.nodes and not nodes:
        raise QueryError(f"no alive node matches {', '.join(query.nodes)}")
    context: dict[str, str] = {}
    worker_id, actor_pid = "", None
    if query.actor:
        actor = api.find("actors", "actor_id", query.actor)
        if actor is None:
            raise QueryError(f"no actor {query.actor} in the cluster's actor table")
        # An alive actor names its worker; a dead one keeps only its pid (files carry both).
        worker_id = str((actor.get("address") or {}).get("worker_id") or "")
        actor_pid = int(actor["pid"]) if str(actor.get("pid") or "").isdigit() else None
        nodes = [row for row in nodes if row.get("node_id") == actor.get("node_id")]
        context = {"actor_id": query.actor, "actor_name": str(actor.get("class_name") or "")}
    files: list[LogFile] = []
    for row in nodes:
        files.extend(with_worker_jobs(api.list_files(str(row["node_id"]), str(row.get("node_ip") or ""))))
    if query.components:
        files = [f for f in files if f.component in query.components]
    if query.job:
        job_id, submission_id = _resolve_job(api, query.job)
        files = [
            f for f in files if (job_id and f.job_id == job_id) or (submission_id and f.submission_id == submission_id)
        ]
    if query.actor:
        files = [
            f
            for f in files
            if (worker_id and f.worker_id == worker_id) or (not worker_id and actor_pid and f.pid == actor_pid)
        ]
    order = {name: index for index, name in enumerate(COMPONENTS)}
    files.sort(key=lambda f: (f.node_ip, f.node_id, order[f.component], f.name))
    return Selection(files, context)


def _resolve_job(api: LogApi, wanted: str) -> tuple[str, str]:
    for job in api.jobs():
        if wanted in (job.get("job_id"), job.get("submission_id")):
            return str(job.get("job_id") or ""), str(job.get("submission_id") or "")
    if len(wanted) == 8 and all(ch in "0123456789abcdef" for ch in wanted):
        return wanted, ""  # a driver started by ray.init: not in the Job API's table once forgotten
    raise QueryError(f"no job {wanted} (job id or submission id) in the cluster's job table")


def read_all(api: LogApi, query: LogQuery, emit: Emit, warn: Callable[[str], None]) -> int:
    """Every selected file once, file after file; returns how many files could not be read."""
    if query.task:
        return _read_task(api, query, emit, warn)
    selection = select_files(api, query)
    failed = 0
    for file in selection.files:
        try:
            for record in records(file, split_lines(api.read(file, query.tail)), query.line_filter, selection.context):
                emit(record)
        except LogApiError as error:
            failed += 1
            warn(f"skipped {file.node_ip} {file.name}: {error}")
    return failed


def _read_task(api: LogApi, query: LogQuery, emit: Emit, warn: Callable[[str], None]) -> int:
    task = api.find("tasks", "task_id", query.task)
    if task is None:
        raise QueryError(f"no task {query.task} in the cluster's task history")
    node_id = str(task.get("node_id") or "")
    node_ip = next((str(row.get("node_ip") or "") for row in api.nodes() if row.get("node_id") == node_id), "")
    attempt = int(task.get("attempt_number") or 0)
    context = {"task_id": query.task, "task_name": str(task.get("name") or ""), "job_id": str(task.get("job_id") or "")}
    if task.get("actor_id"):
        context["actor_id"] = str(task["actor_id"])
    failed = 0
    for suffix in ("out", "err"):
        pid = task.get("worker_pid")
        name = f"worker-{task.get('worker_id') or ''}-{context['job_id']}-{pid}.{suffix}"
        file = LogFile(node_id, node_ip, name, "worker", context["job_id"], "", str(task.get("worker_id") or ""), pid)
        try:
            lines = split_lines(api.read_task(query.task, attempt, suffix))
            for record in records(file, lines, query.line_filter, context):
                emit(record)
        except LogApiError as error:
            failed += 1
            warn(f"task {query.task} std{suffix}: {error}")
    return failed


def follow(
    api: LogApi,
    query: LogQuery,
    emit: Emit,
    warn: Callable[[str], None],
    stop: threading.Event,
    interval: float = 1.0,
    relist_seconds: float = 10.0,
    max_streams: int = MAX_FOLLOWED_FILES,
) -> None:
    """Stream every selected file live until ``stop`` is set; files that appear later (new workers,
    new jobs, new nodes) are picked up at the next listing and read from their first line."""
    if query.task:
        raise QueryError("--follow and --task do not go together: a task's lines are final once it ends")
    # Bounded: a slow writer makes the readers wait instead of growing memory.
    lines: queue.Queue[LogRecord] = queue.Queue(maxsize=10_000)
    started: set[tuple[str, str]] = set()
    first = True
    capped = False
    next_listing = 0.0
    while not stop.is_set():
        if time.monotonic() >= next_listing:
            try:
                selection = select_files(api, query)
            except LogApiError as error:
                warn(f"cannot list log files: {error}")
                selection = None
            for file in selection.files if selection else []:
                key = (file.node_id, file.name)
                if key in started:
                    continue
                if len(started) >= max_streams:
                    if not capped:
                        warn(
                            f"following the first {max_streams} files only (each is a stream the dashboard "
                            "keeps open); narrow with --node, --component, --job or --actor"
                        )
                        capped = True
                    break
                started.add(key)
                tail = query.tail if first else -1
                context = selection.context if selection else {}
                _start_reader(api, file, tail, interval, query, context, lines, warn, stop)
            first = first and selection is None
            next_listing = time.monotonic() + relist_seconds
        try:
            emit(lines.get(timeout=0.2))
        except queue.Empty:
            continue


def _start_reader(
    api: LogApi,
    file: LogFile,
    tail: int,
    interval: float,
    query: LogQuery,
    context: dict[str, str],
    out: queue.Queue[LogRecord],
    warn: Callable[[str], None],
    stop: threading.Event,
) -> None:
    def run() -> None:
        try:
            chunks = api.follow(file, tail, interval)
            for record in records(file, split_lines(_until(chunks, stop)), query.line_filter, context):
                while not stop.is_set():
                    try:
                        out.put(record, timeout=0.5)
                        break
                    except queue.Full:
                        continue
        except LogApiError as error:
            if not stop.is_set():
                warn(f"stopped following {file.node_ip} {file.name}: {error}")

    threading.Thread(target=run, name=f"follow-{file.name[:40]}", daemon=True).start()


def _until(chunks: Iterator[bytes], stop: threading.Event) -> Iterator[bytes]:
    for chunk in chunks:
        if stop.is_set():
            return
        yield chunk
