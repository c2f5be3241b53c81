"""Three rows of the fault matrix (docs/reliability.md#fault-matrix), with real processes stopped by PID
and one shared Ray head:

* the cost state file truncated or of another shape: the exporter comes up, keeps the file aside, says
  so in a log line and a metric, and re-derives node spend from Ray instead of restarting it at 0;
* the disk full while persisting state (a small tmpfs, filled up): the exporter keeps serving, holds
  the spend counters at their last saved values, counts and logs each failed save, retries, and has
  lost no money once space is back;
* hostile job metadata on a real Ray head (quotes, newlines, backslashes, emoji, 10 kB values, 1,000
  keys, a long submission id): the exposition stays `promtool check metrics`-valid, label values are
  capped, and the counter of cut values says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from ray.job_submission import JobStatus, JobSubmissionClient
from ray_cluster import RayHead, running_ray_head
from test_ray_collector import promtool_problems

from raylens.cost.state import STATE_FILE
from raylens.cost.state_health import set_aside_files
from raylens.labels import LABEL_VALUE_MAX, label_value
from services import RunningExporter, running_exporter

pytestmark = pytest.mark.slow

JOB = Path(__file__).parent / "fixtures" / "cost" / "ray_job"
RAY_SOURCES = ("version", "nodes", "node_details", "resource_usage", "jobs", "actors", "tasks")
HEAD_LABELS = {"node.kubernetes.io/instance-type": "m5.xlarge", "ray.io/market-type": "on-demand"}
M5_XLARGE_PER_SECOND = 0.192 / 3600  # default catalog, us-east-1 on-demand
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayHead]:
    with running_ray_head(tmp_path_factory.mktemp("ray"), labels=HEAD_LABELS) as started:
        yield started


def config_file(directory: Path, head: RayHead, state_dir: Path) -> Path:
    path = directory / "raylens.yaml"
    path.write_text(
        json.dumps(
            {
                "ray": {
                    "address": head.dashboard_url,
                    "timeout_seconds": 10,
                    "sources": {source: {"interval_seconds": 1.0} for source in RAY_SOURCES},
                },
                "cost": {"state_dir": str(state_dir), "default_region": "us-east-1"},
            }
        )
    )
    return path


def samples(exporter: RunningExporter) -> tuple[str, Samples]:
    text = exporter.scrape()
    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, found


def one(found: Samples, name: str) -> float | None:
    values = [value for (sample, _labels), value in found.items() if sample == name]
    assert len(values) <= 1, (name, values)
    return values[0] if values else None


def scrape_until(exporter: RunningExporter, check, timeout: float = 90.0) -> Samples:
    deadline = time.monotonic() + timeout
    found: Samples = {}
    while time.monotonic() < deadline:
        _text, found = samples(exporter)
        if check(found):
            return found
        time.sleep(0.5)
    raise AssertionError(f"condition not met after {timeout}s\n{exporter.process.log_tail(30)}")


def node_dollars(found: Samples) -> float | None:
    return one(found, "raylens_cost_node_dollars_total")


def log_events(exporter: RunningExporter, message: str) -> list[dict]:
    events = []
    for line in exporter.process.log_path.read_text(errors="replace").splitlines():
        if message in line:
            events.append(json.loads(line))
    return events


# --- row: the state file truncated or corrupt -------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "top-level list"])
def test_corrupt_state_is_set_aside_and_money_is_not_restarted_at_zero(
    damage: str, head: RayHead, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    config = config_file(tmp_path, head, state_dir)
    args = ("--collectors=cost", f"--config.file={config}")
    with running_exporter(tmp_path, *args) as exporter:
        before = node_dollars(scrape_until(exporter, lambda found: (node_dollars(found) or 0) > 0))
    assert before is not None
    saved = (state_dir / STATE_FILE).read_bytes()
    damaged = saved[: len(saved) // 2] if damage == "truncated" else b"[]"
    (state_dir / STATE_FILE).write_bytes(damaged)

    with running_exporter(tmp_path, *args) as exporter:  # comes up: healthz answers
        found = scrape_until(exporter, lambda found: node_dollars(found) is not None)
        assert one(found, "raylens_cost_state_restore_failures_total") == 1
        assert one(found, "raylens_cost_state_set_aside_files") == 1
        # Node spend is re-derived from the node's start time that Ray still knows: not 0, not less.
        assert node_dollars(found) >= before
        [event] = log_events(exporter, "cost state unreadable")
        assert event["level"] == "error" and event["path"] == str(state_dir / STATE_FILE)
        print(
            f"corrupt-state row ({damage}): set aside, restore failures 1, node spend {before:.6f} USD before, "
            f"{node_dollars(found):.6f} USD re-derived after; log: {event['error']}"
        )
    [aside] = set_aside_files(state_dir)
    assert aside.read_bytes() == damaged and aside.name.startswith(f"{STATE_FILE}.unreadable-")

    # No crash loop: the next start is clean, and the set-aside file keeps the alert's series up.
    with running_exporter(tmp_path, *args) as exporter:
        found = scrape_until(exporter, lambda found: node_dollars(found) is not None)
        assert one(found, "raylens_cost_state_restore_failures_total") == 0
        assert one(found, "raylens_cost_state_set_aside_files") == 1


# --- row: disk full when persisting state ---------------------------------------------------------


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs, unmounted afterwards: the one way to get a real ENOSPC without filling a disk."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (and mount(8)); run the fault matrix as root in CI")
    mount_point = tmp_path / "small-fs"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """Fill the filesystem until ENOSPC; returns the filler file."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == 28, error  # ENOSPC
    return filler


def test_disk_full_keeps_serving_counts_failed_saves_and_loses_no_money(
    head: RayHead, tmp_path: Path, small_filesystem: Path
) -> None:
    state_dir = small_filesystem / "state"
    config = config_file(tmp_path, head, state_dir)
    with running_exporter(tmp_path, "--collectors=node,cost", f"--config.file={config}") as exporter:
        found = scrape_until(exporter, lambda found: (node_dollars(found) or 0) > 0)
        before, accounted_before = node_dollars(found), one(found, "raylens_cost_accounted_until_timestamp_seconds")
        rate = one(found, "raylens_cost_node_dollars_per_second")
        assert rate == pytest.approx(M5_XLARGE_PER_SECOND)

        outage_started = time.monotonic()
        filler = fill(small_filesystem)
        failing = scrape_until(exporter, lambda found: (one(found, "raylens_cost_state_save_errors_total") or 0) >= 5)
        # Still serving: the node collector and the cost series go out; the spend counters stay at their
        # last saved values (never ahead of the file), and the cost collector says it is failing.
        assert one(failing, "raylens_node_load1") is not None
        held = node_dollars(failing)
        saved_before = json.loads((state_dir / STATE_FILE).read_text())
        assert held is not None and held == pytest.approx(sum(node[3][0] for node in saved_before["nodes"].values()))
        success = {
            dict(labels)["collector"]: value
            for (name, labels), value in failing.items()
            if name == "raylens_scrape_collector_success"
        }
        assert success == {"node": 1.0, "cost": 0.0}
        [event, *_] = log_events(exporter, "cost state not saved")
        assert "No space left on device" in event["error"] and event["level"] == "error"

        filler.unlink()
        found = scrape_until(exporter, lambda found: (node_dollars(found) or 0) > held)
        outage = time.monotonic() - outage_started
        after, accounted_after = node_dollars(found), one(found, "raylens_cost_accounted_until_timestamp_seconds")
        # Spend over the outage was accounted in memory: exactly the price times the time accounted.
        expected = rate * (accounted_after - accounted_before)
        assert after - before == pytest.approx(expected, rel=1e-9)
        saved = json.loads((state_dir / STATE_FILE).read_text())
        assert sum(node[3][0] for node in saved["nodes"].values()) >= after
        [recovered] = log_events(exporter, "cost state saved again")
        print(
            f"disk-full row: {int(one(found, 'raylens_cost_state_save_errors_total'))} failed saves over "
            f"{outage:.1f} s (held back {recovered['held_back_seconds']} s of spend); spend from the last "
            f"counter before to the first after: {after - before:.9f} USD, price x time accounted: "
            f"{expected:.9f} USD (difference {abs(after - before - expected):.1e})"
        )


# --- row: hostile job metadata on a real Ray head ----------------------------------------------------

HOSTILE_METADATA = {
    "user": 'al"ice\\ \n🚀 ' + 'quote"back\\slash\nnewline' * 3,
    "project": "p" * 10_000,  # a 10 kB value
    "team": "🚀" * 300,
    "workload": "w\n" * 100,
}
HOSTILE_SUBMISSION_ID = 'raysubmit_"quoted"\\back_' + "x" * 150  # under 255 bytes: Ray names log files after it


def wait_running(client: JobSubmissionClient, submission_id: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_job_status(submission_id)
        if status == JobStatus.RUNNING:
            return
        assert not status.is_terminal(), client.get_job_logs(submission_id)[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"{submission_id[:40]} not running after {timeout}s")


def test_hostile_job_metadata_keeps_the_exposition_valid_and_capped(head: RayHead, tmp_path: Path) -> None:
    client = JobSubmissionClient(head.dashboard_url)
    release = tmp_path / "release"
    entrypoint = f"{sys.executable} hold.py {release} 300"
    hostile = client.submit_job(
        entrypoint=entrypoint,
        runtime_env={"working_dir": str(JOB)},
        submission_id=HOSTILE_SUBMISSION_ID,
        metadata=HOSTILE_METADATA,
    )
    many_keys = client.submit_job(
        entrypoint=entrypoint,
        runtime_env={"working_dir": str(JOB)},
        metadata={**{f"key-{index}": f"value-{index}" for index in range(1_000)}, "user": "bob"},
    )
    try:
        wait_running(client, hostile)
        wait_running(client, many_keys)
        config = config_file(tmp_path, head, tmp_path / "state")
        with running_exporter(tmp_path, "--collectors=ray,cost", f"--config.file={config}") as exporter:

            def both_jobs_costed(found: Samples) -> bool:
                users = {
                    dict(labels).get("user") for (name, labels) in found if name == "raylens_cost_job_dollars_total"
                }
                return label_value(HOSTILE_METADATA["user"], "ray_job_metadata") in users and "bob" in users

            scrape_until(exporter, both_jobs_costed, timeout=120)
            text, found = samples(exporter)
            response = requests.get(f"{exporter.url}/metrics", timeout=10)
            assert response.status_code == 200

        assert promtool_problems(text) == ""
        longest = max(
            (len(value), name, label) for (name, labels) in found for label, value in labels if label != "entrypoint"
        )
        assert longest[0] <= LABEL_VALUE_MAX, longest
        [info_labels] = [
            dict(labels)
            for (name, labels) in found
            if name == "raylens_ray_job_info" and dict(labels)["submission_id"].startswith('raysubmit_"quoted"')
        ]
        for key in ("user", "project", "team"):
            assert info_labels[key] == label_value(HOSTILE_METADATA[key], "ray_job_metadata")
        assert info_labels["submission_id"] == label_value(HOSTILE_SUBMISSION_ID, "ray_job_id")
        cut = {
            dict(labels)["origin"]: value
            for (name, labels), value in found.items()
            if name == "raylens_label_values_truncated_total"
        }
        assert cut["ray_job_metadata"] >= 2 and cut["ray_job_id"] >= 1, cut
        print(
            f"hostile-metadata row: {len(text):,} bytes of exposition, promtool clean, longest label value "
            f"{longest[0]} characters, values cut: {json.dumps({k: v for k, v in cut.items() if v})}"
        )
    finally:
        release.write_text("")
        for submission in (hostile, many_keys):
            client.stop_job(submission)
