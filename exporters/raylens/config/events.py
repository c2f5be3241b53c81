"""The ``events`` section: the workspace events log the ``ray`` collector writes."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from raylens.config.base import _Section


class EventsConfig(_Section):
    """Workspace events (node joined/died, preemption, jobs, Serve status) derived from Ray state."""

    enabled: bool = Field(
        True,
        description="Derive events from each new snapshot of the `ray` collector and count them in "
        "raylens_ray_events_total. Turn off to skip the extra Serve status call and the events file.",
    )
    log_file: Path | None = Field(
        None,
        description="JSON-lines events log; unset: $XDG_STATE_HOME/raylens/events.jsonl (else "
        "~/.local/state/raylens/events.jsonl). A `<file>.state.json` beside it remembers what was "
        "emitted, so an exporter restart neither repeats nor loses events. One exporter per file "
        "(it is locked).",
    )
    retention_days: float = Field(
        30.0,
        gt=0,
        description="Events older than this are dropped from the log (checked at start and hourly). "
        "Ship the file to a log store for longer history.",
    )
    serve: bool = Field(
        True,
        description="Ask the dashboard's Serve API (/api/serve/applications/) for application and deployment "
        "status changes.",
    )
    serve_timeout_seconds: float = Field(
        2.0, gt=0, le=30, description="Deadline for the Serve status call; a timeout skips Serve that round."
    )
