"""One log line with where it came from: the unit ``raylens logs`` filters and writes.

JSON form (one object a line; schema ``schemas/raylens-log-record.schema.json``)::

    {"timestamp": "2026-12-06T22:19:36.277Z", "node_id": "17cc…", "node_ip": "192.0.2.2",
     "component": "worker", "file": "worker-4d3c…-02000000-22986.out", "job_id": "02000000",
     "submission_id": null, "actor_id": null, "task_id": null, "task_name": "hello", "actor_name": null,
     "worker_id": "4d3c…", "pid": 22986, "level": null, "message": "hello-from-task 0", "format": "raw",
     "extra": {}}

Unknown values are ``null``. ``timestamp`` is the line's own time (``null`` for lines that carry
none, such as ``print()`` output); ``format`` says which of Ray's formats was recognised.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from re import Pattern
from typing import Any

from raylens.ray.logs.files import LogFile
from raylens.ray.logs.lines import ParsedLine, iso_time, marker, parse_line


@dataclass
class LogRecord:
    file: LogFile
    line: ParsedLine
    context: dict[str, str] = field(default_factory=dict)
    """Ids set by marker lines before this one (``job_id``, ``task_name``, ``actor_name``) or the query."""

    def _id(self, key: str) -> str | None:
        return self.line.ids.get(key) or self.context.get(key) or getattr(self.file, key, "") or None

    def as_json(self) -> dict[str, Any]:
        return {
            "timestamp": iso_time(self.line.timestamp),
            "node_id": self.file.node_id or self.line.ids.get("node_id") or None,
            "node_ip": self.file.node_ip or None,
            "component": self.file.component,
            "file": self.file.name,
            "job_id": self._id("job_id"),
            "submission_id": self.file.submission_id or None,
            "actor_id": self._id("actor_id"),
            "task_id": self._id("task_id"),
            "task_name": self._id("task_name"),
            "actor_name": self._id("actor_name"),
            "worker_id": self._id("worker_id"),
            "pid": self.line.pid or self.file.pid,
            "level": self.line.level or None,
            "message": self.line.message,
            "format": self.line.format,
            "extra": self.line.extra,
        }

    def as_text(self) -> str:
        return f"{self.file.node_ip or self.file.node_id[:8]} {self.file.component} {self.file.name}: {self.line.text}"


@dataclass(frozen=True)
class LineFilter:
    """What a line must match: a regular expression (on the raw line) and a time window."""

    pattern: Pattern[str] | None = None
    since: float | None = None
    until: float | None = None

    def accepts(self, text: str, timestamp: float | None) -> bool:
        if self.pattern is not None and not self.pattern.search(text):
            return False
        # Lines without any known time (print output before the first timed line) cannot be placed
        # in the window: they are kept rather than silently lost.
        if timestamp is not None:
            if self.since is not None and timestamp < self.since:
                return False
            if self.until is not None and timestamp > self.until:
                return False
        return True


def records(
    file: LogFile, lines: Iterable[str], line_filter: LineFilter, context: dict[str, str] | None = None
) -> Iterator[LogRecord]:
    """The records of one file's lines that pass the filter, in file order.

    A line without its own time (a traceback under a log line) is placed at the time of the line
    before it for ``--since``/``--until``; its record keeps ``timestamp: null``.
    """
    current = dict(context or {})
    if file.job_id:
        current.setdefault("job_id", file.job_id)
    last_time: float | None = None
    reads_markers = file.component == "worker" and file.name.endswith((".out", ".err"))
    for text in lines:
        if reads_markers and (found := marker(text)) is not None:
            current[found[0]] = found[1]
            if found[0] == "job_id" and found[1] == "ffffffff":
                current.pop("job_id", None)
            continue
        if line_filter.pattern is not None and not line_filter.pattern.search(text):
            # Cheap reject before parsing; the time of skipped lines still moves the clock below.
            if line_filter.since is not None or line_filter.until is not None:
                stamp = parse_line(text).timestamp
                last_time = stamp if stamp is not None else last_time
            continue
        parsed = parse_line(text)
        if parsed.timestamp is not None:
            last_time = parsed.timestamp
        if line_filter.accepts(text, last_time):
            yield LogRecord(file, parsed, dict(current))
