"""``raylens cost explain node|job ID``: how a node's or a job's cost was computed.

Reads what the exporter saved in ``cost.state_dir``: the spend state (written every scrape) and the
explain log (written every minute): price source, market, split, and a job's shares of each node over
time. Users distrust cost numbers they cannot trace; this prints the trace.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from raylens.config import CostConfig, load_config
from raylens.cost.pricing import GIB, NodePrice
from raylens.cost.state import EXPLAIN_FILE, STATE_FILE, EngineState, StateShapeError, default_state_dir, read_json
from raylens.files import FileRefused


class ExplainError(Exception):
    pass


def _when(timestamp: float | None, zone: ZoneInfo) -> str:
    if timestamp is None:
        return "now"
    return datetime.fromtimestamp(timestamp, zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _duration(elapsed: float) -> str:
    seconds = max(0, round(elapsed))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    parts += [f"{hours}h"] if hours or days else []
    return " ".join([*parts, f"{minutes}m", f"{seconds}s"])


def _load(state_dir: Path) -> tuple[EngineState, dict[str, Any]]:
    try:
        data = read_json(state_dir / STATE_FILE)
        if data is None:
            raise ExplainError(f"no cost state in {state_dir}: is the cost collector running with this state_dir?")
        state = EngineState.from_json(data)
        explain = read_json(state_dir / EXPLAIN_FILE) or {"jobs": {}, "nodes": {}}
    except FileRefused as error:
        raise ExplainError(str(error)) from None
    except StateShapeError as error:
        raise ExplainError(f"{state_dir / STATE_FILE}: not a cost state this version wrote: {error}") from None
    if not isinstance(explain, dict):
        raise ExplainError(f"{state_dir / EXPLAIN_FILE}: expected a JSON object")
    return state, explain


def explain_node(node_id: str, state: EngineState, explain: dict[str, Any], zone: ZoneInfo) -> str:
    record = state.nodes.get(node_id)
    details = explain.get("nodes", {}).get(node_id)
    if record is None and details is None:
        known = ", ".join(sorted(state.nodes)[:10]) or "none"
        raise ExplainError(f"node {node_id} is not in the cost state (known: {known})")
    lines = [f"node {node_id}"]
    if details is not None:
        price = NodePrice.from_dict(details["price"])
        head = " (head)" if details.get("is_head") else ""
        lines.append(f"  address:        {details.get('ip') or 'unknown'}{head}")
        start, end = details.get("start"), details.get("end")
        if start is not None:
            alive_until = end if end is not None else state.time
            lines.append(
                f"  alive:          {_when(start, zone)} -> {_when(end, zone)} "
                f"({_duration((alive_until or start) - start)})"
            )
        lines.append(f"  instance type:  {price.instance_type or 'unknown'} (from {price.instance_type_source or '-'})")
        lines.append(f"  market:         {price.market} (from {price.market_source or '-'})")
        lines.append(
            f"  cloud, region:  {price.cloud or 'unknown'}, {price.region or 'unknown'}"
            + (f" (region from {price.region_source})" if price.region_source else "")
        )
        if price.priced:
            lines.append(
                f"  price:          {price.usd_per_hour:.6g} USD/h = {price.dollars_per_second:.6g} USD/s "
                f"(pricing source: {price.pricing_source})"
            )
            lines.append(f"  figure:         {price.reference or '-'}")
            cpu, gpu, memory_bytes = (details.get("capacity") or [0.0, 0.0, 0.0])[:3]
            lines.append(f"  split:          {price.split_source}")
            for name, amount, unit, dollars in (
                ("cpu", cpu, "CPU", price.cpu_usd_per_hour),
                ("gpu", gpu, "GPU", price.gpu_usd_per_hour),
                ("memory", memory_bytes / GIB, "GiB", price.memory_usd_per_hour),
            ):
                per_unit = f" = {dollars / amount:.6g} USD per {unit}-hour of Ray's {amount:g}" if amount else ""
                lines.append(f"    {name:<7} {dollars:.6g} USD/h{per_unit}")
        else:
            lines.append(f"  price:          UNPRICED: {price.unpriced_reason}")
        for note in price.notes:
            lines.append(f"  note:           {note}")
    if record is not None:
        compute, storage, network = record.dollars
        lines.append(
            f"  spent:          {compute + storage + network:.6g} USD (compute {compute:.6g}, storage {storage:.6g}, "
            f"network {network:.6g}), accounted up to {_when(record.until, zone)}"
        )
        lines.append("  method:         price x seconds alive (Ray's node start/end times), integrated by the exporter")
    return "\n".join(lines)


def explain_job(job_id: str, state: EngineState, explain: dict[str, Any], zone: ZoneInfo) -> str:
    record = state.jobs.get(job_id)
    segments = explain.get("jobs", {}).get(job_id)
    if record is None and segments is None:
        known = ", ".join(sorted(state.jobs)[:10]) or "none"
        raise ExplainError(f"job {job_id} is not in the cost state (known: {known})")
    lines = [f"job {job_id}"]
    if record is not None:
        if record.submission_id:
            lines.append(f"  submission id:  {record.submission_id}")
        lines.append(f"  user:           {record.user}")
        lines.append(f"  project:        {record.project}")
        lines.append(f"  team:           {record.team}")
        source = {
            "metadata": "from job metadata",
            "inferred": "inferred from its tasks' and actors' names",
            "default": "default: nothing identified Serve, Train or Data",
        }.get(record.workload_source, record.workload_source)
        lines.append(f"  workload:       {record.workload} ({source})")
        lines.append(f"  spent:          {record.dollars:.6g} USD, accounted up to {_when(state.time, zone)}")
    lines.append(
        "  method:         per node, share = resource held (max of held and used; memory follows CPU when "
        "usage is unknown) / node capacity, per resource; cost = share x that resource's part of the node price"
    )
    nodes = explain.get("nodes", {})
    for where, rows in sorted((segments or {}).items()):
        node_id = where.split(" ", 1)[0]
        details = nodes.get(node_id)
        header = f"  on node {where}"
        if details is not None:
            price = NodePrice.from_dict(details["price"])
            rate = f"{price.usd_per_hour:.6g} USD/h" if price.priced else "UNPRICED"
            header += (
                f" ({price.instance_type or 'unknown type'}, {price.market}, {rate}; see `explain node {node_id}`)"
            )
        lines.append(header)
        lines.append("    from                      to                        cpu     gpu     memory  dollars")
        for start, end, cpu, gpu, memory, dollars in rows:
            lines.append(
                f"    {_when(start, zone):<25} {_when(end, zone):<25} {cpu:6.1%}  {gpu:6.1%}  {memory:6.1%}  "
                f"{dollars:.6g}"
            )
    if not segments:
        lines.append("  (no share history saved yet: the explain log is written every minute)")
    return "\n".join(lines)


def _state_dir(args: argparse.Namespace) -> tuple[Path, CostConfig]:
    config = load_config(args.config_file).cost
    return args.state_dir or config.state_dir or default_state_dir(), config


def cmd_cost_explain(args: argparse.Namespace) -> int:
    state_dir, config = _state_dir(args)
    zone = ZoneInfo(config.timezone)
    try:
        state, explain = _load(state_dir)
        text = (explain_node if args.what == "node" else explain_job)(args.id, state, explain, zone)
    except ExplainError as error:
        print(f"raylens: {error}")
        return 1
    print(text)
    return 0


def add_cost_commands(commands: argparse._SubParsersAction) -> None:
    cost = commands.add_parser("cost", help="inspect cost accounting")
    cost_commands = cost.add_subparsers(dest="cost_command", required=True, metavar="SUBCOMMAND")
    explain = cost_commands.add_parser("explain", help="print how a node's or a job's cost was computed")
    explain.add_argument("what", choices=("node", "job"))
    explain.add_argument("id", help="Ray node id, or Ray job id (hex, e.g. 02000000)")
    explain.add_argument(
        "--config.file",
        dest="config_file",
        type=Path,
        default=os.environ.get("RAYLENS_CONFIG_FILE") or None,
        help="raylens.yaml, for cost.state_dir and cost.timezone (default: $RAYLENS_CONFIG_FILE)",
    )
    explain.add_argument("--state-dir", type=Path, help="overrides cost.state_dir")
    explain.set_defaults(handler=cmd_cost_explain)
