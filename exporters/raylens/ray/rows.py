"""Read the rows of a large JSON answer one at a time, with limits on rows and bytes.

The dashboard answers a detailed task listing of 10,000 rows with about 26 MB of JSON; parsed whole,
that is well over 100 MB of Python objects for a moment, and CPython rarely gives such peaks back to
the OS. Here the body is read in chunks and each element of the one array that holds the rows is
decoded on its own and handed to ``parse`` (which keeps only what raylens needs), so memory is
bounded by a chunk plus one row, whatever the cluster's size.

Everything outside that array (``total``, ``partial_failure_warning``…) is small and kept as text
for ``scalar``.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from raylens.scrape_priority import yield_to_scrapes

T = TypeVar("T")

CHUNK_BYTES = 64 * 1024
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class RowsError(ValueError):
    """The answer is not the expected JSON, or is over a limit that makes it unusable."""


@dataclass
class Rows(Generic[T]):
    rows: list[T] = field(default_factory=list)
    outside: str = ""
    """The JSON text around the array (the array itself replaced by ``[]``)."""
    bytes_read: int = 0
    stopped_at_rows: bool = False
    """The row limit was reached; rows after it were not read."""

    def scalar(self, key: str) -> Any:
        """The first ``"key": <number | string | bool | null>`` outside the array, else ``None``."""
        match = re.search('"' + re.escape(key) + r'"\s*:\s*', self.outside)
        if not match:
            return None
        try:
            value, _ = _DECODER.raw_decode(self.outside, match.end())
        except ValueError:
            return None
        return value if not isinstance(value, dict | list) else None


def read_rows(
    chunks: Iterable[bytes],
    array_key: str,
    parse: Callable[[Any], T | None],
    max_rows: int,
    max_bytes: int,
) -> Rows[T]:
    """Rows of the first array whose key is ``array_key`` (``"result": [``), parsed one by one.

    ``parse`` returns ``None`` to skip a row. Stops reading after ``max_rows`` rows (the caller
    learns the true count from ``total``); raises ``RowsError`` past ``max_bytes`` or on bad JSON.
    """
    opening = re.compile('"' + re.escape(array_key) + r'"\s*:\s*\[')
    decoder = codecs.getincrementaldecoder("utf-8")()
    result: Rows[T] = Rows()
    text = ""
    state = "before"  # before the array, inside it, after it
    position = 0
    for chunk in chunks:
        result.bytes_read += len(chunk)
        if result.bytes_read > max_bytes:
            raise RowsError(f"answer larger than {max_bytes} bytes (ray.max_response_bytes)")
        text += decoder.decode(chunk)
        if state == "before":
            match = opening.search(text)
            if not match:
                continue
            result.outside = text[: match.end()]
            text, position, state = text[match.end() :], 0, "inside"
        if state == "inside":
            text, position, finished = _decode_available(text, position, parse, result, max_rows)
            if finished:
                state = "after"
                result.outside += "]"
                if result.stopped_at_rows:
                    break  # the rest of the answer is rows we will not read
        if state == "after":
            result.outside += text
            text = ""
    text += decoder.decode(b"", final=True)
    if state == "before":
        raise RowsError(f'no "{array_key}" array in the answer: {text[:200]!r}')
    if state == "inside":
        text, _, finished = _decode_available(text, position, parse, result, max_rows, final=True)
        if not finished:
            raise RowsError("the answer ended inside its row array (truncated JSON)")
        result.outside += "]"
    result.outside += text
    if not result.stopped_at_rows:
        try:  # what surrounds the rows is small: check that the whole answer was well-formed
            json.loads(result.outside)
        except ValueError as error:
            raise RowsError(f"the answer is truncated or malformed around its rows: {error}") from None
    return result


def _decode_available(
    text: str, position: int, parse: Callable[[Any], T | None], result: Rows[T], max_rows: int, final: bool = False
) -> tuple[str, int, bool]:
    """Decode whole rows from ``text[position:]``; return the unread rest, and whether the array ended."""
    while True:
        position = _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]
        if position >= len(text):
            return text[position:], 0, False
        character = text[position]
        if character == "]":
            return text[position + 1 :], 0, True
        if character == ",":
            position += 1
            continue
        if len(result.rows) >= max_rows:
            result.stopped_at_rows = True
            return "", 0, True
        try:
            row, end = _DECODER.raw_decode(text, position)
        except ValueError as error:
            if final:
                raise RowsError(f"bad JSON in a row: {error}") from None
            return text[position:], 0, False  # the row is not complete yet
        if end >= len(text) and not final:
            # A number at the very end may continue in the next chunk: wait for a delimiter.
            return text[position:], 0, False
        parsed = parse(row)
        yield_to_scrapes()  # a 10,000-row listing is the exporter's longest background work
        if parsed is not None:
            result.rows.append(parsed)
        position = end
