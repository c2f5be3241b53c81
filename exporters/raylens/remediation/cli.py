"""``raylens remediate`` (the service) and ``raylens incidents list|show|postmortem|ack``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raylens.config import RaylensConfig, load_config

if TYPE_CHECKING:
    from raylens.remediation.store import Store


def default_database() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "raylens" / "incidents.sqlite"


def database_path(config: RaylensConfig) -> Path:
    return config.remediation.database or default_database()


def _config(args: argparse.Namespace, overrides: dict[tuple[str, ...], tuple[str, Any]] | None = None) -> RaylensConfig:
    return load_config(args.config_file, overrides=overrides)


def cmd_remediate(args: argparse.Namespace) -> int:
    from raylens.logs import configure_logging
    from raylens.remediation.auth import load_authentication
    from raylens.remediation.service import run_remediation
    from raylens.remediation.store import Store

    config = _config(
        args,
        {
            ("remediation", "listen_address"): ("flag --web.listen-address", args.listen_address),
            ("remediation", "dry_run"): ("flag --dry-run/--no-dry-run", args.dry_run),
            ("log", "level"): ("flag --log.level", args.log_level),
            ("log", "format"): ("flag --log.format", args.log_format),
        },
    )
    authenticator, web_config = load_authentication(config.remediation, str(args.config_file or "defaults"))
    configure_logging(config.log.level, config.log.format)
    run_remediation(config, Store(database_path(config)), authenticator, web_config)
    return 0


def _store(args: argparse.Namespace) -> Store:
    from raylens.remediation.store import Store

    path = args.db or database_path(_config(args))
    if not path.exists():
        print(f"raylens: no incident database at {path}; `raylens remediate` creates it", file=sys.stderr)
        raise SystemExit(2)
    return Store(path)


def _incident_or_exit(store: Store, incident_id: int) -> None:
    if store.incident(incident_id) is None:
        print(f"raylens: no incident {incident_id} in {store.path}", file=sys.stderr)
        raise SystemExit(2)


def cmd_incidents_list(args: argparse.Namespace) -> int:
    from raylens.remediation.postmortem import list_table

    store = _store(args)
    print(list_table(store.incidents(status=args.status, limit=args.limit), time.time()))
    return 0


def cmd_incidents_show(args: argparse.Namespace) -> int:
    from raylens.remediation.postmortem import show_text

    store = _store(args)
    _incident_or_exit(store, args.id)
    print(show_text(store, args.id, time.time()))
    return 0


def cmd_incidents_postmortem(args: argparse.Namespace) -> int:
    from raylens.audit import record
    from raylens.remediation.postmortem import postmortem_markdown

    store = _store(args)
    _incident_or_exit(store, args.id)
    markdown = postmortem_markdown(store, args.id, time.time())
    if args.output is None:
        print(markdown, end="")
        return 0
    args.output.write_text(markdown)
    record("incident_postmortem_written", incident_id=args.id, path=str(args.output))
    print(f"wrote {args.output}")
    return 0


def cmd_incidents_ack(args: argparse.Namespace) -> int:
    from raylens.audit import current_actor, record

    store = _store(args)
    _incident_or_exit(store, args.id)
    by = args.by or current_actor()
    if not store.acknowledge(args.id, by, time.time(), args.note or ""):
        print(f"incident {args.id} was already acknowledged")
        return 0
    record("incident_acknowledged", actor=by, incident_id=args.id, note=args.note or "")
    print(f"incident {args.id} acknowledged by {by}; it will not escalate further")
    return 0


def add_remediation_commands(commands: argparse._SubParsersAction) -> None:
    def config_flags(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--config.file",
            dest="config_file",
            type=Path,
            default=os.environ.get("RAYLENS_CONFIG_FILE") or None,
            help="raylens.yaml with a `remediation` section (default: $RAYLENS_CONFIG_FILE)",
        )

    remediate = commands.add_parser("remediate", help="receive Alertmanager webhooks: incidents and safe actions")
    config_flags(remediate)
    remediate.add_argument("--web.listen-address", dest="listen_address", help="host:port (default 127.0.0.1:9098)")
    remediate.add_argument(
        "--dry-run",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="record what actions would do and change nothing (default: remediation.dry_run, itself on)",
    )
    remediate.add_argument("--log.level", dest="log_level", help="debug, info, warning or error")
    remediate.add_argument("--log.format", dest="log_format", help="json (default) or text")
    remediate.set_defaults(handler=cmd_remediate)

    incidents = commands.add_parser("incidents", help="incidents recorded by `raylens remediate`")
    subcommands = incidents.add_subparsers(dest="incidents_command", required=True, metavar="SUBCOMMAND")
    parsers = {
        "list": subcommands.add_parser("list", help="recent incidents, newest first"),
        "show": subcommands.add_parser("show", help="one incident: scope, times, timeline, actions"),
        "postmortem": subcommands.add_parser("postmortem", help="a Markdown post-mortem draft"),
        "ack": subcommands.add_parser("ack", help="acknowledge an incident (stops its escalation)"),
    }
    for name, parser in parsers.items():
        config_flags(parser)
        parser.add_argument("--db", type=Path, help="incident database (default: remediation.database)")
        if name != "list":
            parser.add_argument("id", type=int, help="incident id (see `raylens incidents list`)")
    parsers["list"].add_argument("--status", choices=["open", "resolved"])
    parsers["list"].add_argument("--limit", type=int, default=50)
    parsers["postmortem"].add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    parsers["ack"].add_argument("--by", help="who acknowledges (default: your user name)")
    parsers["ack"].add_argument("--note", help="a line for the timeline")
    for name, handler in (
        ("list", cmd_incidents_list),
        ("show", cmd_incidents_show),
        ("postmortem", cmd_incidents_postmortem),
        ("ack", cmd_incidents_ack),
    ):
        parsers[name].set_defaults(handler=handler)
