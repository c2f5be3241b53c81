"""One label-value policy for every outside value (raylens.labels), over arbitrary unicode, at each place
a value enters: Ray job metadata and ids, the session name, task and actor names, node labels and names,
cost attribution, the restored cost state and GPU process titles. Each place is checked through the
exposition Prometheus reads: it parses, and every label value is at most 128 characters of valid UTF-8.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_gpu_collector import fake, make_collector
from test_gpu_collector import registry_for as gpu_registry_for
from test_ray_collector import StubSource, collector_for, sample_snapshot

from raylens.collectors.base import ScrapeHealthCollector
from raylens.collectors.cost import CostCollector
from raylens.config import CostConfig
from raylens.cost.attribution import job_labels, job_workload
from raylens.cost.catalog import load_catalog
from raylens.cost.engine import CostEngine
from raylens.cost.pricing import NodePricer
from raylens.cost.ray_source import observation_from_snapshot
from raylens.cost.state import EngineState, JobRecord
from raylens.gpu.attribution import ProcessView, attribution_from_process
from raylens.labels import (
    LABEL_VALUE_MAX,
    MARKER,
    TRUNCATED,
    LabelPolicyCollector,
    TruncationCounter,
    label_value,
)
from raylens.ray.snapshot import actor_from_api, job_from_api, node_from_api, task_from_api

# Every code point, lone surrogates (category Cs) included: Ray's JSON can carry "\ud800".
ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=400)
LONG_TEXT = st.text(st.characters(blacklist_categories=()), min_size=LABEL_VALUE_MAX + 1, max_size=3000)
HOSTILE = st.one_of(
    ANY_TEXT,
    LONG_TEXT,
    st.sampled_from(['"quoted"', "back\\slash", "new\nline", "tab\there", "🚀" * 200, "x" * 10_000, "\ud800", ""]),
)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def exposed_label_values(registry: CollectorRegistry) -> list[tuple[str, str, str]]:
    """(metric, label, value) of every sample, read back through prometheus_client's text parser."""
    text = generate_latest(registry).decode("utf-8")
    return [
        (sample.name, label, value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for label, value in sample.labels.items()
    ]


def assert_label_safe(found: list[tuple[str, str, str]], limit: int = LABEL_VALUE_MAX) -> None:
    for metric, label, value in found:
        assert len(value) <= limit, (metric, label, len(value))
        value.encode("utf-8")  # no lone surrogate survived


# --- the policy itself ---------------------------------------------------------------------------


@PROPERTY
@given(HOSTILE)
def test_label_values_are_capped_valid_stable_and_idempotent(text: str) -> None:
    capped = label_value(text, "ray_job_metadata")
    assert len(capped) <= LABEL_VALUE_MAX
    capped.encode("utf-8")
    assert label_value(capped, "ray_job_metadata") == capped  # applying it twice changes nothing
    assert label_value(text, "ray_job_metadata") == capped  # the same value is always cut the same way
    if len(text) <= LABEL_VALUE_MAX and text.isascii():
        assert capped == text
    if len(text) > LABEL_VALUE_MAX:
        assert len(capped) == LABEL_VALUE_MAX and capped[LABEL_VALUE_MAX - 9] == MARKER


@PROPERTY
@given(LONG_TEXT, st.text(min_size=1, max_size=5))
def test_long_values_sharing_a_prefix_stay_apart(prefix: str, tail: str) -> None:
    assert label_value(prefix, "ray_task_name") != label_value(prefix + tail, "ray_task_name")


def test_cuts_are_counted_once_per_distinct_value_and_origin() -> None:
    counter = TruncationCounter()
    counter.record("ray_job_metadata", "abc")
    counter.record("ray_job_metadata", "abc")
    counter.record("gpu_process", "abc")
    counts = counter.counts()
    assert counts["ray_job_metadata"] == 1 and counts["gpu_process"] == 1 and counts["ray_node"] == 0
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LabelPolicyCollector(counter))
    assert registry.get_sample_value("raylens_label_values_truncated_total", {"origin": "gpu_process"}) == 1


def test_the_process_wide_counter_sees_each_new_cut() -> None:
    before = TRUNCATED.counts()["ray_session_name"]
    label_value("s" * 500 + "unique-to-this-test", "ray_session_name")
    label_value("s" * 500 + "unique-to-this-test", "ray_session_name")
    assert TRUNCATED.counts()["ray_session_name"] == before + 1


# --- the ray collector: job metadata, ids, entrypoint, session, task and actor names, nodes -------


@PROPERTY
@given(HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE)
def test_ray_job_metadata_ids_and_session_reach_the_exposition_capped(
    user: str, project: str, submission_id: str, entrypoint: str, session: str
) -> None:
    row = {
        "job_id": "02000000",
        "submission_id": submission_id or "raysubmit_x",
        "type": "SUBMISSION",
        "status": "RUNNING",
        "entrypoint": entrypoint,
        "metadata": {"user": user, "project": project, "team": "ml", user[:50]: project},
        "start_time": 1,
    }
    snapshot = replace(sample_snapshot(session=session), jobs=(job_from_api(row),))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeHealthCollector([collector_for(StubSource(snapshot))]))
    found = exposed_label_values(registry)
    assert_label_safe(found)
    info = {label: value for metric, label, value in found if metric == "raylens_ray_job_info"}
    assert info["user"] == label_value(user, "ray_job_metadata")
    assert info["submission_id"] == label_value(submission_id or "raysubmit_x", "ray_job_id")
    assert len(info["entrypoint"]) <= 120


@PROPERTY
@given(st.lists(HOSTILE, min_size=1, max_size=5), st.lists(HOSTILE, min_size=1, max_size=5))
def test_task_and_actor_names_reach_the_exposition_capped(task_names: list[str], class_names: list[str]) -> None:
    tasks = tuple(
        task_from_api({"task_id": f"t{index}", "name": name, "state": "RUNNING", "job_id": "02000000"})
        for index, name in enumerate(task_names)
    )
    actors = tuple(
        actor_from_api({"actor_id": f"a{index}", "class_name": name, "state": "ALIVE", "job_id": "02000000"})
        for index, name in enumerate(class_names)
    )
    snapshot = replace(sample_snapshot(), tasks=tasks, actors=actors)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeHealthCollector([collector_for(StubSource(snapshot))]))
    assert_label_safe(exposed_label_values(registry))


def hostile_node_row(name: str, label_key: str, label_value_: str) -> dict[str, Any]:
    return {
        "node_id": "n1",
        "node_ip": "10.0.0.1",
        "is_head_node": True,
        "state": "ALIVE",
        "node_name": name,
        "labels": {"ray.io/node-group": label_value_, label_key: label_value_, "pool": label_value_},
        "resources_total": {"CPU": 2.0, "memory": 8e9},
        "start_time_ms": 1_000,
    }


@PROPERTY
@given(HOSTILE, HOSTILE, HOSTILE)
def test_node_names_and_labels_reach_the_ray_exposition_capped(name: str, key: str, value: str) -> None:
    node = node_from_api(hostile_node_row(name, key, value), node_type=value, instance_type=value)
    snapshot = replace(sample_snapshot(), nodes=(node,))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeHealthCollector([collector_for(StubSource(snapshot))]))
    assert_label_safe(exposed_label_values(registry))


# --- the cost collector: node labels, job metadata, restored state -------------------------------


def cost_registry(snapshot: Any, config: CostConfig, state: EngineState | None = None) -> CollectorRegistry:
    engine = CostEngine(config, NodePricer(config, load_catalog()), state=state)
    collector = CostCollector(config, engine)
    assert collector.account(observation_from_snapshot(snapshot))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeHealthCollector([collector]))
    return registry


@PROPERTY
@given(HOSTILE, HOSTILE, HOSTILE, HOSTILE)
def test_cost_node_labels_and_job_metadata_reach_the_exposition_capped(
    label: str, user: str, project: str, workload: str
) -> None:
    config = CostConfig(export_node_labels=("pool",), default_instance_type="m5.xlarge")
    node = node_from_api(hostile_node_row("head", "pool", label))
    job = job_from_api(
        {
            "job_id": "02000000",
            "submission_id": user or "s",
            "status": "RUNNING",
            "metadata": {"user": user, "project": project, "team": user, "workload": workload},
            "start_time": 1_000,
        }
    )
    task = task_from_api(
        {
            "task_id": "t1",
            "name": project,
            "state": "RUNNING",
            "job_id": "02000000",
            "type": "NORMAL_TASK",
            "node_id": "n1",
            "required_resources": {"CPU": 1.0},
            "start_time_ms": 2_000,
        }
    )
    snapshot = replace(sample_snapshot(taken_at=10_000.0), nodes=(node,), jobs=(job,), tasks=(task,), actors=())
    found = exposed_label_values(cost_registry(snapshot, config))
    assert_label_safe(found)
    users = {value for metric, label_, value in found if metric.startswith("raylens_cost_job") and label_ == "user"}
    assert users == {label_value(user, "ray_job_metadata") or "__unallocated__"}


@PROPERTY
@given(HOSTILE, HOSTILE)
def test_cost_attribution_caps_metadata_from_any_source(user: str, workload: str) -> None:
    """The snapshot parsers cap metadata already; attribution caps again for any other source."""
    config = CostConfig()
    found = job_labels({"user": user, "project": user * 3}, config)
    for value in (found.user, found.project, job_workload({"workload": workload}, config)):
        assert len(value) <= LABEL_VALUE_MAX
        value.encode("utf-8")


@PROPERTY
@given(HOSTILE)
def test_a_restored_state_cannot_bring_back_uncapped_values(user: str) -> None:
    state = EngineState(time=5_000.0)
    state.jobs["02000000"] = JobRecord(dollars=1.0, user=user, project=user, team=user, workload="tasks")
    state.allocation[(user, user, user, "tasks", "compute")] = 1.0
    restored = EngineState.from_json(state.to_json())
    for key in restored.allocation:
        assert all(len(part) <= LABEL_VALUE_MAX for part in key)
    record = restored.jobs["02000000"]
    assert len(record.user) <= LABEL_VALUE_MAX
    record.user.encode("utf-8")


# --- GPU process titles -----------------------------------------------------------------------------


@PROPERTY
@given(HOSTILE, HOSTILE)
def test_gpu_process_titles_reach_the_exposition_capped(title: str, job_id: str) -> None:
    hostile = attribution_from_process(ProcessView([f"ray::{title}"], {"RAY_JOB_ID": job_id}))
    for field in (hostile.job_id, hostile.actor_class, hostile.task_name):
        assert len(field) <= LABEL_VALUE_MAX
    registry = gpu_registry_for(make_collector(fake("h100-sxm-80gb"), attribute=lambda _pid: hostile))
    found = exposed_label_values(registry)
    assert_label_safe(found)
    assert any(metric == "raylens_gpu_process_memory_used_bytes" for metric, _label, _value in found)


def test_counts_of_cuts_per_place_rise_when_hostile_values_arrive() -> None:
    before = TRUNCATED.counts()
    job_from_api({"job_id": "x", "submission_id": "s" * 300 + "count-me", "metadata": {"user": "u" * 300 + "me"}})
    task_from_api({"task_id": "t", "name": "n" * 300 + "count-me"})
    actor_from_api({"actor_id": "a", "class_name": "C" * 300 + "count-me"})
    node_from_api({"node_id": "n", "labels": {"k": "v" * 300 + "count-me"}})
    attribution_from_process(ProcessView(["ray::" + "p" * 300 + "count-me"], {}))
    after = TRUNCATED.counts()
    for origin in ("ray_job_id", "ray_job_metadata", "ray_task_name", "ray_actor_class", "ray_node", "gpu_process"):
        assert after[origin] > before[origin], origin


@pytest.mark.parametrize("limit", [0, 1, 5, 17, 18, 120])
def test_small_caps_still_end_in_the_marker(limit: int) -> None:
    capped = label_value("y" * 500, "ray_entrypoint", limit, digest=limit >= 18)
    assert len(capped) <= max(limit, 1) and MARKER in capped
