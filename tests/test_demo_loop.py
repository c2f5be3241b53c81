"""The demo's schedule and what `raylens status` says about it (the live demo runs in test_up_e2e)."""

from __future__ import annotations

from raylens.stack.demo_loop import FAILING_EVERY, cycle_jobs, describe_demo


def test_each_cycle_runs_data_train_and_spill_and_every_third_a_failing_job() -> None:
    for cycle in range(1, 7):
        jobs = {kind: metadata for kind, _, metadata in cycle_jobs(cycle, "run")}
        assert {"data", "train", "spill"} <= set(jobs)
        assert ("failing" in jobs) == (cycle % FAILING_EVERY == 0)
        assert {jobs["data"]["user"], jobs["train"]["user"]} == {"alice", "bob"}  # they take turns
        assert jobs["data"]["project"] == jobs["train"]["project"] == "vision"
        assert jobs["spill"]["project"] == "search"
    first, second = dict((k, m) for k, _, m in cycle_jobs(1, "r")), dict((k, m) for k, _, m in cycle_jobs(2, "r"))
    assert first["data"]["user"] != second["data"]["user"]


def run(kind: str, status: str, user: str = "alice", project: str = "vision") -> dict:
    return {"kind": kind, "status": status, "user": user, "project": project, "submission_id": f"demo-{kind}-c2"}


def test_status_lines_say_what_runs_when_it_resubmits_and_how_the_last_cycle_ended() -> None:
    state = {
        "cycle": 2,
        "next_cycle_at": 1000.0,
        "ends_at": None,
        "serve": run("serve", "RUNNING", "carol", "search"),
        "runs": [run("data", "RUNNING"), run("train", "PENDING", "bob")],
        "history": [{"cycle": 1, "runs": [run("data", "SUCCEEDED"), run("failing", "FAILED", "carol", "search")]}],
    }
    lines = describe_demo(state, now=940.0)
    assert lines[0] == "cycle 2, next in 60s"
    assert lines[1].split()[:3] == ["serve", "RUNNING", "carol/search"]
    assert lines[-1] == "last finished cycle 1: data succeeded, failing failed"
    assert describe_demo(state, now=1010.0)[0] == "cycle 2, next as soon as this cycle's jobs end"
    assert describe_demo({**state, "ends_at": 900.0}, now=940.0)[0] == "cycle 2, no more cycles (duration reached)"
