"""Append-only JSON-lines files with a retention window (the events log, the audit trail).

Pruning streams the file through a temporary copy and swaps it in with ``os.replace``: memory stays
flat whatever the file's size, and a crash mid-way leaves the old file whole. Lines whose ``ts``
cannot be read are kept (never lose what cannot be dated).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

_lock = threading.Lock()


def rfc3339(timestamp: float) -> str:
    seconds, millis = divmod(round(timestamp * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def parse_rfc3339(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def append_lines(path: Path, entries: Iterable[Mapping[str, Any]]) -> int:
    """Append entries as JSON lines, flushed and fsynced together; returns how many were written."""
    text = "".join(json.dumps(entry, default=str, sort_keys=True) + "\n" for entry in entries)
    if not text:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock, path.open("a", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    return text.count("\n")


def prune_older_than(path: Path, cutoff: float, key: str = "ts") -> int:
    """Drop lines whose ``key`` time is before ``cutoff`` (epoch seconds); returns lines dropped."""
    if not path.exists():
        return 0
    dropped = 0
    temporary = path.with_name(path.name + ".pruning")
    with _lock:
        with path.open("r", encoding="utf-8", errors="replace") as source, temporary.open("w", encoding="utf-8") as out:
            for line in source:
                when = None
                with contextlib.suppress(ValueError, AttributeError):
                    when = parse_rfc3339(json.loads(line).get(key, ""))
                if when is not None and when < cutoff:
                    dropped += 1
                    continue
                out.write(line)
        if dropped:
            os.replace(temporary, path)
        else:
            temporary.unlink()
    return dropped


def write_json_atomically(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as file:
        json.dump(value, file, default=str, sort_keys=True)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
