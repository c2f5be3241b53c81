"""``raylens rules build``: regenerate alerting-rules/ and the jsonnet mixin from the typed config.

Budget threshold alerts are generated from a budgets file: ``--budgets``, else the config's
``cost.budgets_file``, else the sample ``examples/budgets.yaml`` (what the committed
``alerting-rules/budgets.yml`` and the mixin's ``_config.budgets`` hold).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from raylens.config import load_config
from raylens.cost.budgets import Budget
from raylens.rules.budgets import SAMPLE_BUDGETS, budgets_for, load_budgets_file
from raylens.rules.definitions import alert_groups
from raylens.rules.render import MIXIN_PATH, alert_files, mixin_source, write_alert_files
from raylens.stack.tools import bundle_root


def recording_rule_files(bundle: Path) -> list[str]:
    return sorted(str(path.relative_to(bundle)) for path in (bundle / "recording-rules").glob("*.yml"))


def sample_budgets(bundle: Path) -> tuple[Budget, ...]:
    return load_budgets_file(bundle / SAMPLE_BUDGETS)


def build(bundle: Path, config_file: Path | None = None, budgets_file: Path | None = None) -> list[Path]:
    config = load_config(config_file)
    if budgets_file is not None:
        budgets = load_budgets_file(budgets_file, config.cost.pricing_files)
    elif config.cost.budgets_file is not None:
        budgets = budgets_for(config.cost)
    else:
        budgets = sample_budgets(bundle)
    groups = alert_groups(budgets)
    written = write_alert_files(bundle / "alerting-rules", alert_files(groups, config.alerts))
    mixin = bundle / MIXIN_PATH
    mixin.parent.mkdir(exist_ok=True)
    mixin.write_text(mixin_source(groups, config.alerts, recording_rule_files(bundle)))
    return [*written, mixin]


def cmd_rules_build(args: argparse.Namespace) -> int:
    from raylens import audit

    try:
        written = build(bundle_root(), args.config_file, args.budgets_file)
    except Exception as error:
        audit.record("rules_built", "failed", **audit.file_fingerprint(args.config_file), error=str(error)[:500])
        raise
    for path in written:
        print(f"wrote {path}")
    audit.record(
        "rules_built",
        **audit.file_fingerprint(args.config_file),
        budgets_file=str(args.budgets_file) if args.budgets_file else None,
        files=[str(path) for path in written],
    )
    return 0


def add_rules_commands(commands: argparse._SubParsersAction) -> None:
    rules = commands.add_parser("rules", help="Prometheus rules as code")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True, metavar="SUBCOMMAND")
    build_parser = rules_commands.add_parser("build", help="regenerate alerting-rules/ and mixin/ from config")
    build_parser.add_argument(
        "--config.file", dest="config_file", type=Path, help="raylens.yaml with an alerts: section"
    )
    build_parser.add_argument(
        "--budgets",
        dest="budgets_file",
        type=Path,
        help="budgets.yaml to generate the budget threshold alerts from; default: the config's "
        "cost.budgets_file, else examples/budgets.yaml",
    )
    build_parser.set_defaults(handler=cmd_rules_build)
