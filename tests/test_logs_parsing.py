"""raylens logs without a cluster: file names, Ray's line formats, streaming splits, filters, times,
and the JSON record schema. Lines are copied from a Ray 2.60 head's log directory."""

from __future__ import annotations

import json
import re
import time

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raylens.ray.logs.files import classify, with_worker_jobs
from raylens.ray.logs.lines import TRUNCATED_SUFFIX, iso_time, parse_line, split_lines
from raylens.ray.logs.records import LineFilter, records
from raylens.ray.logs.timespec import parse_duration, parse_time
from services import REPO

SCHEMA = json.loads((REPO / "schemas" / "raylens-log-record.schema.json").read_text())
NODE = "17cc15680be8235de5b345e6ce6e32fe900509ec05f71d9ae5e689f5"
WORKER = "4d3c4856e62a218edabf910e7db28310325b8f6cceba80eaa080ebaa"


@pytest.mark.parametrize(
    ("name", "component", "job_id", "submission_id", "pid"),
    [
        (f"worker-{WORKER}-02000000-22986.out", "worker", "02000000", "", 22986),
        (f"worker-{WORKER}-ffffffff-21844.err", "worker", "", "", 21844),
        (f"python-core-worker-{WORKER}_22986.log", "worker", "", "", 22986),
        (
            "python-core-driver-02000000ffffffffffffffffffffffffffffffffffffffffffffffff_22555.log",
            "driver",
            "02000000",
            "",
            22555,
        ),
        ("job-driver-raysubmit_ufMpAZqHUGR14ac3.log", "job_driver", "", "raysubmit_ufMpAZqHUGR14ac3", None),
        ("runtime_env_setup-02000000.log", "runtime_env", "02000000", "", None),
        ("raylet.out", "raylet", "", "", None),
        ("raylet.err.1", "raylet", "", "", None),
        ("gcs_server.out", "gcs", "", "", None),
        ("monitor.log", "autoscaler", "", "", None),
        ("log_monitor.log", "internal", "", "", None),
        ("dashboard.log", "dashboard", "", "", None),
        ("dashboard_StateHead.log", "dashboard", "", "", None),
        ("dashboard_agent.log", "agent", "", "", None),
        ("serve/controller_25970.log", "serve_controller", "", "", 25970),
        ("serve/proxy_192.0.2.2.log", "serve_proxy", "", "", None),
        ("serve/replica_helloapp_Hello_dqocozgz.log", "serve_replica", "", "", None),
        ("ray_client_server.err", "internal", "", "", None),
    ],
)
def test_file_names_tell_component_and_ids(name, component, job_id, submission_id, pid) -> None:
    file = classify(NODE, "192.0.2.2", name)
    assert (file.component, file.job_id, file.submission_id, file.pid) == (component, job_id, submission_id, pid)


def test_core_worker_logs_take_the_job_of_their_worker() -> None:
    files = [
        classify(NODE, "ip", f"worker-{WORKER}-02000000-22986.out"),
        classify(NODE, "ip", f"python-core-worker-{WORKER}_22986.log"),
        classify(NODE, "ip", "python-core-worker-aaaa_1.log"),
    ]
    assert [f.job_id for f in with_worker_jobs(files)] == ["02000000", "02000000", ""]


@pytest.mark.parametrize(
    ("line", "fmt", "level", "message"),
    [
        (
            "2026-12-06 22:19:26,625\tINFO worker.py:1691 -- Using address 192.0.2.2:48653",
            "ray_python",
            "INFO",
            "Using address 192.0.2.2:48653",
        ),
        (
            "[2026-12-06 22:18:04,396 W 18747 18747] (raylet) main.cc:283: Setting cluster ID",
            "ray_cpp",
            "WARNING",
            "Setting cluster ID",
        ),
        (
            "[2026-12-06 22:19:36,277 E 22986 22986] core_worker_process.cc:872: Constructing",
            "ray_cpp",
            "ERROR",
            "Constructing",
        ),
        (
            "INFO 2026-12-06 22:20:32,833 helloapp_Hello dqocozgz d925b73b -- GET /hello 200 15.3ms",
            "serve",
            "INFO",
            "GET /hello 200 15.3ms",
        ),
        ("WARNING 2026-12-06 22:20:29,052 proxy 192.0.2.2 -- Proxy starting", "serve", "WARNING", "Proxy starting"),
        ("(hello pid=22986, ip=10.0.0.5) hello-from-task 0", "forwarded", "", "hello-from-task 0"),
        ("Traceback (most recent call last):", "raw", "", "Traceback (most recent call last):"),
        ('  File "x.py", line 1, in <module>', "raw", "", '  File "x.py", line 1, in <module>'),
    ],
)
def test_ray_line_formats(line, fmt, level, message) -> None:
    parsed = parse_line(line)
    assert (parsed.format, parsed.level, parsed.message) == (fmt, level, message)
    if fmt in ("ray_python", "ray_cpp", "serve"):
        expected = time.mktime(
            time.strptime(re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line).group(), "%Y-%m-%d %H:%M:%S")
        )
        assert parsed.timestamp is not None and abs(parsed.timestamp - expected) < 1
    else:
        assert parsed.timestamp is None


def test_ray_json_records_give_ids_and_exact_time() -> None:
    line = json.dumps(
        {
            "asctime": "2026-12-06 22:20:20,996",
            "levelname": "INFO",
            "message": "json structured task line",
            "filename": "serve_job.py",
            "lineno": 6,
            "process": 25969,
            "job_id": "03000000",
            "worker_id": WORKER,
            "node_id": NODE,
            "task_id": "fa31b89f94899135ffffffffffffffffffffffff03000000",
            "task_name": "jtask",
            "timestamp_ns": 1796595620996450286,
        }
    )
    parsed = parse_line(line)
    assert parsed.format == "ray_json" and parsed.level == "INFO" and parsed.pid == 25969
    assert parsed.ids["task_id"].startswith("fa31") and parsed.ids["job_id"] == "03000000"
    assert iso_time(parsed.timestamp) == "2026-12-06T22:20:20.996Z"
    assert parsed.extra == {"filename": "serve_job.py", "lineno": 6}
    assert parse_line('{"not": "a ray record"}').format == "raw"


def test_worker_markers_set_context_and_are_not_lines() -> None:
    file = classify(NODE, "192.0.2.2", f"worker-{WORKER}-02000000-22986.out")
    lines = [":job_id:02000000", ":task_name:hello", "hello-from-task 0", ":actor_name:Counter", "tick"]
    got = [
        (r.line.message, r.as_json()["task_name"], r.as_json()["actor_name"])
        for r in records(file, lines, LineFilter())
    ]
    assert got == [("hello-from-task 0", "hello", None), ("tick", "hello", "Counter")]


def test_filters_grep_and_time_window_with_untimed_lines_following_their_timed_line() -> None:
    file = classify(NODE, "ip", "raylet.out")
    lines = [
        "[2026-12-06 22:00:00,000 I 1 1] (raylet) a.cc:1: early",
        "  continuation of early",
        "[2026-12-06 22:10:00,000 E 1 1] (raylet) a.cc:2: late failure",
        "  continuation of late",
    ]
    since = time.mktime(time.strptime("2026-12-06 22:05:00", "%Y-%m-%d %H:%M:%S"))
    window = [r.line.text for r in records(file, lines, LineFilter(since=since))]
    assert window == lines[2:]
    grep = [r.line.text for r in records(file, lines, LineFilter(re.compile("continuation"), since=since))]
    assert grep == ["  continuation of late"]
    untimed = classify(NODE, "ip", f"worker-{WORKER}-02000000-1.out")
    assert [r.line.text for r in records(untimed, ["print output"], LineFilter(since=since))] == ["print output"]


@settings(deadline=None)  # a shared, loaded CI machine: time is not what is tested
@given(st.lists(st.binary(max_size=40), max_size=20))
def test_split_lines_matches_splitting_the_whole_stream(chunks) -> None:
    whole = b"".join(chunks)
    expected = [part.decode("utf-8", errors="replace") for part in whole.split(b"\n")]
    if expected and expected[-1] == "":
        expected.pop()
    # Decoding per line (not per chunk) keeps multi-byte characters cut by chunk borders intact.
    assert list(split_lines(chunks)) == [line.rstrip("\r") for line in expected]


def test_split_lines_caps_a_line_without_newline() -> None:
    chunks = [b"x" * 1000] * 50 + [b"\nnext\n"]
    lines = list(split_lines(chunks, max_line_bytes=4096))
    assert lines == ["x" * 4096 + TRUNCATED_SUFFIX, "next"]


@settings(deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["ms", "s", "m", "h", "d", "w"]))
def test_durations(number, unit) -> None:
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    assert parse_duration(f"{number}{unit}") == pytest.approx(number * factor)


def test_time_forms() -> None:
    now = 1_800_000_000.0
    assert parse_time("1h30m", now) == now - 5400
    assert parse_time("2026-12-06T22:00:00Z", now) == 1796594400.0
    assert parse_time("1796594400", now) == 1796594400.0
    for bad in ("yesterday", "10 minutes", "", "1x"):
        with pytest.raises(ValueError, match="expected"):
            parse_time(bad, now)


def test_json_records_validate_against_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    cases = [
        (f"worker-{WORKER}-02000000-22986.out", ["hello-from-task 0"]),
        ("raylet.out", ["[2026-12-06 22:18:04,396 I 18747 18747] (raylet) main.cc:283: x"]),
        ("serve/replica_app_D_abc.log", ["INFO 2026-12-06 22:20:32,833 app_D abc req -- hi"]),
        (
            "job-driver-raysubmit_x.log",
            ["(hello pid=1) forwarded", '{"levelname": "INFO", "message": "m", "job_id": "03000000"}'],
        ),
    ]
    for name, lines in cases:
        for record in records(classify(NODE, "192.0.2.2", name), lines, LineFilter()):
            errors = list(validator.iter_errors(record.as_json()))
            assert errors == [], (name, record.as_json(), errors)
    broken = next(iter(records(classify(NODE, "ip", "raylet.out"), ["x"], LineFilter()))).as_json() | {"pid": "1"}
    assert list(validator.iter_errors(broken))
