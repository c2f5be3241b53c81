"""Ray's log line formats, parsed into one record shape; anything else is kept as a raw line.

=============  ==========================================================================================
format         example (Ray 2.60)
=============  ==========================================================================================
``ray_json``   ``{"asctime": "…", "levelname": "INFO", "message": "…", "job_id": "03000000", "task_id": …}``
               (``ray.LoggingConfig(encoding="JSON")`` / Serve's ``LoggingConfig(encoding="JSON")``)
``ray_python`` ``2026-12-06 22:19:26,625\tINFO worker.py:1691 -- Using address …``
``ray_cpp``    ``[2026-12-06 22:18:04,396 I 18747 18747] (raylet) main.cc:283: Setting cluster ID …``
``serve``      ``INFO 2026-12-06 22:20:32,833 helloapp_Hello dqocozgz d925b73b-… -- replica handling request``
``forwarded``  ``(hello pid=22986) hello-from-task 0`` (worker output a driver re-prints, ANSI removed)
``raw``        anything else: ``print()`` output, tracebacks, third-party formats
=============  ==========================================================================================

Ray writes times in the node's local time without a zone; they are read in the local zone of the
machine running raylens (the same zone on a single-region cluster; set ``TZ`` otherwise).

Worker stdout/stderr files carry marker lines Ray's log monitor reads (``:job_id:03000000``,
``:task_name:hello``, ``:actor_name:Counter``): they set the context of the lines after them and
are not log lines themselves (``marker``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_LINE_BYTES = 1 << 20
TRUNCATED_SUFFIX = " …[truncated by raylens]"
_LEVELS = {"D": "DEBUG", "I": "INFO", "W": "WARNING", "E": "ERROR", "F": "FATAL"}
_TIME = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})"
_PYTHON = re.compile(_TIME + r"\t([A-Z]+) (\S+?:\d+) -- (.*)$", re.S)
_CPP = re.compile(r"\[" + _TIME + r" ([DIWEF]) (\d+) (\d+)\] (?:\(([\w-]+)\) )?(\S+?:\d+): (.*)$", re.S)
_SERVE = re.compile(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) " + _TIME + r" (\S+) (\S+)(?: (\S+))? -- (.*)$", re.S)
_FORWARDED = re.compile(r"\(([^\s()]+) pid=(\d+)(?:, ip=([0-9a-fA-F.:]+))?\) (.*)$", re.S)
_MARKER = re.compile(r":(job_id|task_name|actor_name):(.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Fields of Ray's JSON log records that become record ids (the rest goes to ``extra``).
_JSON_IDS = ("job_id", "task_id", "actor_id", "worker_id", "node_id", "task_name", "actor_name")
_JSON_KNOWN = {"asctime", "levelname", "message", "timestamp_ns", "process", *_JSON_IDS}


def local_time(stamp: str, millis: str) -> float | None:
    """``2026-12-06 22:19:26`` + ``625`` (local time) as epoch seconds."""
    try:
        moment = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S"))
    except (ValueError, OverflowError):
        return None
    return moment + int(millis) / 1000.0


@dataclass
class ParsedLine:
    """One line as Ray wrote it, split into what its format tells."""

    text: str
    format: str = "raw"
    timestamp: float | None = None
    level: str = ""
    message: str = ""
    ids: dict[str, str] = field(default_factory=dict)
    pid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_line(text: str) -> ParsedLine:
    """The record behind one line (without its newline)."""
    clean = _ANSI.sub("", text) if "\x1b" in text else text
    if clean.startswith("{"):
        parsed = _parse_json(clean)
        if parsed is not None:
            return parsed
    if clean[:1].isdigit() and (match := _PYTHON.match(clean)):
        stamp, millis, level, where, message = match.groups()
        return ParsedLine(text, "ray_python", local_time(stamp, millis), level, message, extra={"where": where})
    if clean.startswith("[") and (match := _CPP.match(clean)):
        stamp, millis, level, pid, _thread, _process, where, message = match.groups()
        return ParsedLine(
            text, "ray_cpp", local_time(stamp, millis), _LEVELS[level], message, pid=int(pid), extra={"where": where}
        )
    if clean[:1].isupper() and (match := _SERVE.match(clean)):
        level, stamp, millis, component, component_id, request_id, message = match.groups()
        extra = {"serve_component": component, "serve_component_id": component_id}
        if request_id:
            extra["request_id"] = request_id
        return ParsedLine(text, "serve", local_time(stamp, millis), level, message, extra=extra)
    if clean.startswith("(") and (match := _FORWARDED.match(clean)):
        name, pid, ip, message = match.groups()
        extra = {"origin": name} | ({"origin_ip": ip} if ip else {})
        return ParsedLine(text, "forwarded", message=message, pid=int(pid), extra=extra)
    return ParsedLine(text, "raw", message=clean)


def _parse_json(text: str) -> ParsedLine | None:
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or "message" not in record:
        return None
    timestamp: float | None = None
    if isinstance(record.get("timestamp_ns"), int | float):
        timestamp = record["timestamp_ns"] / 1e9
    elif isinstance(record.get("asctime"), str) and "," in record["asctime"]:
        stamp, _, millis = record["asctime"].partition(",")
        timestamp = local_time(stamp, millis[:3])
    ids = {key: str(record[key]) for key in _JSON_IDS if record.get(key)}
    pid = record.get("process") if isinstance(record.get("process"), int) else None
    extra = {key: value for key, value in record.items() if key not in _JSON_KNOWN}
    level = str(record.get("levelname") or "")
    return ParsedLine(text, "ray_json", timestamp, level, str(record["message"]), ids, pid, extra)


def marker(text: str) -> tuple[str, str] | None:
    """``(key, value)`` of a worker-output marker line (``:job_id:03000000``), else ``None``."""
    if not text.startswith(":"):
        return None
    match = _MARKER.match(text)
    return (match.group(1), match.group(2).strip()) if match else None


def split_lines(chunks: Iterable[bytes], max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[str]:
    """Lines (without newline) from a byte stream, holding at most one line in memory.

    A line longer than ``max_line_bytes`` is cut there (with a marker) and the rest of it skipped,
    so a file without newlines cannot exhaust memory. A last line without newline is yielded too.
    """
    pending = bytearray()
    skipping = False
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                if not skipping:
                    pending += chunk[start:]
                    if len(pending) > max_line_bytes:
                        yield _decode(pending[:max_line_bytes]) + TRUNCATED_SUFFIX
                        pending.clear()
                        skipping = True
                break
            if skipping:
                skipping = False
            else:
                pending += chunk[start:end]
                if len(pending) > max_line_bytes:
                    yield _decode(pending[:max_line_bytes]) + TRUNCATED_SUFFIX
                else:
                    yield _decode(pending)
            pending.clear()
            start = end + 1
    if pending and not skipping:
        yield _decode(pending)


def _decode(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace").rstrip("\r")


def iso_time(timestamp: float | None) -> str | None:
    """Epoch seconds as RFC 3339 UTC with milliseconds; ``None`` stays ``None``."""
    if timestamp is None:
        return None
    seconds, millis = divmod(round(timestamp * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
