"""The hostile-file corpus (tests/hostile_corpus.py) through `raylens config check` and exporter start-up.

Every case must end with exit code 2 and one line naming the file (and the line where known) and the
limit or expectation, with no traceback, quickly. Start-up runs the real `python -m raylens exporter`
with the file in the role a user would give it. docs/reliability.md#hostile-inputs lists each case.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import time
from pathlib import Path

import pytest
from hostile_corpus import CASES, Case, exporter_argv

from raylens.cli import main

# A guard against hangs and bombs, not a timing claim (the measured figures are in docs/reliability.md).
GUARD_SECONDS = 20.0
LINE_MAX = 600


def config_check(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["config", "check", *args])
    return code, out.getvalue(), err.getvalue()


def assert_one_clear_line(text: str, case: Case, path: Path) -> None:
    assert "Traceback" not in text, text[:2000]
    lines = text.splitlines()
    assert len(lines) == 1, text[:2000]
    line = lines[0]
    assert str(path) in line and case.expected in line, line
    assert len(line) <= LINE_MAX, f"{len(line)} characters: {line[:300]}…"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_config_check_refuses_with_one_line(case: Case, tmp_path: Path) -> None:
    path = case.write(tmp_path)
    started = time.monotonic()
    code, out, err = config_check(str(path))
    assert time.monotonic() - started < GUARD_SECONDS
    assert code == 2 and out == ""
    assert_one_clear_line(err, case, path)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_exporter_start_up_refuses_with_one_line(case: Case, tmp_path: Path) -> None:
    path = case.write(tmp_path)
    result = subprocess.run(
        exporter_argv(case, path, tmp_path), capture_output=True, text=True, timeout=GUARD_SECONDS, check=False
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert_one_clear_line(result.stderr, case, path)


def test_a_refused_file_in_a_set_reports_the_others_too(tmp_path: Path) -> None:
    bomb = next(case for case in CASES if case.name == "bomb-budgets").write(tmp_path)
    bad = tmp_path / "quotas.yaml"
    bad.write_text("quotas:\n  - {name: q, scope: global, resource: gpus, limit: -1}\n")
    code, _out, err = config_check(str(bomb), str(bad))
    assert code == 2
    assert "(2 problems)" in err and "expand past" in err and "quotas.0.limit" in err


def test_yaml_features_raylens_files_use_still_load(tmp_path: Path) -> None:
    """Anchors with merge keys, a byte-order mark, CRLF line ends and JSON are not hostile."""
    path = tmp_path / "budgets.yaml"
    text = (
        "\ufeffbudgets:\r\n"
        "  - &vision {name: vision, scope: project, match: vision, amount_usd: 100, period: week}\r\n"
        "  - {<<: *vision, name: nlp, match: nlp}\r\n"
    )
    path.write_bytes(text.encode("utf-8"))
    code, out, err = config_check(str(path))
    assert (code, err) == (0, "") and "OK (budgets: 2)" in out
    path.write_text(json.dumps({"budgets": [{"name": "a", "scope": "org", "amount_usd": 5}]}))
    assert config_check(str(path))[0] == 0
