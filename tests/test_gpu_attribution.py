"""GPU process -> Ray job/actor/task: a fake /proc on disk, and Ray state API answers recorded from Ray 2.60.0."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from raylens.gpu.attribution import (
    NOT_RAY,
    LayeredAttributor,
    ProcAttributor,
    ProcessAttribution,
    ProcessView,
    RayStateAttributor,
    attribution_from_process,
    http_state_fetcher,
    procfs_reader,
)

NODE_ID = "83dfe04ec2d2e281f15ac401ef6ea6881ea73a26f89b16d2817beeb1"

# GET /api/v0/actors and /api/v0/tasks on a Ray 2.60.0 head (ray start --head; two Trainer actors,
# one running Trainer.busy, and a plain task long_task), trimmed to the fields raylens reads.
RECORDED_ACTORS = {
    "result": True,
    "msg": "",
    "data": {
        "result": {
            "total": 2,
            "num_after_truncation": 2,
            "num_filtered": 2,
            "result": [
                {
                    "actor_id": "c3bbcfda50309c211d61de0e01000000",
                    "class_name": "Trainer",
                    "state": "ALIVE",
                    "job_id": "01000000",
                    "name": "trainer-1",
                    "node_id": NODE_ID,
                    "pid": 17191,
                    "ray_namespace": "6f124ac0-eb1d-42d4-9e4f-2d6e92397abe",
                },
                {
                    "actor_id": "dd4606cd3bb12b002c36e27b01000000",
                    "class_name": "Trainer",
                    "state": "ALIVE",
                    "job_id": "01000000",
                    "name": "",
                    "node_id": NODE_ID,
                    "pid": 17192,
                    "ray_namespace": "6f124ac0-eb1d-42d4-9e4f-2d6e92397abe",
                },
            ],
            "partial_failure_warning": "",
            "warnings": None,
        }
    },
}
RECORDED_TASKS = {
    "result": True,
    "msg": "",
    "data": {
        "result": {
            "total": 2,
            "num_after_truncation": 2,
            "num_filtered": 2,
            "result": [
                {
                    "task_id": "e0dc174c83599034dd4606cd3bb12b002c36e27b01000000",
                    "attempt_number": 0,
                    "name": "Trainer.busy",
                    "state": "RUNNING",
                    "job_id": "01000000",
                    "actor_id": "dd4606cd3bb12b002c36e27b01000000",
                    "type": "ACTOR_TASK",
                    "func_or_class_name": "Trainer.busy",
                    "node_id": NODE_ID,
                    "worker_pid": 17192,
                    "error_type": None,
                },
                {
                    "task_id": "f4402ec78d3a2607ffffffffffffffffffffffff01000000",
                    "attempt_number": 0,
                    "name": "long_task",
                    "state": "RUNNING",
                    "job_id": "01000000",
                    "actor_id": None,
                    "type": "NORMAL_TASK",
                    "func_or_class_name": "long_task",
                    "node_id": NODE_ID,
                    "worker_pid": 17264,
                    "error_type": None,
                },
            ],
            "partial_failure_warning": "",
            "warnings": None,
        }
    },
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def write_process(root: Path, pid: int, title: str, environ: Mapping[str, str] | None) -> None:
    """Lay out ``root/<pid>`` the way Linux shows a Ray worker after setproctitle."""
    directory = root / str(pid)
    directory.mkdir(parents=True)
    # setproctitle overwrites argv in place and pads the rest of the original argv with NULs.
    (directory / "cmdline").write_bytes(title.encode() + b"\0" * 40)
    if environ is None:
        (directory / "environ").mkdir()  # reading it fails, like another user's process
    else:
        (directory / "environ").write_bytes(b"".join(f"{k}={v}\0".encode() for k, v in environ.items()))


# /proc ---------------------------------------------------------------------------------------------


def test_procfs_reader_parses_padded_titles_and_environment(tmp_path: Path) -> None:
    write_process(tmp_path, 4242, "ray::Trainer.fit", {"RAY_JOB_ID": "02000000", "PATH": "/usr/bin"})
    write_process(tmp_path, 4343, "ray::IDLE", None)
    read = procfs_reader(tmp_path)
    view = read(4242)
    assert view == ProcessView(["ray::Trainer.fit"], {"RAY_JOB_ID": "02000000", "PATH": "/usr/bin"})
    assert read(4343) == ProcessView(["ray::IDLE"], None)
    assert read(999999) is None  # exited


@pytest.mark.parametrize(
    ("cmdline", "environ", "expected"),
    [
        (["ray::IDLE"], {"RAY_JOB_ID": "ffffffff"}, ProcessAttribution(ray_worker="idle")),
        (
            ["ray::Trainer"],
            {"RAY_JOB_ID": "02000000"},
            ProcessAttribution(job_id="02000000", actor_class="Trainer", ray_worker="actor"),
        ),
        (
            ["ray::Trainer.fit"],
            {"RAY_JOB_ID": "02000000"},
            ProcessAttribution(job_id="02000000", actor_class="Trainer", task_name="Trainer.fit", ray_worker="actor"),
        ),
        (
            ["ray::preprocess"],
            {"RAY_JOB_ID": "03000000"},
            ProcessAttribution(job_id="03000000", task_name="preprocess", ray_worker="task"),
        ),
        (
            ["ray::ServeReplica:default:Embedder.handle_request"],
            {"RAY_JOB_ID": "04000000"},
            ProcessAttribution(
                job_id="04000000",
                actor_class="ServeReplica:default:Embedder",
                task_name="ServeReplica:default:Embedder.handle_request",
                ray_worker="actor",
            ),
        ),
        (
            ["ray::Trainer.fit  "],
            None,
            ProcessAttribution(actor_class="Trainer", task_name="Trainer.fit", ray_worker="actor"),
        ),
        (["ray::DashboardAgent"], {}, ProcessAttribution(ray_worker="system")),
        (["ray::IDLE_SpillWorker"], {}, ProcessAttribution(ray_worker="system")),
        (["ray::SPILL_SpillWorker"], {}, ProcessAttribution(ray_worker="system")),
        (
            ["/usr/bin/python3", "-c", "from multiprocessing.spawn import spawn_main"],
            {"RAY_JOB_ID": "05000000"},
            ProcessAttribution(job_id="05000000", ray_worker="subprocess"),
        ),
        (["/usr/lib/xorg/Xorg", "vt1"], None, NOT_RAY),
        (["python", "train.py"], {"HOME": "/root"}, NOT_RAY),
        ([], None, NOT_RAY),
    ],
)
def test_attribution_from_process_titles(
    cmdline: list[str], environ: dict[str, str] | None, expected: ProcessAttribution
) -> None:
    assert attribution_from_process(ProcessView(cmdline, environ)) == expected


def test_long_task_names_are_clipped() -> None:
    attribution = attribution_from_process(ProcessView(["ray::" + "x" * 500], {}))
    # The shared label-value policy (raylens.labels): 128 characters, the marker and a digest.
    assert len(attribution.task_name) == 128
    assert attribution.task_name.startswith("x" * 119 + "…")


def test_proc_attributor_reuses_answers_for_the_ttl(tmp_path: Path) -> None:
    write_process(tmp_path, 10, "ray::Trainer", {"RAY_JOB_ID": "02000000"})
    reads: list[int] = []
    reader = procfs_reader(tmp_path)

    def counting(pid: int) -> ProcessView | None:
        reads.append(pid)
        return reader(pid)

    clock = FakeClock()
    attribute = ProcAttributor(counting, ttl_seconds=10, clock=clock)
    assert attribute(10).actor_class == "Trainer"
    (tmp_path / "10" / "cmdline").write_bytes(b"ray::Trainer.step\0")
    clock.now = 9.9
    assert attribute(10).task_name == ""  # cached
    clock.now = 10.0
    assert attribute(10).task_name == "Trainer.step"
    assert reads == [10, 10]
    assert attribute(11) == NOT_RAY  # gone processes are answered (and cached) as not Ray


# Ray state API -------------------------------------------------------------------------------------


class RecordedStateApi:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.fail: Exception | None = None

    def __call__(self, path: str, params: Mapping[str, Any]) -> Any:
        self.requests.append((path, dict(params)))
        if self.fail is not None:
            raise self.fail
        return {"/api/v0/actors": RECORDED_ACTORS, "/api/v0/tasks": RECORDED_TASKS}[path]


def test_state_api_gives_actor_ids_and_running_tasks() -> None:
    api = RecordedStateApi()
    attribute = RayStateAttributor(api, NODE_ID, ttl_seconds=10, clock=FakeClock())
    assert attribute(17192) == ProcessAttribution(
        job_id="01000000",
        actor_id="dd4606cd3bb12b002c36e27b01000000",
        actor_class="Trainer",
        task_name="Trainer.busy",
        ray_worker="actor",
    )
    assert attribute(17191) == ProcessAttribution(
        job_id="01000000", actor_id="c3bbcfda50309c211d61de0e01000000", actor_class="Trainer", ray_worker="actor"
    )
    assert attribute(17264) == ProcessAttribution(job_id="01000000", task_name="long_task", ray_worker="task")
    assert attribute(1) is None
    # Two requests per refresh, filtered to this node's live actors and running tasks.
    assert [path for path, _ in api.requests] == ["/api/v0/actors", "/api/v0/tasks"]
    actors = api.requests[0][1]
    assert actors["filter_keys"] == ["state", "node_id"]
    assert actors["filter_predicates"] == ["=", "="]
    assert actors["filter_values"] == ["ALIVE", NODE_ID]
    assert api.requests[1][1]["filter_values"] == ["RUNNING", NODE_ID]


def test_state_api_is_asked_once_per_period_and_failures_fall_back(caplog: pytest.LogCaptureFixture) -> None:
    api = RecordedStateApi()
    clock = FakeClock()
    attribute = RayStateAttributor(api, NODE_ID, ttl_seconds=10, clock=clock)
    for pid in (17191, 17192, 17264, 5):
        attribute(pid)
    assert len(api.requests) == 2
    clock.now = 10.0
    api.fail = OSError("connection refused")
    with caplog.at_level(logging.WARNING, logger="raylens.gpu.attribution"):
        assert attribute(17192) is None
        clock.now = 20.0
        assert attribute(17192) is None
    assert len(api.requests) == 4  # one failed request per period, no retry storm
    assert sum("state API unavailable" in record.getMessage() for record in caplog.records) == 1
    api.fail = None
    clock.now = 30.0
    assert attribute(17192).actor_id == "dd4606cd3bb12b002c36e27b01000000"


def test_state_api_error_answer_is_a_failure() -> None:
    def refusing(path: str, params: Mapping[str, Any]) -> Any:
        return {"result": False, "msg": "Failed to query actors", "data": {}}

    assert RayStateAttributor(refusing, NODE_ID, clock=FakeClock())(17192) is None


def test_layered_attribution_prefers_the_state_api_where_it_knows(tmp_path: Path) -> None:
    # A pre-started worker turned actor: /proc has no job id and guesses "task" from a lower-case class.
    write_process(tmp_path, 17191, "ray::trainer_v2", {"RAY_JOB_ID": "ffffffff"})
    write_process(tmp_path, 17192, "ray::Trainer.busy", {"RAY_JOB_ID": "01000000"})
    write_process(tmp_path, 31337, "ray::local_only", {"RAY_JOB_ID": "07000000"})
    state = RayStateAttributor(RecordedStateApi(), NODE_ID, clock=FakeClock())
    attribute = LayeredAttributor(ProcAttributor(procfs_reader(tmp_path), clock=FakeClock()), state)
    assert attribute(17191) == ProcessAttribution(
        job_id="01000000", actor_id="c3bbcfda50309c211d61de0e01000000", actor_class="Trainer", ray_worker="actor"
    )
    assert attribute(17192).task_name == "Trainer.busy"
    assert attribute(31337) == ProcessAttribution(job_id="07000000", task_name="local_only", ray_worker="task")


@pytest.fixture
def dashboard() -> Iterator[tuple[str, list[str]]]:
    """A stand-in dashboard on loopback that answers the recorded listings over real HTTP."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            url = urlparse(self.path)
            body = {"/api/v0/actors": RECORDED_ACTORS, "/api/v0/tasks": RECORDED_TASKS}.get(url.path)
            payload = json.dumps(body).encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", seen
    finally:
        server.shutdown()
        server.server_close()


def test_http_fetcher_sends_rays_query_shape(dashboard: tuple[str, list[str]]) -> None:
    url, seen = dashboard
    attribute = RayStateAttributor(http_state_fetcher(url, 2.0), NODE_ID, clock=FakeClock())
    assert attribute(17264).task_name == "long_task"
    query = parse_qs(urlparse(seen[0]).query)
    assert query["filter_keys"] == ["state", "node_id"]
    assert query["filter_values"] == ["ALIVE", NODE_ID]
    assert query["detail"] == ["false"]
