"""``raylens logs``: search, follow and export Ray's logs across every node of a cluster.

raylens logs --list                                  # files per node and component
raylens logs --grep 'Traceback|ERROR' --since 1h     # every node, every component
raylens logs --job raysubmit_abc --component worker --format json --output job.jsonl.gz
raylens logs --follow --component serve_replica     # live, new files picked up as they appear
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

from raylens.config import load_config
from raylens.ray.address import DashboardLocator, RayUnavailable
from raylens.ray.logs.api import LogApi, LogApiError
from raylens.ray.logs.files import COMPONENTS
from raylens.ray.logs.output import RecordWriter
from raylens.ray.logs.records import LineFilter
from raylens.ray.logs.search import MAX_FOLLOWED_FILES, LogQuery, QueryError, follow, read_all, select_files
from raylens.ray.logs.timespec import parse_duration, parse_time

DEFAULT_FOLLOW_TAIL = 10


def add_logs_commands(commands: Any) -> None:
    parser = commands.add_parser(
        "logs",
        help="search, follow and export Ray's logs on every node",
        description="Read Ray's log files through the dashboard's log API, on every alive node.",
    )
    parser.add_argument("--config.file", dest="config_file", type=Path, help="raylens.yaml (for ray.address)")
    parser.add_argument("--ray.address", dest="address", help="dashboard URL, GCS host:port or auto")
    parser.add_argument("--list", action="store_true", help="list log files per node and component, read nothing")
    parser.add_argument("--node", action="append", default=[], help="node id (prefix) or IP; repeatable")
    parser.add_argument(
        "--component", action="append", default=[], choices=COMPONENTS, metavar="NAME", help=", ".join(COMPONENTS)
    )
    parser.add_argument("--job", default="", help="job id (02000000) or submission id")
    parser.add_argument("--actor", default="", help="actor id: its worker's files")
    parser.add_argument("--task", default="", help="task id: the lines that task printed")
    parser.add_argument("--grep", default=None, metavar="REGEX", help="keep lines matching (Python regex)")
    parser.add_argument("--ignore-case", "-i", action="store_true", help="--grep ignores case")
    parser.add_argument("--since", default=None, help="15m, 2h, 2026-12-06T22:00:00Z or Unix seconds")
    parser.add_argument("--until", default=None, help="same forms as --since")
    parser.add_argument("--tail", type=int, default=None, help=f"last N lines per file (follow: {DEFAULT_FOLLOW_TAIL})")
    parser.add_argument("--follow", "-f", action="store_true", help="stream new lines until interrupted")
    parser.add_argument(
        "--max-files",
        type=int,
        default=MAX_FOLLOWED_FILES,
        help=f"with --follow: files streamed at once (default {MAX_FOLLOWED_FILES}; Ray's state API serves 100 calls)",
    )
    parser.add_argument("--stop-after", default=None, metavar="DURATION", help="with --follow: stop after this long")
    parser.add_argument("--format", dest="output_format", choices=("text", "json"), default="text")
    parser.add_argument("--output", "-o", type=Path, default=None, help="write to FILE (.gz: gzip)")
    parser.set_defaults(handler=cmd_logs)


def _query(args: argparse.Namespace) -> tuple[LogQuery, float | None]:
    """The query, or ``ConfigError``-style one-line problems for bad flags."""
    now = time.time()
    try:
        flags = re.IGNORECASE if args.ignore_case else 0
        pattern = re.compile(args.grep, flags) if args.grep is not None else None
    except re.error as error:
        raise QueryError(f"--grep {args.grep!r}: expected a Python regular expression ({error})") from None
    since = until = stop_after = None
    for flag, value in (("--since", args.since), ("--until", args.until)):
        if value is None:
            continue
        try:
            parsed = parse_time(value, now)
        except ValueError as error:
            raise QueryError(f"{flag}: {error}") from None
        since, until = (parsed, until) if flag == "--since" else (since, parsed)
    if args.stop_after is not None:
        try:
            stop_after = parse_duration(args.stop_after)
        except ValueError as error:
            raise QueryError(f"--stop-after: {error}") from None
    if not 1 <= args.max_files <= 900:
        raise QueryError(f"--max-files: expected 1 to 900, got {args.max_files}")
    if args.tail is not None and args.tail < 0:
        raise QueryError(f"--tail: expected a number of lines >= 0, got {args.tail}")
    tail = args.tail if args.tail is not None else (DEFAULT_FOLLOW_TAIL if args.follow else -1)
    query = LogQuery(
        nodes=tuple(args.node),
        components=tuple(args.component),
        job=args.job,
        actor=args.actor,
        task=args.task,
        line_filter=LineFilter(pattern, since, until),
        tail=tail,
    )
    return query, stop_after


def _dashboard_url(args: argparse.Namespace) -> str:
    overrides = {("ray", "address"): ("flag --ray.address", args.address)}
    config = load_config(args.config_file, overrides=overrides)
    return DashboardLocator(config.ray.address, config.ray.temp_dir).url(config.ray.timeout_seconds + 10)


def cmd_logs(args: argparse.Namespace) -> int:
    try:
        query, stop_after = _query(args)
    except QueryError as error:
        print(f"raylens logs: {error}", file=sys.stderr)
        return 2
    if args.output is not None and not args.output.parent.is_dir():
        print(f"raylens logs: --output {args.output}: directory {args.output.parent} does not exist", file=sys.stderr)
        return 2
    try:
        api = LogApi(_dashboard_url(args))  # a ConfigError reaches main(): exit code 2
    except RayUnavailable as error:
        print(f"raylens logs: Ray unreachable: {error}", file=sys.stderr)
        return 1

    def warn(message: str) -> None:
        print(f"raylens logs: {message}", file=sys.stderr, flush=True)

    try:
        if args.list:
            return _list(api, query, args.output_format)
        writer = RecordWriter(args.output_format, args.output, flush_every_line=args.follow)
        try:
            if args.follow:
                stop = threading.Event()
                if stop_after is not None:
                    threading.Timer(stop_after, stop.set).start()
                try:
                    follow(api, query, writer, warn, stop, max_streams=args.max_files)
                except KeyboardInterrupt:
                    stop.set()
                return 0
            failed = read_all(api, query, writer, warn)
        finally:
            writer.close()
        return 1 if failed and writer.written == 0 else 0
    except QueryError as error:
        print(f"raylens logs: {error}", file=sys.stderr)
        return 2
    except LogApiError as error:
        print(f"raylens logs: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `raylens logs | head`: the reader left; stop quietly like other Unix tools.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces the closed pipe for interpreter exit
        return 0


def _list(api: LogApi, query: LogQuery, output_format: str) -> int:
    selection = select_files(api, query)
    for file in selection.files:
        if output_format == "json":
            print(json.dumps({key: value for key, value in file.__dict__.items() if value not in ("", None)}))
        else:
            ids = " ".join(
                f"{key}={value}"
                for key, value in (("job", file.job_id), ("submission", file.submission_id), ("pid", file.pid))
                if value
            )
            print(f"{file.node_ip:<15} {file.node_id[:8]} {file.component:<16} {file.name} {ids}".rstrip())
    return 0
