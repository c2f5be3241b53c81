"""``--since``/``--until`` values: a duration before now (``90s``, ``15m``, ``1h30m``, ``2d``), an
ISO 8601 time (``2026-12-06T22:00:00Z``; without a zone: local time) or Unix seconds."""

from __future__ import annotations

import re
from datetime import datetime

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d|w))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``1h30m`` → 5400.0; raises ``ValueError`` naming the accepted forms."""
    value = text.strip()
    if not value or not _DURATION.match(value):
        raise ValueError(f"expected a duration such as 90s, 15m, 1h30m or 2d, got {text!r}")
    return sum(float(number) * _SECONDS[unit] for number, unit in _PART.findall(value))


def parse_time(text: str, now: float) -> float:
    """Epoch seconds for a ``--since``/``--until`` value (durations count back from ``now``)."""
    value = text.strip()
    if _DURATION.match(value):
        return now - parse_duration(value)
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"expected a duration (15m, 2h), an ISO 8601 time (2026-12-06T22:00:00Z) or Unix seconds, got {text!r}"
        ) from None
    return moment.timestamp()  # a naive time is local time, as Ray writes its own
