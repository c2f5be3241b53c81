"""``raylens rules build``: regenerate alerting-rules/ and the jsonnet mixin from the typed config."""

from __future__ import annotations

import argparse
from pathlib import Path

from raylens.config import load_config
from raylens.rules.definitions import GROUPS
from raylens.rules.render import MIXIN_PATH, alert_files, mixin_source, write_alert_files
from raylens.stack.tools import bundle_root


def recording_rule_files(bundle: Path) -> list[str]:
    return sorted(str(path.relative_to(bundle)) for path in (bundle / "recording-rules").glob("*.yml"))


def build(bundle: Path, config_file: Path | None = None) -> list[Path]:
    alerts = load_config(config_file).alerts
    written = write_alert_files(bundle / "alerting-rules", alert_files(GROUPS, alerts))
    mixin = bundle / MIXIN_PATH
    mixin.parent.mkdir(exist_ok=True)
    mixin.write_text(mixin_source(GROUPS, alerts, recording_rule_files(bundle)))
    return [*written, mixin]


def cmd_rules_build(args: argparse.Namespace) -> int:
    for path in build(bundle_root(), args.config_file):
        print(f"wrote {path}")
    return 0


def add_rules_commands(commands: argparse._SubParsersAction) -> None:
    rules = commands.add_parser("rules", help="Prometheus rules as code")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True, metavar="SUBCOMMAND")
    build_parser = rules_commands.add_parser("build", help="regenerate alerting-rules/ and mixin/ from config")
    build_parser.add_argument(
        "--config.file", dest="config_file", type=Path, help="raylens.yaml with an alerts: section"
    )
    build_parser.set_defaults(handler=cmd_rules_build)
