"""The streaming row reader: the same rows as ``json.loads`` however the answer is cut into
chunks, and its limits on rows and bytes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raylens.ray.rows import RowsError, read_rows

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
rows_strategy = st.lists(st.dictionaries(st.text(max_size=10), json_values, max_size=5), max_size=30)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(len(data), cut) for cut in cuts})
    pieces, start = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces


def state_api_answer(rows: list, total: int | None = None, indent: int | None = None) -> bytes:
    result = {"total": len(rows) if total is None else total, "num_after_truncation": len(rows), "result": rows}
    result["partial_failure_warning"] = "raylet 10.0.0.2 did not answer"
    body = {"result": True, "msg": "", "data": {"result": result}}
    return json.dumps(body, indent=indent, ensure_ascii=False).encode()


@settings(max_examples=200, deadline=None)
@given(rows=rows_strategy, cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=40), pretty=st.booleans())
def test_rows_match_json_loads_whatever_the_chunking(rows: list, cuts: list[int], pretty: bool) -> None:
    data = state_api_answer(rows, indent=2 if pretty else None)
    read = read_rows(chunked(data, cuts), "result", lambda row: row, max_rows=10**6, max_bytes=10**8)
    assert read.rows == json.loads(data)["data"]["result"]["result"]
    assert read.scalar("total") == len(rows)
    assert read.scalar("partial_failure_warning") == "raylet 10.0.0.2 did not answer"
    assert read.bytes_read == len(data)


def test_row_limit_stops_reading_and_keeps_the_total() -> None:
    rows = [{"task_id": str(index)} for index in range(100)]
    chunks = chunked(state_api_answer(rows, total=5000), list(range(0, 4000, 7)))
    consumed = []

    def counting():
        for chunk in chunks:
            consumed.append(chunk)
            yield chunk

    read = read_rows(counting(), "result", lambda row: row["task_id"], max_rows=10, max_bytes=10**8)
    assert read.rows == [str(index) for index in range(10)] and read.stopped_at_rows
    assert read.scalar("total") == 5000
    assert len(consumed) < len(chunks)  # the rest of the answer was never read


def test_parse_can_skip_rows_and_byte_limit_and_bad_json_are_errors() -> None:
    rows = [{"keep": index % 2 == 0, "index": index} for index in range(10)]
    read = read_rows([state_api_answer(rows)], "result", lambda row: row if row["keep"] else None, 100, 10**6)
    assert [row["index"] for row in read.rows] == [0, 2, 4, 6, 8]
    with pytest.raises(RowsError, match="larger than 100 bytes"):
        read_rows([state_api_answer(rows)], "result", dict, 100, max_bytes=100)
    with pytest.raises(RowsError, match="truncated"):
        read_rows([state_api_answer(rows)[:-60]], "result", dict, 100, 10**6)
    with pytest.raises(RowsError, match='no "result" array'):
        read_rows([b'{"result": false, "msg": "boom"}'], "result", dict, 100, 10**6)
    broken = state_api_answer(rows).replace(b'"index": 3', b'"index": 3,,')
    with pytest.raises(RowsError, match="bad JSON"):
        read_rows([broken], "result", dict, 100, 10**6)


def test_multibyte_characters_split_across_chunks() -> None:
    rows = [{"name": "训练-🚀-ü" * 50}]
    data = state_api_answer(rows)
    read = read_rows([data[index : index + 1] for index in range(len(data))], "result", dict, 10, 10**6)
    assert read.rows == rows
