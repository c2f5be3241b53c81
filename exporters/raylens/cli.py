"""The ``raylens`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raylens import __version__
from raylens.config import ConfigError, RaylensConfig, load_config
from raylens.logs import configure_logging


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config.file",
        dest="config_file",
        type=Path,
        default=os.environ.get("RAYLENS_CONFIG_FILE") or None,
        help="raylens.yaml (default: $RAYLENS_CONFIG_FILE, else built-in defaults)",
    )


def _exporter_overrides(args: argparse.Namespace) -> dict[tuple[str, ...], tuple[str, Any]]:
    collectors = None
    if args.collectors is not None:
        collectors = [name.strip() for name in args.collectors.split(",") if name.strip()]
    return {
        ("exporter", "listen_address"): ("flag --web.listen-address", args.listen_address),
        ("exporter", "web_config_file"): ("flag --web.config.file", args.web_config_file),
        ("exporter", "collectors"): ("flag --collectors", collectors),
        ("exporter", "role"): ("flag --role", args.role),
        ("cluster", "name"): ("flag --cluster.name", args.cluster_name),
        ("log", "level"): ("flag --log.level", args.log_level),
        ("log", "format"): ("flag --log.format", args.log_format),
    }


def _load(args: argparse.Namespace, overrides: dict[tuple[str, ...], tuple[str, Any]]) -> RaylensConfig:
    return load_config(args.config_file, overrides=overrides)


def cmd_exporter(args: argparse.Namespace) -> int:
    from raylens import audit
    from raylens.exporter import load_exporter_web_config, run_exporter

    source = audit.file_fingerprint(args.config_file)
    try:
        config = _load(args, _exporter_overrides(args))
        web_config = load_exporter_web_config(config)
    except ConfigError as error:
        audit.record("config_loaded", "rejected", command="exporter", **source, problems=len(error.problems))
        raise
    audit.record("config_loaded", command="exporter", **source, collectors=list(config.exporter.collectors))
    configure_logging(config.log.level, config.log.format)
    run_exporter(config, web_config)
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from raylens.cost.files import check_config_files
    from raylens.exporter import load_exporter_web_config

    def check_main(path: Path) -> RaylensConfig:
        config = load_config(path)
        load_exporter_web_config(config)
        print(f"{path}: OK")
        print(config.model_dump_json(indent=2))
        return config

    # Main configs, budgets, quotas and pricing files, validated together (raylens.cost.files).
    result = check_config_files(args.files, check_main, strict=args.strict)
    for line in result.report:
        print(line)
    for warning in result.warnings:
        print(f"raylens: warning: {warning}", file=sys.stderr)
    return 0


def cmd_docs_build(args: argparse.Namespace) -> int:
    from raylens.reference import CONFIG_REFERENCE_PATH, config_reference_markdown
    from raylens.stack.tools import bundle_root

    target = bundle_root() / CONFIG_REFERENCE_PATH
    target.write_text(config_reference_markdown())
    print(f"wrote {target}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raylens", description="Observability and cost bundle for Ray clusters.")
    parser.add_argument("--version", action="version", version=f"raylens {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    exporter = commands.add_parser("exporter", help="serve /metrics for Prometheus")
    _add_config_flags(exporter)
    exporter.add_argument("--web.listen-address", dest="listen_address", help="host:port (default :9965)")
    exporter.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        help="exporter-toolkit web config for TLS and basic auth",
    )
    exporter.add_argument("--collectors", help="comma-separated collectors to enable (default: node)")
    exporter.add_argument("--role", choices=["node", "cluster", "all"], help="node: node,gpu; cluster: ray,cost; all")
    exporter.add_argument("--cluster.name", dest="cluster_name", help="the `cluster` label on every series")
    exporter.add_argument("--log.level", dest="log_level", help="debug, info, warning or error")
    exporter.add_argument("--log.format", dest="log_format", help="json (default) or text")
    exporter.set_defaults(handler=cmd_exporter)

    config = commands.add_parser("config", help="work with raylens.yaml")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    check = config_commands.add_parser("check", help="validate a config file without starting anything")
    check.add_argument(
        "files", type=Path, nargs="+", metavar="FILE", help="raylens.yaml, budgets.yaml, quotas.yaml, pricing files"
    )
    check.add_argument(
        "--strict",
        action="store_true",
        help="treat implausible money (a monthly price in usd_per_hour, a budget in cents) as an error",
    )
    check.set_defaults(handler=cmd_config_check)

    docs = commands.add_parser("docs", help="regenerate reference documentation from code")
    docs_commands = docs.add_subparsers(dest="docs_command", required=True, metavar="SUBCOMMAND")
    docs_commands.add_parser("build", help="write docs/config-reference.md").set_defaults(handler=cmd_docs_build)

    from raylens.rules.build import add_rules_commands
    from raylens.stack.cli import add_stack_commands

    add_rules_commands(commands)

    add_stack_commands(commands)

    from raylens.ray.cli import add_ray_commands

    add_ray_commands(commands)

    from raylens.dashboards.cli import add_dashboard_commands

    add_dashboard_commands(commands)

    from raylens.cost.explain import add_cost_commands
    from raylens.kubernetes import add_kubernetes_commands

    add_cost_commands(commands)
    add_kubernetes_commands(commands)

    from raylens.ray.logs.cli import add_logs_commands

    add_logs_commands(commands)

    # Reports and recommendations (issue #11).
    from raylens.recommend.cli import add_recommend_commands
    from raylens.report.cli import add_report_commands

    add_report_commands(commands)
    add_recommend_commands(commands)

    from raylens.remediation.cli import add_remediation_commands

    add_remediation_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as error:
        print(f"raylens: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
