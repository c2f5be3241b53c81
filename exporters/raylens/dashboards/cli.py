"""``raylens dashboards build|check|diff|render``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _needs_grafanalib() -> int | None:
    try:
        import grafanalib  # noqa: F401
        import jsonschema  # noqa: F401
    except ImportError as error:
        print(f"raylens dashboards needs its extra: pip install 'raylens[dashboards]' ({error})", file=sys.stderr)
        return 2
    return None


def cmd_build(args: argparse.Namespace) -> int:
    if (missing := _needs_grafanalib()) is not None:
        return missing
    from raylens.dashboards.build import build_dashboards, expected_files, write_files
    from raylens.stack.tools import bundle_root

    bundle = bundle_root()
    built = build_dashboards(bundle)
    changed = write_files(bundle, expected_files(bundle, built))
    for path in changed:
        print(f"wrote {path.relative_to(bundle)}" if path.exists() else f"removed {path.relative_to(bundle)}")
    print(f"{len(built)} dashboards, {len(changed)} files changed")
    from raylens import audit

    audit.record(
        "dashboards_built",
        dashboards=[dashboard.key for dashboard in built],
        changed=[str(path.relative_to(bundle)) for path in changed],
    )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Offline checks CI runs too: freshness, schema, invariants, PromQL syntax."""
    if (missing := _needs_grafanalib()) is not None:
        return missing
    from raylens.dashboards.build import build_dashboards, stale_files
    from raylens.dashboards.validate import (
        SCHEMA_PATH,
        all_values,
        invariant_problems,
        iter_queries,
        promtool_problems,
        schema_errors,
    )
    from raylens.stack.tools import bundle_root, find_tool

    bundle = bundle_root()
    problems = [f"stale: {line} (run `raylens dashboards build`)" for line in stale_files(bundle)]
    promtool = find_tool("promtool")
    for built in build_dashboards(bundle):
        problems += [f"{built.key}: schema: {error}" for error in schema_errors(built.json, bundle / SCHEMA_PATH)]
        problems += invariant_problems(built.json)
        if promtool:
            problems += promtool_problems(iter_queries(built.json), all_values(built.json), promtool)
    if not promtool:
        problems.append("promtool not found: PromQL not checked")
    for problem in problems:
        print(problem)
    print("dashboards: OK" if not problems else f"dashboards: {len(problems)} problems")
    return 1 if problems else 0


def cmd_diff(args: argparse.Namespace) -> int:
    from raylens.dashboards.diff import diff_revisions
    from raylens.stack.tools import bundle_root

    lines = diff_revisions(bundle_root(), args.old, args.new)
    print("\n".join(lines) if lines else "no dashboard changes")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    try:
        from raylens.dashboards.render import render_dashboards
    except ImportError as error:
        print(f"raylens dashboards render needs matplotlib: pip install 'raylens[render]' ({error})", file=sys.stderr)
        return 2
    from raylens.stack.tools import bundle_root

    written = render_dashboards(
        bundle_root(),
        args.prometheus,
        args.output,
        keys=args.dashboard or None,
        minutes=args.minutes,
        panels=args.panels,
    )
    for path in written:
        print(f"wrote {path}")
    return 0


def add_dashboard_commands(commands: argparse._SubParsersAction) -> None:
    dashboards = commands.add_parser("dashboards", help="build, check, diff and render the Grafana dashboards")
    sub = dashboards.add_subparsers(dest="dashboards_command", required=True, metavar="SUBCOMMAND")

    sub.add_parser(
        "build", help="regenerate provisioning/grafana/dashboards/ and docs/dashboards/ from dashboards/"
    ).set_defaults(handler=cmd_build)
    sub.add_parser("check", help="stale files, schema, invariants and PromQL syntax (offline)").set_defaults(
        handler=cmd_check
    )

    diff = sub.add_parser(
        "diff",
        help="semantic diff of the generated dashboards between two revisions, for review",
        description="OLD and NEW are git revisions (HEAD, main, a1b2c3) or folders holding dashboard "
        "JSON; NEW defaults to the working tree. Prints panels added, removed and moved, and changed "
        "queries, units, thresholds and variables.",
    )
    diff.add_argument("old", nargs="?", default="HEAD", help="git revision or folder (default: HEAD)")
    diff.add_argument("new", nargs="?", default=None, help="git revision or folder (default: working tree)")
    diff.set_defaults(handler=cmd_diff)

    render = sub.add_parser(
        "render",
        help="draw PNG previews of dashboards from a live Prometheus (needs raylens[render])",
    )
    render.add_argument("--prometheus", required=True, help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    render.add_argument("--output", type=Path, default=Path("docs/dashboards/img"), help="folder for PNGs")
    render.add_argument("--dashboard", action="append", help="dashboard key (repeatable; default: all)")
    render.add_argument("--minutes", type=float, default=15, help="time range ending now (default: 15)")
    render.add_argument(
        "--panels", action="store_true", help="also write one PNG per panel, beside the dashboard picture"
    )
    render.set_defaults(handler=cmd_render)

    from raylens.dashboards.tenants import add_tenant_command

    add_tenant_command(sub)
