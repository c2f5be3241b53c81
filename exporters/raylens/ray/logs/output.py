"""Where ``raylens logs`` writes: stdout or ``--output FILE`` (gzip when it ends in ``.gz``)."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import IO, TextIO

from raylens.ray.logs.records import LogRecord


class RecordWriter:
    """Writes records as text (the raw line behind node, component and file) or JSON lines."""

    def __init__(self, output_format: str, path: Path | None = None, flush_every_line: bool = False):
        self._format = output_format
        self._path = path
        self._stream: TextIO | IO[str]
        if path is None:
            self._stream = sys.stdout
        elif path.name.endswith(".gz"):
            self._stream = gzip.open(path, "wt", encoding="utf-8")  # noqa: SIM115 - closed by close()
        else:
            self._stream = path.open("w", encoding="utf-8")
        self._flush = flush_every_line
        self.written = 0

    def __call__(self, record: LogRecord) -> None:
        if self._format == "json":
            text = json.dumps(record.as_json(), ensure_ascii=False, default=str)
        else:
            text = record.as_text()
        self._stream.write(text + "\n")
        self.written += 1
        if self._flush:
            self._stream.flush()

    def close(self) -> None:
        if self._path is None:
            self._stream.flush()
        else:
            self._stream.close()
