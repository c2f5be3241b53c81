"""``raylens recommend``: what to change to spend less, with the dollars and the PromQL behind each figure.

Exit codes: 0 (with or without recommendations); 1 Prometheus could not be read for some kind;
2 bad options or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from raylens.config import RECOMMENDATION_KINDS
from raylens.prometheus_flags import add_prometheus_flags, load_with_prometheus_flags

if TYPE_CHECKING:  # the engine imports every kind and the catalog: only when the command runs
    from raylens.recommend.engine import Outcome

FORMATS = ("table", "json", "markdown")


def _money(value: float) -> str:
    return f"${value:,.2f}"


def render_table(outcome: Outcome, source: str, evidence: bool) -> str:
    items = outcome.all()
    when = datetime.fromtimestamp(outcome.at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"raylens savings recommendations at {when} from {source}", ""]
    if not items:
        lines.append("No recommendations: nothing found above recommendations.min_savings_dollars_per_month.")
    else:
        rows = [("Kind", "Target", "Saves/month", "Saves/hour", "Why")]
        rows += [
            (
                item.kind,
                item.target,
                _money(item.savings_dollars_per_month),
                f"${item.savings_dollars_per_hour:,.4f}",
                item.summary,
            )
            for item in items
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for index, row in enumerate(rows):
            cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]), row[3].rjust(widths[3])]
            lines.append("  ".join([*cells, row[4]]))
            if index == 0:
                lines.append("-" * (sum(widths) + 8 + 40))
        lines += [
            "",
            "Kinds can overlap on one node (right-size it, or move it to spot): the savings are alternatives, "
            "not a sum.",
        ]
    for kind, error in sorted(outcome.errors.items()):
        lines.append(f"error: {kind}: {error}")
    if evidence:
        for item in items:
            lines += ["", f"{item.kind} {item.target}: {item.action}"]
            lines += [f"  {entry.what} = {entry.value:g}\n    {entry.query}" for entry in item.evidence]
    return "\n".join(lines) + "\n"


def render_markdown(outcome: Outcome, source: str) -> str:
    when = datetime.fromtimestamp(outcome.at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# raylens savings recommendations, {when}", "", f"From {source}.", ""]
    lines += ["| Kind | Target | Saves per month | What to do | Why |", "|---|---|---:|---|---|"]
    for item in outcome.all():
        cells = [item.kind, item.target, _money(item.savings_dollars_per_month), item.action, item.summary]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def render_json(outcome: Outcome, source: str) -> str:
    document = {
        "kind": "raylens.recommendations",
        "format_version": 1,
        "at_unix": outcome.at,
        "source": source,
        "currency": "USD",
        "hours_per_month": 730,
        "recommendations": [item.as_dict() for item in outcome.all()],
        "found": outcome.found,
        "errors": outcome.errors,
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def cmd_recommend(args: argparse.Namespace) -> int:
    from raylens import audit
    from raylens.prometheus_api import PrometheusApi
    from raylens.recommend.engine import run_recommendations

    config = load_with_prometheus_flags(args)
    settings = config.recommendations
    updates: dict[str, object] = {}
    if args.kind:
        kinds = tuple(dict.fromkeys(part for value in args.kind for part in value.split(",") if part))
        unknown = [kind for kind in kinds if kind not in RECOMMENDATION_KINDS]
        if unknown:
            expected = ", ".join(RECOMMENDATION_KINDS)
            print(f"raylens recommend: --kind: unknown {', '.join(unknown)}; expected {expected}", file=sys.stderr)
            return 2
        updates["kinds"] = kinds
    if args.top is not None:
        updates["top_per_kind"] = max(1, args.top)
    if updates:
        config = config.model_copy(update={"recommendations": settings.model_copy(update=updates)})
    at = None
    if args.now:
        try:
            at = float(args.now)
        except ValueError:
            at = datetime.fromisoformat(args.now).replace(tzinfo=UTC).timestamp()
    api = PrometheusApi(config.prometheus, str(args.config_file) if args.config_file else "command line")
    started = time.monotonic()
    outcome = run_recommendations(api, config, at=at)
    output = {
        "table": lambda: render_table(outcome, api.url, args.evidence),
        "json": lambda: render_json(outcome, api.url),
        "markdown": lambda: render_markdown(outcome, api.url),
    }[args.format]()
    sys.stdout.write(output)
    failed = bool(outcome.errors)
    for kind, error in outcome.errors.items():
        print(f"raylens recommend: {kind}: {error}", file=sys.stderr)
    audit.record(
        "recommend_run",
        outcome="failed" if failed else "ok",
        prometheus=api.url,
        found={kind: len(items) for kind, items in outcome.recommendations.items()},
        savings_dollars_per_month=round(sum(item.savings_dollars_per_month for item in outcome.all()), 2),
        seconds=round(time.monotonic() - started, 3),
    )
    return 1 if failed else 0


def add_recommend_commands(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "recommend",
        help="savings recommendations (idle GPUs, right-sizing, spot, idle clusters, Serve replicas) with dollars",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_prometheus_flags(parser)
    parser.add_argument(
        "--kind",
        action="append",
        help=f"only these kinds (repeat or comma-separate): {', '.join(RECOMMENDATION_KINDS)}",
    )
    parser.add_argument("--top", type=int, help="per kind (default recommendations.top_per_kind)")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument(
        "--evidence", action="store_true", help="print each recommendation's action and PromQL evidence"
    )
    parser.add_argument("--now", help="evaluate as of this instant (Unix seconds or ISO date-time, UTC)")
    parser.set_defaults(handler=cmd_recommend)
