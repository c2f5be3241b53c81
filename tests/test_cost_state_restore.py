"""A cost state file that cannot be used is set aside, logged and counted, never a crash at start-up.

Every case of the state corpus below goes through ``restore_state`` (what exporter start-up runs): the
file is renamed ``cost-state.json.unreadable-<UTC time>`` with its bytes intact, one log line names it
and the reason, ``raylens_cost_state_restore_failures_total`` and ``raylens_cost_state_set_aside_files``
say so, and the next start finds no file and starts cleanly (no crash loop). A property test feeds the
strict reader arbitrary JSON and mutated states: it either restores or raises ``StateShapeError``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raylens.cost.loading import restore_state
from raylens.cost.state import STATE_FILE, EngineState, JobRecord, NodeRecord, PeriodRecord, StateShapeError
from raylens.cost.state_health import StateHealth, set_aside_files


def valid_state() -> EngineState:
    state = EngineState(time=1_790_000_000.0)
    state.nodes["n1"] = NodeRecord(
        1_789_990_000.0, None, 1_790_000_000.0, [1.5, 0.25, 0.0], None, 1.79e9, ["m5", "spot"]
    )
    state.jobs["02000000"] = JobRecord(2.0, "raysubmit_x", "alice", "vision", "ml", "train", "metadata", 1.0, None, 2.0)
    state.allocation[("alice", "vision", "ml", "train", "compute")] = 1.25
    state.serve[("app", "deployment")] = 0.5
    state.periods["month"] = PeriodRecord(1_788_000_000.0, {"org": 12.5, "project:vision": 3.0})
    return state


VALID = json.dumps(valid_state().to_json()).encode()


def _with(path: tuple[Any, ...], value: Any) -> bytes:
    data = json.loads(VALID)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return json.dumps(data).encode()


# (name, bytes of cost-state.json, a fragment of the reason in the log line)
STATE_CORPUS: list[tuple[str, bytes, str]] = [
    ("truncated", VALID[: len(VALID) // 2], "not valid JSON"),
    ("empty", b"", "not valid JSON"),
    ("binary", bytes(range(256)) * 4, "binary file"),
    ("utf-16", json.dumps({"format": 1}).encode("utf-16"), "UTF-16"),
    ("latin-1", b'{"format": 1, "time": "caf\xe9"}', "not UTF-8"),
    ("null", b"null", "the file: expected an object"),
    ("top-level list", b"[]", "the file: expected an object, got []"),
    ("top-level number", b"42", "the file: expected an object"),
    ("another format", _with(("format",), 2), "format: expected 1, got 2"),
    ("node row too short", _with(("nodes", "n1"), [1, 2]), "expected a list of 7 fields, got 2"),
    ("node row a string", _with(("nodes", "n1"), "x"), "expected a list, got 'x'"),
    ("dollars not numbers", _with(("nodes", "n1", 3), ["a", "b", "c"]), "expected a finite number, got 'a'"),
    ("job row wrong length", _with(("jobs", "02000000"), [1.0]), "expected a list of 10 fields, got 1"),
    ("label not a string", _with(("jobs", "02000000", 2), {"a": 1}), "expected a string"),
    ("allocation value NaN", VALID.replace(b"1.25", b"NaN"), "expected a finite number, got nan"),
    ("infinite time", _with(("time",), 1).replace(b'"time": 1', b'"time": 1e400'), "expected a finite number"),
    ("periods a list", _with(("periods",), []), "periods: expected an object"),
    ("period without spend", _with(("periods", "month"), {"start": 1.0}), "spend: expected an object"),
    ("huge integer", b'{"format": 1, "time": ' + b"9" * 5000 + b"}", "Exceeds the limit"),
    ("nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ("nested 20 deep", b'{"format": 1, "nodes": ' + b"[" * 20 + b"]" * 20 + b"}", "nested deeper than 16 levels"),
]


@pytest.mark.parametrize(("name", "content", "reason"), STATE_CORPUS, ids=[case[0] for case in STATE_CORPUS])
def test_unusable_state_is_set_aside_logged_and_counted(
    name: str, content: bytes, reason: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / STATE_FILE).write_bytes(content)
    health = StateHealth(tmp_path)
    with caplog.at_level(logging.ERROR, logger="raylens.cost"):
        assert restore_state(tmp_path, health) is None

    aside = set_aside_files(tmp_path)
    assert len(aside) == 1 and aside[0].read_bytes() == content, "the file is kept, byte for byte"
    assert not (tmp_path / STATE_FILE).exists()
    [record] = [r for r in caplog.records if "cost state unreadable" in r.getMessage()]
    assert record.set_aside_as == str(aside[0]) and reason in record.error, record.error  # type: ignore[attr-defined]
    assert len(record.error) < 400  # type: ignore[attr-defined]

    exported = {sample.name: sample.value for family in health.metrics() for sample in family.samples}
    assert exported["raylens_cost_state_restore_failures_total"] == 1
    assert exported["raylens_cost_state_set_aside_files"] == 1

    # The next start finds no state and starts cleanly; the set-aside file keeps the alert up.
    again = StateHealth(tmp_path)
    assert restore_state(tmp_path, again) is None
    assert again.restore_failures == 0 and len(set_aside_files(tmp_path)) == 1


def test_a_valid_state_round_trips_and_nothing_is_set_aside(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_bytes(VALID)
    health = StateHealth(tmp_path)
    restored = restore_state(tmp_path, health)
    assert restored is not None and restored.to_json() == valid_state().to_json()
    assert health.restore_failures == 0 and set_aside_files(tmp_path) == []


def test_two_failures_in_the_same_second_keep_both_files(tmp_path: Path) -> None:
    for content in (b"[]", b"{}"):
        (tmp_path / STATE_FILE).write_bytes(content)
        restore_state(tmp_path, StateHealth(tmp_path))
    assert sorted(path.read_bytes() for path in set_aside_files(tmp_path)) == [b"[]", b"{}"]


def restores_or_refuses(data: Any) -> None:
    """A shape error, or a state that can be saved again as strict JSON (no NaN, no infinity)."""
    try:
        state = EngineState.from_json(data)
    except StateShapeError:
        return
    json.dumps(state.to_json(), allow_nan=False)


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json_either_restores_or_is_a_shape_error(data: Any) -> None:
    restores_or_refuses(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_state_with_any_one_part_replaced_restores_or_is_a_shape_error(data: st.DataObject) -> None:
    state = json.loads(VALID)
    paths = [
        ("time",),
        ("nodes", "n1"),
        ("nodes", "n1", 3),
        ("nodes", "n1", 6),
        ("jobs", "02000000"),
        ("jobs", "02000000", 7),
        ("allocation",),
        ("allocation", 0),
        ("serve", 0, 2),
        ("periods", "month", "spend"),
        ("periods", "month", "start"),
    ]
    path = data.draw(st.sampled_from(paths))
    node = state
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = data.draw(JSON)
    restores_or_refuses(state)


def test_failed_saves_stay_visible_while_accounting_is_stuck(tmp_path: Path) -> None:
    """The save-error counter and the accounting lag go out even while the collector reports failure."""
    from dataclasses import replace

    from prometheus_client import CollectorRegistry
    from test_ray_collector import node, sample_snapshot

    from raylens.collectors.base import ScrapeHealthCollector
    from raylens.collectors.cost import CostCollector
    from raylens.config import CostConfig
    from raylens.cost.catalog import load_catalog
    from raylens.cost.engine import CostEngine
    from raylens.cost.pricing import NodePricer
    from raylens.cost.ray_source import observation_from_snapshot

    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")  # the state directory is a file: every save fails with an OSError
    config = CostConfig(default_instance_type="m5.xlarge")
    collector = CostCollector(config, CostEngine(config, NodePricer(config, load_catalog())), state_dir=blocked)
    snapshot = replace(sample_snapshot(), nodes=(node(),), actors=(), tasks=())
    assert collector.account(observation_from_snapshot(snapshot))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeHealthCollector([collector]))
    assert registry.get_sample_value("raylens_cost_state_save_errors_total") == 1
    assert registry.get_sample_value("raylens_cost_accounting_lag_seconds") is not None
    assert registry.get_sample_value("raylens_scrape_collector_success", {"collector": "cost"}) == 0
    assert registry.get_sample_value("raylens_cost_node_dollars_total", {"node_id": "n1"}) is None  # held back


@pytest.mark.parametrize(
    "content",
    [b"[]", b'"text"', b"null", bytes(range(256)), b"9" * 5000, b'{"previous": 5}', b'{"emitted": 7}', b"[" * 50_000],
    ids=["list", "string", "null", "binary", "huge number", "previous a number", "emitted a number", "deep"],
)
def test_the_events_state_of_any_shape_never_stops_start_up(
    content: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The other state file the exporter keeps (raylens.ray.event_log) goes through the same reader."""
    from test_events import recorder

    (tmp_path / "events.jsonl.state.json").write_bytes(content)
    with caplog.at_level(logging.WARNING):
        started = recorder(tmp_path)
    assert not started.disabled_reason
    assert any("events state" in record.getMessage() for record in caplog.records)
