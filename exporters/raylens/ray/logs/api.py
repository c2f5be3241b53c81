"""The dashboard's log and state endpoints ``raylens logs`` reads; bytes are streamed, never buffered.

=====================================  ============================================================
call                                   use
=====================================  ============================================================
``GET /api/v0/nodes?detail=1``         which nodes exist (only alive nodes' agents can serve logs)
``GET /api/v0/logs?node_id=&glob=``    the files on one node (``*``, then ``serve/*``)
``GET /api/v0/logs/file?…&lines=-1``   a whole file, in chunks (``lines=N``: the last N lines)
``GET /api/v0/logs/stream?…``          the last N lines, then new ones as they are written
``GET /api/v0/logs/file?task_id=…``    the part of a worker's output one task attempt wrote
``GET /api/jobs/``                     submission id ↔ job id, for ``--job``
``GET /api/v0/actors|tasks?…filter``   where an actor or task ran, for ``--actor``/``--task``
=====================================  ============================================================
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import requests

from raylens.ray.logs.files import LogFile, classify, is_log_file

CHUNK_BYTES = 64 * 1024
# Ray's dashboard caps one file read at this many seconds (its gRPC deadline); whole multi-GB files
# need longer than its 30 s default.
FILE_READ_TIMEOUT_SECONDS = 3600


class LogApiError(RuntimeError):
    """The dashboard refused or failed a log call; the message says which and why."""


class LogApi:
    def __init__(self, dashboard_url: str, timeout: float = 10.0, session: requests.Session | None = None):
        self.url = dashboard_url.rstrip("/")
        self._timeout = timeout
        self._http = session or requests.Session()

    def _json(self, path: str, params: dict[str, Any]) -> Any:
        try:
            response = self._http.get(f"{self.url}{path}", params=params, timeout=self._timeout)
        except requests.RequestException as error:
            raise LogApiError(f"{self.url}{path}: {type(error).__name__}: {error}") from None
        if response.status_code != 200:
            raise LogApiError(f"{self.url}{path}: HTTP {response.status_code}: {_first_line(response.text)}")
        try:
            return response.json()
        except ValueError:
            raise LogApiError(f"{self.url}{path}: not JSON: {_first_line(response.text)}") from None

    def _state_rows(self, resource: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        body = self._json(f"/api/v0/{resource}", {"detail": 1, "limit": 10000, **params})
        return list(body.get("data", {}).get("result", {}).get("result", []) or [])

    def nodes(self) -> list[dict[str, Any]]:
        """Rows of the node table (alive and dead)."""
        return self._state_rows("nodes", {})

    def find(self, resource: str, key: str, value: str) -> dict[str, Any] | None:
        """The actor or task whose ``key`` equals ``value`` (state API filter), or ``None``."""
        rows = self._state_rows(resource, {"filter_keys": key, "filter_predicates": "=", "filter_values": value})
        return rows[0] if rows else None

    def jobs(self) -> list[dict[str, Any]]:
        body = self._json("/api/jobs/", {})
        return list(body) if isinstance(body, list) else []

    def list_files(self, node_id: str, node_ip: str) -> list[LogFile]:
        """Every log file on the node: the top of its log directory and Serve's folder."""
        names: list[str] = []
        for glob in ("*", "serve/*"):
            body = self._json("/api/v0/logs", {"node_id": node_id, "glob": glob})
            for group in (body.get("data", {}).get("result", {}) or {}).values():
                names.extend(name for name in group if is_log_file(name))
        return [classify(node_id, node_ip, name) for name in sorted(set(names))]

    def read(self, file: LogFile, tail_lines: int = -1) -> Iterator[bytes]:
        """The file's bytes (the last ``tail_lines`` lines; -1: all of it), as they arrive."""
        params = {"node_id": file.node_id, "filename": file.name, "lines": tail_lines}
        yield from self._stream("file", params | {"timeout": FILE_READ_TIMEOUT_SECONDS}, read_timeout=120.0)

    def follow(self, file: LogFile, tail_lines: int, interval: float) -> Iterator[bytes]:
        """The last ``tail_lines`` lines (-1: the whole file; 0 counts as 1, since Ray reads 0 as its
        default of 1000), then new bytes as they are written, until the caller stops reading."""
        params = {"node_id": file.node_id, "filename": file.name, "lines": tail_lines or 1, "interval": interval}
        yield from self._stream("stream", params, read_timeout=None)

    def read_task(self, task_id: str, attempt: int, suffix: str) -> Iterator[bytes]:
        """What one task attempt printed to its worker's stdout (``out``) or stderr (``err``)."""
        params = {
            "task_id": task_id,
            "attempt_number": attempt,
            "suffix": suffix,
            "lines": -1,
            "timeout": FILE_READ_TIMEOUT_SECONDS,
        }
        yield from self._stream("file", params, read_timeout=120.0)

    def _stream(self, media: str, params: dict[str, Any], read_timeout: float | None) -> Iterator[bytes]:
        url = f"{self.url}/api/v0/logs/{media}"
        # Ray strips terminal colours itself when asked; parsing then sees plain text.
        params = params | {"filter_ansi_code": "true"}
        try:
            with self._http.get(url, params=params, stream=True, timeout=(self._timeout, read_timeout)) as response:
                if response.status_code != 200:
                    raise LogApiError(f"{url} {params.get('filename') or params}: {_first_line(response.text)}")
                yield from response.iter_content(chunk_size=CHUNK_BYTES)
        except requests.RequestException as error:
            raise LogApiError(f"{url}: {type(error).__name__}: {error}") from None


def _first_line(text: str) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:300] if lines else "(empty answer)"
