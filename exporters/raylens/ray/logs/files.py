"""Which Ray component wrote a log file, and which ids its name carries.

Ray names its log files after their writer (``ray/_private/ray_constants.py``, the log manager's
``_categorize_log_files`` and Serve's ``logging_utils``)::

    worker-<worker_id>-<job_id>-<pid>.out|.err       stdout/stderr of a worker (tasks, actors)
    python-core-worker-<worker_id>_<pid>.log          the worker's core library
    python-core-driver-<driver_worker_id>_<pid>.log   a driver's core library (id starts with the job id)
    job-driver-<submission_id>.log                    a submitted job's entrypoint output
    runtime_env_setup-<job_id>.log                    runtime environment setup for a job
    raylet.out|.err, gcs_server.out|.err, monitor.*, dashboard*.log|.out|.err, dashboard_agent.*
    serve/controller_<pid>.log, serve/proxy_<ip>.log, serve/replica_<app>_<deployment>_<id>.log

Rotated copies (``raylet.out.1``) belong to the same component. Job id ``ffffffff`` (a worker
started before any job claimed it) means "no job".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

COMPONENTS = (
    "worker",
    "driver",
    "job_driver",
    "runtime_env",
    "raylet",
    "gcs",
    "autoscaler",
    "dashboard",
    "agent",
    "serve_controller",
    "serve_proxy",
    "serve_replica",
    "internal",
)
NIL_JOB_ID = "ffffffff"
_ROTATED = re.compile(r"\.\d+$")
_WORKER_STD = re.compile(r"^worker-(?P<worker>[0-9a-f]+)-(?P<job>[0-9a-f]+)-(?P<pid>\d+)\.(?P<stream>out|err)$")
_CORE_WORKER = re.compile(r"^python-core-worker-(?P<worker>[0-9a-f]+)_(?P<pid>\d+)\.log$")
_CORE_DRIVER = re.compile(r"^python-core-driver-(?P<worker>[0-9a-f]+)_(?P<pid>\d+)\.log$")
_JOB_DRIVER = re.compile(r"^job-driver-(?P<submission>.+)\.log$")
_RUNTIME_ENV_SETUP = re.compile(r"^runtime_env_setup-(?P<job>[0-9a-f]+)\.log$")
_SERVE_CONTROLLER = re.compile(r"^serve/controller_(?P<pid>\d+)\.log$")
_SERVE_PROXY = re.compile(r"^serve/proxy_.+\.log$")
_SERVE_REPLICA = re.compile(r"^serve/replica_(?P<name>.+)\.log$")
# (prefix of the base name, component) for Ray's daemons, most specific first.
_DAEMONS = (
    ("raylet.", "raylet"),
    ("gcs_server.", "gcs"),
    ("log_monitor.", "internal"),
    ("monitor.", "autoscaler"),
    ("dashboard_agent.", "agent"),
    ("runtime_env_agent.", "agent"),
    ("dashboard.", "dashboard"),
    ("dashboard_", "dashboard"),
)


@dataclass(frozen=True)
class LogFile:
    """One log file on one node, with what its name tells."""

    node_id: str
    node_ip: str
    name: str
    """Path relative to the node's Ray log directory, as the log API names it."""
    component: str
    job_id: str = ""
    submission_id: str = ""
    worker_id: str = ""
    pid: int | None = None
    serve_replica: str = ""
    """``<app>_<deployment>_<replica id>`` for Serve replica logs."""


def _job(job_id: str) -> str:
    return "" if job_id == NIL_JOB_ID else job_id


def classify(node_id: str, node_ip: str, name: str) -> LogFile:
    """The component and ids of ``name`` (any file Ray's log API lists; unknown ones are ``internal``)."""
    base = _ROTATED.sub("", name)
    if match := _WORKER_STD.match(base):
        return LogFile(node_id, node_ip, name, "worker", _job(match["job"]), "", match["worker"], int(match["pid"]))
    if match := _CORE_WORKER.match(base):
        return LogFile(node_id, node_ip, name, "worker", "", "", match["worker"], int(match["pid"]))
    if match := _CORE_DRIVER.match(base):
        # A driver's worker id is its job id followed by f's.
        job_id = match["worker"][:8] if len(match["worker"]) >= 8 else ""
        return LogFile(node_id, node_ip, name, "driver", job_id, "", match["worker"], int(match["pid"]))
    if match := _JOB_DRIVER.match(base):
        return LogFile(node_id, node_ip, name, "job_driver", "", match["submission"])
    if match := _RUNTIME_ENV_SETUP.match(base):
        return LogFile(node_id, node_ip, name, "runtime_env", _job(match["job"]))
    if match := _SERVE_CONTROLLER.match(base):
        return LogFile(node_id, node_ip, name, "serve_controller", pid=int(match["pid"]))
    if _SERVE_PROXY.match(base):
        return LogFile(node_id, node_ip, name, "serve_proxy")
    if match := _SERVE_REPLICA.match(base):
        return LogFile(node_id, node_ip, name, "serve_replica", serve_replica=match["name"])
    for prefix, component in _DAEMONS:
        if base.startswith(prefix):
            return LogFile(node_id, node_ip, name, component)
    return LogFile(node_id, node_ip, name, "internal")


def is_log_file(name: str) -> bool:
    """Files worth reading: not directories, not Ray's binary or state dumps."""
    return not name.endswith("/") and not name.endswith((".json", ".txt", ".pb", ".sock"))


def with_worker_jobs(files: list[LogFile]) -> list[LogFile]:
    """Give core-worker logs the job id their worker's stdout file names (same worker id)."""
    jobs = {f.worker_id: f.job_id for f in files if f.component == "worker" and f.job_id}
    return [replace(f, job_id=jobs[f.worker_id]) if not f.job_id and f.worker_id in jobs else f for f in files]
