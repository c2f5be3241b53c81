"""``raylens report``: spend by project, team, user, job, ... over a calendar period, from Prometheus.

Exit codes: 0 printed; 1 Prometheus could not be read or a webhook refused the report; 2 bad options
or configuration; 3 the data disagree with themselves (the sums do not add up), so nothing was printed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from raylens.prometheus_flags import add_prometheus_flags, load_with_prometheus_flags
from raylens.report.periods import PeriodError
from raylens.report.queries import DIMENSIONS, UsageError

FILTERS = ("cluster", "cloud", "project", "team", "user", "job", "workload", "instance_type", "market", "cost_kind")
EXIT_PROMETHEUS, EXIT_USAGE, EXIT_CHECK = 1, 2, 3


def _duration_seconds(text: str) -> int:
    import re

    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise UsageError(f"expected a duration such as 24h or 7d, got {text!r}")
    return max(1, int(sum(int(number) * units[unit] for number, unit in parts)))


# "Now" is taken this long ago: a scrape's samples carry its start time but land when it ends, so the
# last seconds can change between two queries of one report (and its sums would not add up).
SETTLE_SECONDS = 60


def _parse_now(text: str | None, zone: ZoneInfo) -> int:
    if not text:
        return math.floor(time.time()) - SETTLE_SECONDS
    try:
        return math.floor(float(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--now: expected Unix seconds or an ISO date-time, got {text!r}") from None
    return math.floor((moment if moment.tzinfo else moment.replace(tzinfo=zone)).timestamp())


def _dimensions(text: str) -> tuple[str, ...]:
    dimensions = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in dimensions if name not in DIMENSIONS]
    if not dimensions or unknown:
        raise UsageError(
            f"--by: unknown {', '.join(unknown) or 'nothing'}; expected a comma list of {', '.join(DIMENSIONS)}"
        )
    if len(set(dimensions)) != len(dimensions):
        raise UsageError("--by: each dimension at most once")
    return dimensions


def _formats(text: str | None, to_directory: bool) -> list[str]:
    from raylens.report.render import FORMATS

    if text is None:
        return ["csv", "json", "markdown"] if to_directory else ["table"]
    formats = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in formats if name not in FORMATS]
    if not formats or unknown:
        raise UsageError(f"--format: expected {', '.join(FORMATS)} (a comma list with --output-dir), got {text!r}")
    if len(formats) > 1 and not to_directory:
        raise UsageError("--format: several formats need --output-dir (stdout takes one)")
    return formats


def cmd_report(args: argparse.Namespace) -> int:
    from raylens import audit

    started = time.monotonic()
    details: dict[str, object] = {"period": args.period, "by": args.by}
    try:
        code, details = _run(args, details)
    except BaseException as error:
        audit.record("report_run", outcome="failed", error=f"{type(error).__name__}: {error}", **details)
        raise
    details["seconds"] = round(time.monotonic() - started, 3)
    audit.record("report_run", outcome="ok" if code == 0 else "failed", exit_code=code, **details)
    return code


def _run(args: argparse.Namespace, details: dict[str, object]) -> tuple[int, dict[str, object]]:
    from raylens.config import ConfigError
    from raylens.prometheus_api import PrometheusApi, PrometheusError
    from raylens.report.build import ReportCheckError, ReportRequest, build_report
    from raylens.report.deliver import NOTIFY_FORMATS, NotifyError, describe_url, notify, report_stem, write_atomically
    from raylens.report.periods import parse_compare, parse_period
    from raylens.report.render import render

    try:
        config = load_with_prometheus_flags(args)
        zone_name = args.timezone or config.reports.timezone or config.cost.timezone
        try:
            zone = ZoneInfo(zone_name)
        except Exception:
            raise UsageError(
                f"--timezone: expected an IANA time zone such as Europe/Berlin, got {zone_name!r}"
            ) from None
        now = _parse_now(args.now, zone)
        interval = parse_period(args.period, now, zone)
        compare = parse_compare(args.compare, interval, now, zone) if args.compare else None
        filters = {
            name: [v for value in values for v in value.split(",") if v]
            for name in FILTERS
            if (values := getattr(args, f"filter_{name}"))
        }
        forecast_text = args.forecast_window or config.reports.forecast_window
        forecast_seconds = None if args.no_forecast else _duration_seconds(forecast_text)
        formats = _formats(args.format, args.output_dir is not None)
        for path in args.notify_url_file or ():
            if not path.is_file():
                raise UsageError(f"--notify-url-file: cannot read {path}")
        if args.notify_format not in NOTIFY_FORMATS:
            raise UsageError(f"--notify-format: expected {' or '.join(NOTIFY_FORMATS)}")
        request = ReportRequest(
            dimensions=_dimensions(args.by),
            interval=interval,
            timezone=zone_name,
            filters=filters,
            selector=tuple(args.selector or ()),
            compare=compare,
            forecast_window_seconds=forecast_seconds,
            forecast_window_text=forecast_text,
            top=config.reports.top if args.top is None else args.top,
            tolerance_percent=config.reports.check_tolerance_percent,
        )
        if args.chart is not None:
            from raylens.report.chart import ChartUnavailable, require_matplotlib

            try:
                require_matplotlib()  # before anything is written: nothing half-done
            except ChartUnavailable as error:
                raise UsageError(str(error)) from None
        api = PrometheusApi(config.prometheus, str(args.config_file) if args.config_file else "command line")
    except (UsageError, PeriodError) as error:
        print(f"raylens report: {error}", file=sys.stderr)
        return EXIT_USAGE, details
    except ConfigError:
        raise
    details.update(prometheus=config.prometheus.url, period=interval.label, filters=filters)

    generated = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        report = build_report(api, request, generated)
    except UsageError as error:
        print(f"raylens report: {error}", file=sys.stderr)
        return EXIT_USAGE, details
    except PrometheusError as error:
        print(f"raylens report: {error}", file=sys.stderr)
        return EXIT_PROMETHEUS, details
    except ReportCheckError as error:
        print(f"raylens report: {error}", file=sys.stderr)
        return EXIT_CHECK, details
    details.update(total_dollars=round(report.total.dollars, 6), queries=report.queries_run)

    outputs: list[str] = []
    if args.output_dir is not None:
        stem = report_stem(report)
        from raylens.report.deliver import EXTENSIONS

        for name in formats:
            path = write_atomically(
                args.output_dir / f"{stem}.{EXTENSIONS[name]}", render(report, name, args.show_queries)
            )
            outputs.append(str(path))
    else:
        sys.stdout.write(render(report, formats[0], args.show_queries))
    if args.chart is not None:
        from raylens.report.chart import ChartUnavailable, write_chart

        if args.chart:
            chart = Path(args.chart)
            if args.output_dir is not None and not chart.is_absolute():
                chart = args.output_dir / chart
        else:
            chart = (args.output_dir or Path(".")) / f"{report_stem(report)}.png"
        try:
            outputs.append(str(write_chart(api, report, chart)))
        except ChartUnavailable as error:
            print(f"raylens report: {error}", file=sys.stderr)
            return EXIT_USAGE, details
        except PrometheusError as error:
            print(f"raylens report: chart: {error}", file=sys.stderr)
            return EXIT_PROMETHEUS, details
    for path in outputs:
        print(f"wrote {path}", file=sys.stderr)
    details["outputs"] = outputs
    failed = 0
    notified = []
    for url in _webhooks(args):
        try:
            notify(url, report, args.notify_format)
            notified.append(describe_url(url))
        except NotifyError as error:
            print(f"raylens report: {error}", file=sys.stderr)
            failed += 1
    details["notified"] = notified
    return (EXIT_PROMETHEUS if failed else 0), details


def _webhooks(args: argparse.Namespace) -> list[str]:
    """--notify URLs and the URLs in --notify-url-file files (one a line; # comments), which keep the
    secret in a webhook's path out of the process list and shell history."""
    urls = list(args.notify or ())
    for path in args.notify_url_file or ():
        urls += [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return urls


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    add_prometheus_flags(parser)
    scope = parser.add_argument_group("what to report")
    scope.add_argument(
        "--by",
        default="project",
        help=f"a dimension, or a comma list for a tree (project,user,job): {', '.join(DIMENSIONS)} (default project)",
    )
    for name in FILTERS:
        scope.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"filter_{name}",
            action="append",
            metavar="VALUE",
            help=f"only this {name.replace('_', ' ')} (repeat or comma-separate for several)",
        )
    scope.add_argument(
        "--selector",
        action="append",
        metavar="MATCHER",
        help="extra PromQL label matcher on every series read, e.g. 'cluster=\"prod\"' (repeatable)",
    )
    when = parser.add_argument_group("when")
    when.add_argument(
        "--period",
        default="this-month",
        help="this-month (default), last-month, this-week, last-week, today, yesterday, YYYY-MM, YYYY-MM-DD, FROM..TO",
    )
    when.add_argument(
        "--compare", help="previous, same-last-year or FROM..TO: adds previous, change and change %% columns"
    )
    when.add_argument("--timezone", help="IANA zone periods begin in (default reports.timezone, else cost.timezone)")
    when.add_argument("--now", help="evaluate relative periods as of this instant (Unix seconds or ISO date-time)")
    when.add_argument(
        "--forecast-window", help="run-rate window of the period-end forecast (default reports.forecast_window)"
    )
    when.add_argument("--no-forecast", action="store_true", help="leave out the period-end forecast")
    output = parser.add_argument_group("output")
    output.add_argument(
        "--format", help="table (default on stdout), csv, json, markdown; a comma list with --output-dir"
    )
    output.add_argument("--top", type=int, help="rows per level, the rest as (other) (default reports.top; 0: all)")
    output.add_argument("--show-queries", action="store_true", help="list the PromQL query behind every figure")
    output.add_argument(
        "--output-dir", type=Path, help="write dated files there atomically (default formats csv,json,markdown)"
    )
    output.add_argument("--chart", nargs="?", const="", metavar="PNG", help="also draw a PNG (needs raylens[report])")
    output.add_argument("--notify", action="append", metavar="URL", help="POST the report to this webhook (repeatable)")
    output.add_argument(
        "--notify-url-file", action="append", type=Path, metavar="FILE", help="webhook URLs, one a line (keeps secrets)"
    )
    output.add_argument(
        "--notify-format", default="slack", help="slack (default: {text}, Slack-compatible) or json (markdown + report)"
    )


def add_report_commands(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report",
        help="cost report by project, team, user, job, ... from Prometheus (table, CSV, JSON, Markdown, PNG)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_report_arguments(parser)
    parser.set_defaults(handler=cmd_report)
