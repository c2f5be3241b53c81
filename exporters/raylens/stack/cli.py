"""``raylens up`` and ``raylens down``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from raylens.ray.address import RayUnavailable
from raylens.stack.demo_loop import DEFAULT_CYCLE_SECONDS
from raylens.stack.processes import StartError
from raylens.stack.tools import MissingToolError, bundle_root
from raylens.stack.up import Stack, StackOptions, default_state_dir, say_now, stop_recorded


def cmd_up(args: argparse.Namespace) -> int:
    options = StackOptions(
        state_dir=args.state_dir,
        allow_install=not args.no_install,
        scrape_interval=args.scrape_interval,
        config_file=args.config_file,
        ray_address=args.ray_address or os.environ.get("RAY_ADDRESS") or None,
        demo=args.demo,
        demo_duration_seconds=args.demo_duration,
        remediate=args.remediate,
        demo_cycle_seconds=args.demo_cycle,
    )
    try:
        stack = Stack(options)
        urls = stack.up()
    except (StartError, MissingToolError, RayUnavailable) as error:
        say_now(f"raylens up failed: {error}")
        return 1
    say_now("\nraylens is up:")
    for name, url in urls.items():
        say_now(f"  {name:<11} {url}")
    say_now(f"  {'logs':<11} {options.state_dir / 'logs'}")
    say_now(f"  {'incidents':<11} raylens incidents list --db {options.state_dir / 'incidents.sqlite'}")
    say_now("Try: curl -s '" + urls["prometheus"] + "/api/v1/query?query=instance:raylens_node_cpu_utilisation:rate5m'")
    say_now("     raylens status" + ("" if args.state_dir == default_state_dir() else f" --state-dir {args.state_dir}"))
    say_now(grafana_instructions(urls["prometheus"], urls.get("alertmanager")))
    try:
        stack.serve_until_stopped()
    finally:
        stack.down()
    return 0


def grafana_instructions(prometheus_url: str, alertmanager_url: str | None) -> str:
    """How to see the dashboards: no Grafana ships here (Docker users: `docker compose up`)."""
    dashboards = bundle_root() / "provisioning" / "grafana" / "dashboards"
    lines = [
        "Grafana: point an existing Grafana (10+) at this stack:",
        f"  1. add a Prometheus data source with URL {prometheus_url} (uid raylens-prometheus)",
    ]
    if alertmanager_url:
        lines.append(f"  2. optionally an Alertmanager data source with URL {alertmanager_url}")
    lines.append(f"  3. import the dashboards in {dashboards}/*/*.json (Dashboards > New > Import),")
    lines.append("     or copy provisioning/grafana/ into Grafana's provisioning folder and edit the data source URL.")
    lines.append("  With Docker available, `docker compose up` runs the whole stack with Grafana on :3000.")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    from raylens.stack.status import print_status

    return print_status(args.state_dir, as_json=args.json)


def cmd_down(args: argparse.Namespace) -> int:
    return 1 if stop_recorded(args.state_dir) else 0


def add_stack_commands(commands: argparse._SubParsersAction) -> None:
    up = commands.add_parser("up", help="run the local stack on loopback until Ctrl-C")
    up.add_argument(
        "--state-dir",
        type=Path,
        default=default_state_dir(),
        help="logs, data and PIDs (default: %(default)s)",
    )
    up.add_argument(
        "--no-install", action="store_true", help="never install missing tools; fail with the command to run"
    )
    up.add_argument(
        "--scrape-interval", default="5s", help="Prometheus scrape and rule interval (default: %(default)s)"
    )
    up.add_argument("--config.file", dest="config_file", type=Path, help="raylens.yaml: alert thresholds, cost, ray")
    up.add_argument(
        "--ray-address", help="attach to this cluster (GCS address or dashboard URL) instead of a local head"
    )
    up.add_argument(
        "--demo",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="submit sample jobs (default: on for a local head, off when attaching)",
    )
    up.add_argument(
        "--demo-duration",
        type=float,
        default=0.0,
        help="seconds the demo keeps generating work; 0 (default): until the stack stops",
    )
    up.add_argument(
        "--demo-cycle",
        type=float,
        default=DEFAULT_CYCLE_SECONDS,
        help="seconds between resubmissions of the demo's Data, Train, spill and failing jobs (default: %(default)s)",
    )
    up.add_argument(
        "--remediate",
        action="store_true",
        help="let `raylens remediate` act on alerts (default: it records dry runs only)",
    )
    up.set_defaults(handler=cmd_up)

    status = commands.add_parser("status", help="is it working? components, targets, alerts, spend, budgets")
    status.add_argument("--state-dir", type=Path, default=default_state_dir())
    status.add_argument(
        "--json", action="store_true", help="one JSON object for external checkers; exit 1 unless healthy"
    )
    status.set_defaults(handler=cmd_status)

    down = commands.add_parser("down", help="stop what `raylens up` started, by PID")
    down.add_argument("--state-dir", type=Path, default=default_state_dir())
    down.set_defaults(handler=cmd_down)
