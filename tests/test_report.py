"""`raylens report` against a real Prometheus holding ten days of known spend (tests/report_scenario.py).

Every figure is compared with the analytic truth (the integral of the scripted spend rates) within
0.1 %: a month boundary in Europe/Berlin, an exporter restart that reset every counter, a project
that appears mid-period, jobs that end, a node that ended before the period. The outputs are
golden-tested, the JSON validated against schemas/report.schema.json, and the self-check must refuse
data that do not add up.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backfill import Scenario, Segment, Series, prometheus_with_history
from report_scenario import (
    ALLOCATION,
    END,
    JOB,
    NODE,
    NOW,
    START,
    ZONE,
    at,
    broken_scenario,
    report_scenario,
)

from raylens.cli import main
from raylens.config import PrometheusApiConfig
from raylens.prometheus_api import PrometheusApi
from raylens.report.build import ReportRequest, build_report
from raylens.report.model import Report, Row
from raylens.report.periods import parse_compare, parse_period
from raylens.report.render import render

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "fixtures" / "report"
TOLERANCE = 0.001  # 0.1 %
SCENARIO = report_scenario()
CLOUD_OF_NODE = {"a1": "aws", "a2": "aws", "a3": "aws", "g1": "gcp"}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with prometheus_with_history(tmp_path_factory.mktemp("report-history"), [SCENARIO]) as running:
        yield running


@pytest.fixture(autouse=True)
def audit_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv("RAYLENS_AUDIT_LOG", str(path))
    return path


def report(prometheus: Any, period: str, by: str, compare: str | None = None, **filters: str) -> Report:
    now = int(NOW)
    interval = parse_period(period, now, ZONE)
    request = ReportRequest(
        dimensions=tuple(by.split(",")),
        interval=interval,
        timezone="Europe/Berlin",
        filters={name: [value] for name, value in filters.items()},
        compare=parse_compare(compare, interval, now, ZONE) if compare else None,
    )
    return build_report(PrometheusApi(PrometheusApiConfig(url=prometheus.url)), request, "2026-06-07T10:00:00Z")


def close(figure: float, truth: float, what: str) -> None:
    assert abs(figure - truth) <= TOLERANCE * abs(truth) + 1e-6, f"{what}: report {figure:.6f}, truth {truth:.6f}"


def _row_truth(row: Row, begin: float, finish: float, family: str, filters: dict[str, str]) -> float:
    labels = {**filters, **{key: value for key, value in row.labels.items() if key != "submission_id"}}
    if row.kind == "idle":
        return SCENARIO.truth(begin, finish, metric=ALLOCATION, project="__idle__")
    if family == "node":
        cloud = labels.pop("cloud", None)
        nodes = [node for node, name in CLOUD_OF_NODE.items() if cloud in (None, name)]
        return sum(SCENARIO.truth(begin, finish, metric=NODE, node_id=node, **labels) for node in nodes)
    metric = JOB if family == "job" else ALLOCATION
    if family == "allocation" and "project" not in labels:
        idle = SCENARIO.truth(begin, finish, metric=ALLOCATION, project="__idle__", **labels)
        return SCENARIO.truth(begin, finish, metric=metric, **labels) - idle
    return SCENARIO.truth(begin, finish, metric=metric, **labels)


def check_against_truth(result: Report, filters: dict[str, str]) -> int:
    """Every row, the total and (when present) previous and forecast columns against the integrals."""
    checked = 0
    interval, compare = result.interval, result.compare
    for row in result.all_rows():
        close(row.dollars, _row_truth(row, interval.start, interval.end, result.family, filters), f"{row.labels} spend")
        if compare is not None:
            assert row.previous is not None
            truth = _row_truth(row, compare.start, compare.end, result.family, filters)
            close(row.previous.dollars, truth, f"{row.labels} previous")
        if row.forecast is not None:
            spent = _row_truth(row, interval.start, interval.end, result.family, filters)
            last_day = _row_truth(row, interval.end - 86400, interval.end, result.family, filters)
            remaining = interval.calendar_end - interval.end
            close(row.forecast.dollars, spent + last_day / 86400 * remaining, f"{row.labels} forecast")
        checked += 1
    assert checked, "the report has no rows"
    total = sum(row.dollars for row in result.rows)
    close(result.total.dollars, total, "total")
    return checked


CASES = [
    # (period, by, compare, filters)
    ("2026-05", "project", None, {}),  # month ending at the boundary, data from 29 May
    ("this-month", "project,user,job", None, {}),  # running: forecast; a project appears mid-period; jobs end
    ("2026-06-01..2026-06-03", "team", "previous", {}),  # the previous range straddles the boundary
    ("2026-06-05", "project", None, {}),  # the day of the exporter restart (counter reset)
    ("this-week", "user,cost_kind", "previous", {}),
    ("2026-05", "cloud,instance_type", None, {}),  # node a3 ended in May: its cloud comes from May's info
    ("this-month", "market", None, {}),
    ("this-month", "cost_kind", None, {"user": "alice"}),
    ("this-month", "instance_type", None, {"cloud": "gcp"}),
    ("2026-06-01..2026-06-07", "org,workload", "previous", {}),
    ("last-week", "job", None, {"project": "vision"}),
]


@pytest.mark.parametrize(("period", "by", "compare", "filters"), CASES, ids=[f"{c[0]}-by-{c[1]}" for c in CASES])
def test_every_figure_matches_the_analytic_truth(
    prometheus: Any, period: str, by: str, compare: str | None, filters: dict
) -> None:
    result = report(prometheus, period, by, compare, **filters)
    assert check_against_truth(result, filters) >= 1


def test_month_boundary_is_cut_in_the_report_time_zone(prometheus: Any) -> None:
    may = report(prometheus, "2026-05", "org")
    june = report(prometheus, "2026-06-01..2026-06-01", "org")
    assert may.interval.end == june.interval.start == at("2026-06-01T00:00:00")
    # 22:00 UTC: a UTC month would have put Berlin's first two hours of June into May.
    assert may.interval.end % 86400 == 22 * 3600
    truth = SCENARIO.truth(START, at("2026-06-02T00:00:00"), metric=ALLOCATION)
    close(may.total.dollars + june.total.dollars, truth, "May + 1 June")


def test_idle_and_unallocated_are_rows_of_their_own_and_the_new_project_has_no_history(prometheus: Any) -> None:
    result = report(prometheus, "2026-06-01..2026-06-03", "project", "previous")
    kinds = {row.name: row.kind for row in result.rows}
    assert kinds["__idle__"] == "idle" and kinds["__unallocated__"] == "unallocated"
    assert [row.kind for row in result.rows[-2:]] == ["unallocated", "idle"]
    nlp = next(row for row in result.rows if row.name == "nlp")
    assert nlp.previous is not None and nlp.previous.dollars == 0 and nlp.delta_ratio is None
    close(nlp.dollars, 3.0 * (at("2026-06-04T00:00:00") - at("2026-06-03T10:17:30")) / 3600, "nlp")


def test_each_row_query_alone_reproduces_its_figure(prometheus: Any) -> None:
    result = report(prometheus, "this-month", "project,user", "previous")
    api = PrometheusApi(PrometheusApiConfig(url=prometheus.url))
    for row in [*result.all_rows(), result.total]:
        for figure in (row.spend, row.previous, row.forecast):
            assert figure is not None and figure.query
            value = sum(sample.value for sample in api.query(figure.query, figure.at))
            assert value == pytest.approx(figure.dollars, rel=1e-9, abs=1e-9), figure.query


def test_top_folds_the_rest_into_other_and_keeps_the_sums(prometheus: Any) -> None:
    now = int(NOW)
    interval = parse_period("this-month", now, ZONE)
    request = ReportRequest(("job",), interval, "Europe/Berlin", top=2)
    result = build_report(PrometheusApi(PrometheusApiConfig(url=prometheus.url)), request, "x")
    names = [row.name for row in result.rows]
    assert names[2] == "(other)" and names[-1] == "__idle__" and len(names) == 4
    close(sum(row.dollars for row in result.rows), result.total.dollars, "rows with (other)")
    api = PrometheusApi(PrometheusApiConfig(url=prometheus.url))
    other = result.rows[2]
    assert sum(s.value for s in api.query(other.spend.query, other.spend.at)) == pytest.approx(other.dollars, rel=1e-9)


# --- the command: outputs, goldens, schema, chart, files, notifications, errors -----------------------


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["report", "--timezone=Europe/Berlin", f"--now={int(NOW)}", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def normalise(text: str, url: str) -> str:
    text = text.replace(url, "http://prometheus.example:9090")
    return re.sub(r'"generated_at": "[^"]+"', '"generated_at": "2026-06-07T10:00:00Z"', text)


GOLDEN_ARGS = ["--period=2026-06-01..2026-06-03", "--compare=previous", "--by=project,user"]


@pytest.mark.parametrize("output_format", ["csv", "json", "markdown"])
def test_outputs_match_the_golden_files(
    prometheus: Any, capsys: pytest.CaptureFixture[str], output_format: str
) -> None:
    code, out, err = run(
        capsys, f"--prometheus.url={prometheus.url}", *GOLDEN_ARGS, f"--format={output_format}", "--show-queries"
    )
    assert code == 0, err
    extension = {"csv": "csv", "json": "json", "markdown": "md"}[output_format]
    golden = GOLDEN / f"june-1-to-3-by-project-user.{extension}"
    text = normalise(out, prometheus.url)
    if not golden.exists():  # pragma: no cover - first run writes the file to review and commit
        golden.write_bytes(text.encode())
    assert text == golden.read_bytes().decode(), f"differs from {golden.name}; delete it and rerun to regenerate"


def test_json_follows_the_documented_schema(prometheus: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import jsonschema

    schema = json.loads((REPO / "schemas" / "report.schema.json").read_text())
    for args in (
        GOLDEN_ARGS,
        ["--period=this-month", "--by=cloud,market"],
        ["--period=this-month", "--by=job", "--top=1"],
    ):
        code, out, err = run(capsys, f"--prometheus.url={prometheus.url}", *args, "--format=json")
        assert code == 0, err
        document = json.loads(out)
        jsonschema.validate(document, schema)
        assert document["format_version"] == 1


def test_csv_opens_as_a_plain_table(prometheus: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import csv
    import io

    code, out, _ = run(
        capsys, f"--prometheus.url={prometheus.url}", "--period=this-month", "--by=project", "--format=csv"
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    items = [row for row in rows if row["row"] in ("item", "unallocated", "idle")]
    total = next(row for row in rows if row["row"] == "total")
    assert sum(float(row["spend_usd"]) for row in items) == pytest.approx(float(total["spend_usd"]), abs=1e-5)
    assert all(re.fullmatch(r"-?\d+\.\d{6}", row["spend_usd"]) for row in rows)


def test_table_on_a_terminal_is_aligned_with_money_formatted(
    prometheus: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, f"--prometheus.url={prometheus.url}", "--period=this-month", "--by=project")
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith(("vision", "nlp", "Total", "__idle__"))]
    assert len({len(line) for line in lines}) == 1, "columns are not aligned"
    assert re.search(r"Total\s+\$1,\d{3}\.\d{2}\s+100\.0%", out)
    assert "Forecast" in out and "run-rate" in out


def test_chart_is_a_non_empty_png(prometheus: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    chart = tmp_path / "june.png"
    code, _, err = run(
        capsys, f"--prometheus.url={prometheus.url}", "--period=this-month", "--by=project", f"--chart={chart}"
    )
    assert code == 0, err
    data = chart.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000


def test_chart_without_matplotlib_says_what_to_install(
    prometheus: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without the report extra sees
    code, _, err = run(
        capsys, f"--prometheus.url={prometheus.url}", "--period=2026-05", f"--chart={tmp_path / 'x.png'}"
    )
    assert code == 2
    assert "pip install 'raylens[report]'" in err and not (tmp_path / "x.png").exists()


def test_output_dir_writes_dated_files_atomically(
    prometheus: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "reports"
    for _ in range(2):  # a re-run of the same period replaces the files whole
        code, stdout, err = run(
            capsys, f"--prometheus.url={prometheus.url}", "--period=2026-05", f"--output-dir={out}", "--chart"
        )
        assert code == 0, err
    names = sorted(path.name for path in out.iterdir())
    stem = "raylens-report_2026-05_by-project"
    assert names == [f"{stem}.{ext}" for ext in ("csv", "json", "md", "png")], names
    assert stdout == ""
    assert json.loads((out / f"{stem}.json").read_text())["period"]["label"] == "2026-05"


def test_notify_posts_to_a_slack_compatible_and_a_generic_webhook(
    prometheus: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from services import running_sink

    with running_sink(tmp_path) as sink:
        urls = tmp_path / "webhooks"
        urls.write_text(f"# the team channel\nhttp://{sink.address}/slack\n")
        code, _, err = run(
            capsys,
            f"--prometheus.url={prometheus.url}",
            "--period=2026-05",
            f"--notify-url-file={urls}",
            f"--output-dir={tmp_path / 'out'}",
        )
        assert code == 0, err
        code, _, err = run(
            capsys,
            f"--prometheus.url={prometheus.url}",
            "--period=2026-05",
            f"--notify=http://{sink.address}/generic",
            "--notify-format=json",
            "--format=json",
        )
        assert code == 0, err
        received = {item["receiver"]: item for item in sink.notifications()}
    slack = received["slack"]
    assert slack["text"].startswith("*raylens cost report: May 2026") and "```" in slack["text"]
    assert re.search(r"Total\s+\$", slack["text"])
    generic = received["generic"]
    assert generic["kind"] == "raylens.report.notification" and generic["markdown"].startswith("# raylens cost report")
    assert generic["report"]["total"]["spend"]["dollars"] > 0


def test_a_webhook_that_refuses_fails_the_run_after_the_files_are_written(
    prometheus: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from raylens.stack.ports import free_port

    code, _, err = run(
        capsys,
        f"--prometheus.url={prometheus.url}",
        "--period=2026-05",
        f"--output-dir={tmp_path}",
        f"--notify=http://127.0.0.1:{free_port()}/secret-token-path",
    )
    assert code == 1
    assert "did not accept the report" in err and "secret-token-path" not in err
    assert (tmp_path / "raylens-report_2026-05_by-project.md").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by=job,workload"], "mix labels no single spend counter carries"),
        (["--by=project", "--instance-type=g5.xlarge"], "mix labels"),
        (["--by=region"], "--by: unknown region"),
        (["--period=2026-13"], "no month 13"),
        (["--period=next-month"], "unknown period 'next-month'"),
        (["--period=2026-06-03..2026-06-01"], "ends before it starts"),
        (["--period=2026-09"], "has not begun yet"),
        (["--compare=lastyear"], "unknown comparison"),
        (["--format=xlsx"], "--format"),
        (["--timezone=Mars/Olympus"], "IANA time zone"),
    ],
)
def test_bad_options_exit_2_with_one_clear_line(
    prometheus: Any, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run(capsys, f"--prometheus.url={prometheus.url}", *args)
    assert code == 2 and out == ""
    assert message in err and err.startswith("raylens report: ")


def test_unreachable_prometheus_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    from raylens.stack.ports import free_port

    code, out, err = run(capsys, f"--prometheus.url=http://127.0.0.1:{free_port()}")
    assert code == 1 and out == ""
    assert "cannot reach Prometheus at http://127.0.0.1:" in err


def test_data_that_do_not_add_up_exit_3_and_print_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with prometheus_with_history(tmp_path / "broken", [broken_scenario()]) as broken:
        code, out, err = run(capsys, f"--prometheus.url={broken.url}", "--period=2026-06-01..2026-06-03", "--by=job")
        assert code == 3 and out == ""
        assert "do not add up" in err and "the cluster total of the allocation counters" in err
        # The same data by project (one family) add up.
        code, out, err = run(capsys, f"--prometheus.url={broken.url}", "--period=2026-06-01..2026-06-03")
        assert code == 0, err


def test_runs_are_recorded_in_the_audit_trail(
    prometheus: Any, capsys: pytest.CaptureFixture[str], audit_log: Path
) -> None:
    run(capsys, f"--prometheus.url={prometheus.url}", "--period=2026-05", "--by=team")
    run(capsys, f"--prometheus.url={prometheus.url}", "--period=2026-13")
    records = [json.loads(line) for line in audit_log.read_text().splitlines()]
    assert [record["action"] for record in records] == ["report_run", "report_run"]
    assert records[0]["outcome"] == "ok" and records[0]["period"] == "2026-05" and records[0]["total_dollars"] > 0
    assert records[0]["prometheus"] == prometheus.url and records[0]["by"] == "team"
    assert records[1]["outcome"] == "failed" and records[1]["exit_code"] == 2


# --- authentication: basic auth over TLS on Prometheus itself, a bearer token through a proxy --------


def test_basic_auth_and_tls_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import bcrypt
    import yaml
    from test_exporter_http import make_certificate

    cert, _ = make_certificate(tmp_path)
    web = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": str(cert), "key_file": str(tmp_path / "server.key")},
                "basic_auth_users": {"finance": hashed},
            }
        )
    )
    small = Scenario(
        [
            Series(
                ALLOCATION,
                {"project": "vision", "user": "a", "team": "t", "workload": "tasks", "cost_kind": "compute"},
                [Segment(START, END, 1.0)],
            )
        ],
        START,
        END,
    )
    with prometheus_with_history(tmp_path / "tls", [small], web, "https", ("finance", "s3cret")) as secured:
        (tmp_path / "password").write_text("s3cret\n")
        (tmp_path / "wrong").write_text("guess\n")
        common = [
            f"--prometheus.url={secured.url}",
            f"--prometheus.tls.ca-file={cert}",
            "--period=2026-06-01..2026-06-01",
        ]
        code, out, err = run(
            capsys,
            *common,
            "--prometheus.basic-auth.username=finance",
            f"--prometheus.basic-auth.password-file={tmp_path / 'password'}",
        )
        assert code == 0, err
        assert re.search(r"vision\s+\$24\.00", out)
        code, _, err = run(
            capsys,
            *common,
            "--prometheus.basic-auth.username=finance",
            f"--prometheus.basic-auth.password-file={tmp_path / 'wrong'}",
        )
        assert code == 1 and "refused the request (HTTP 401)" in err
        code, _, err = run(capsys, f"--prometheus.url={secured.url}", "--period=2026-06-01..2026-06-01")
        assert code == 1 and "TLS handshake" in err


def test_bearer_token_file(prometheus: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from token_proxy import bearer_token_proxy

    token = tmp_path / "token"
    token.write_text("t0ken\n")
    with bearer_token_proxy(prometheus.url, "t0ken") as proxy:
        code, out, err = run(
            capsys, f"--prometheus.url={proxy}", f"--prometheus.bearer-token-file={token}", "--period=2026-05"
        )
        assert code == 0, err
        assert re.search(r"Total\s+\$", out)
        code, _, err = run(capsys, f"--prometheus.url={proxy}", "--period=2026-05")
        assert code == 1 and "HTTP 401" in err
    code, _, err = run(
        capsys, f"--prometheus.url={prometheus.url}", f"--prometheus.bearer-token-file={tmp_path / 'missing'}"
    )
    assert code == 2 and "prometheus.bearer_token_file" in err and "cannot read file" in err


def test_every_row_text_renders(prometheus: Any) -> None:
    result = report(prometheus, "this-month", "project,user,job", "previous")
    for output_format in ("table", "csv", "json", "markdown"):
        assert render(result, output_format).count("\n") > len(list(result.all_rows()))


def test_samples_exactly_on_the_boundary_are_counted_once(tmp_path: Path) -> None:
    """Prometheus 2.x ranges are closed [t - d, t], so a sample at midnight belongs to both days' windows;
    increase() measures between samples, so adjacent days still add up to the whole (3.x's left-open
    ranges give the sample to the earlier day only, with the same sums)."""
    begin, boundary, finish = at("2026-05-31T00:00:00"), at("2026-06-01T00:00:00"), at("2026-06-02T00:00:00")
    labels = {"project": "p", "user": "u", "team": "t", "workload": "tasks", "cost_kind": "compute"}
    series = Series(ALLOCATION, labels, [Segment(begin, boundary, 2.0), Segment(boundary, finish, 5.0)])
    aligned = Scenario([series], begin, finish, step=60, offset=0)
    assert boundary in aligned.sample_times()
    with prometheus_with_history(tmp_path / "aligned", [aligned]) as aligned_prometheus:
        api = PrometheusApi(PrometheusApiConfig(url=aligned_prometheus.url))
        now = int(finish)
        figures = {}
        for period in ("2026-05-31", "2026-06-01", "2026-05-31..2026-06-01"):
            request = ReportRequest(("project",), parse_period(period, now, ZONE), "Europe/Berlin")
            figures[period] = build_report(api, request, "x").total.dollars
    close(figures["2026-05-31"], 48.0, "31 May")
    close(figures["2026-06-01"], 120.0, "1 June")
    close(figures["2026-05-31"] + figures["2026-06-01"], figures["2026-05-31..2026-06-01"], "both days")


def test_two_clusters_in_one_prometheus_are_rows_of_their_own(tmp_path: Path) -> None:
    """Every series carries `cluster` (the exporter adds it): `--by cluster` splits spend per cluster,
    and `--cluster` keeps one, each figure the integral of that cluster's own spend."""
    from report_scenario import _allocation, always

    def cluster(name: str, rate: float) -> Scenario:
        series = [_allocation("vision", "alice", "ml", "train", "compute", always(rate))]
        return Scenario(series, START, END, target={"job": "raylens", "instance": f"{name}:9965", "cluster": name})

    east, west = cluster("east", 2.0), cluster("west", 0.5)
    with prometheus_with_history(tmp_path, [east, west]) as running:
        split = report(running, "2026-06-01..2026-06-03", "cluster")
        only_west = report(running, "2026-06-01..2026-06-03", "project", cluster="west")
    begin, finish = split.interval.start, split.interval.end
    rows = {row.name: row.dollars for row in split.rows}
    assert set(rows) == {"east", "west", "__idle__"} and rows["__idle__"] == 0, rows  # idle is always a row
    close(rows["east"], east.truth(begin, finish, metric=ALLOCATION), "east")
    close(rows["west"], west.truth(begin, finish, metric=ALLOCATION), "west")
    close(split.total.dollars, rows["east"] + rows["west"], "total")
    close(only_west.total.dollars, rows["west"], "--cluster west")
