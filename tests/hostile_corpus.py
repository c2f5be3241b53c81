"""Hostile files for every file raylens reads, and files at each count limit.

Shared by tests/test_hostile_files.py (every case through ``config check`` and exporter start-up) and
benchmarks/hostile_inputs.py / benchmarks/config_check_limits.py (the figures in docs/reliability.md).
Each ``Case`` writes its file into a directory and names the role the file plays, so exporter start-up
can reach it the way a user would: as ``--config.file``, as a budgets, quotas or pricing file named by
the config, or as ``--web.config.file``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from raylens.config.limits import MAX_BUDGETS, MAX_QUOTAS, MAX_ROLES
from raylens.stack.ports import free_port

CONFIG, BUDGETS, QUOTAS, PRICING, WEB = "config", "budgets", "quotas", "pricing", "web"


@dataclass(frozen=True)
class Case:
    name: str
    role: str  # how exporter start-up reaches the file
    what: str  # one line for docs/reliability.md
    expected: str  # a fragment of the one-line refusal
    write: Callable[[Path], Path]  # writes the file into a directory, returns its path


def _bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def write(directory: Path) -> Path:
        path = directory / name
        path.write_bytes(data)
        return path

    return write


def billion_laughs(prefix: str = "") -> str:
    """Nine levels of nine aliases each: 9^9 = 387 million strings once expanded, 700 bytes on disk."""
    lines = [f'{prefix}a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{prefix}{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "\n".join(lines) + "\n"


def budgets_yaml(count: int, name_length: int = 12) -> str:
    rows = [
        {
            "name": f"budget-{index:0{name_length}d}",
            "scope": "project",
            "match": f"project-{index}",
            "amount_usd": 1000 + index,
            "period": ("day", "week", "month")[index % 3],
            "thresholds_percent": [50, 80, 100],
        }
        for index in range(count)
    ]
    return yaml.safe_dump({"budgets": rows}, sort_keys=False)


def quotas_yaml(count: int) -> str:
    role_count = min(count, MAX_ROLES)
    roles = {f"role-{index}": [f"user-{index}-{member}" for member in range(5)] for index in range(role_count)}
    quotas = [
        {
            "name": f"quota-{index}",
            "scope": ("user", "project", "team", "role")[index % 4],
            "match": f"role-{index % role_count}" if index % 4 == 3 else f"name-{index}",
            "resource": ("gpus", "cpus", "instances")[index % 3],
            "limit": 8 + index,
            "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "20:00"}],
        }
        for index in range(count)
    ]
    return yaml.safe_dump({"roles": roles, "quotas": quotas}, sort_keys=False)


def pricing_yaml(rows: int, resource_prices: int = 0) -> str:
    regions = ("us-east-1", "us-east-2", "us-west-1", "us-west-2", "eu-west-1")
    instance_types = [
        {
            "instance_type": f"x{index // len(regions)}.large",
            "cloud": "aws",
            "region": regions[index % len(regions)],
            "vcpus": 4,
            "memory_gib": 16,
            "gpus": 0,
            "usd_per_hour": round(0.1 + (index % 97) / 100, 3),
            "spot_usd_per_hour": 0.05,
            "source": "https://aws.amazon.com/ec2/pricing/on-demand/",
            "as_of": "2026-01-15",
        }
        for index in range(rows)
    ]
    prices = [
        {"name": f"onprem-{index}", "usd_per_cpu_hour": 0.03, "usd_per_memory_gib_hour": 0.004}
        for index in range(resource_prices)
    ]
    return yaml.safe_dump({"instance_types": instance_types, "resource_prices": prices}, sort_keys=False)


def main_config_yaml(node_rules: int, state_dir: Path) -> str:
    rules = [
        {"match": {"labels": {"ray.io/node-group": f"group-{index}"}}, "instance_type": "m5.xlarge", "market": "spot"}
        for index in range(node_rules)
    ]
    return yaml.safe_dump({"cost": {"state_dir": str(state_dir), "node_rules": rules}}, sort_keys=False)


def _text(name: str, text: str) -> Callable[[Path], Path]:
    return _bytes(name, text.encode("utf-8"))


def _directory(directory: Path) -> Path:
    path = directory / "config-dir.yaml"
    path.mkdir(exist_ok=True)
    return path


def _dev_zero(_directory: Path) -> Path:
    return Path("/dev/zero")


def _fifo(directory: Path) -> Path:
    path = directory / "fifo.yaml"
    if not path.exists():
        os.mkfifo(path)
    return path


CASES: tuple[Case, ...] = (
    Case(
        "bomb-config",
        CONFIG,
        "YAML billion laughs (9 levels x 9 aliases) as raylens.yaml",
        "expand past 200,000 nodes",
        _text("bomb.yaml", billion_laughs()),
    ),
    Case(
        "bomb-budgets",
        BUDGETS,
        "the same bomb inside budgets.yaml",
        "expand past 200,000 nodes",
        _text("bomb-budgets.yaml", "budgets: []\n" + billion_laughs()),
    ),
    Case(
        "binary",
        CONFIG,
        "4 kB of random bytes (an ELF or gzip given by mistake)",
        "binary file",
        _bytes("binary.yaml", b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 16),
    ),
    Case(
        "latin-1",
        PRICING,
        "a pricing file saved as Latin-1 (a lone 0xE9 for é)",
        "not UTF-8",
        _bytes("latin1.yaml", b"instance_types:\n  - instance_type: caf\xe9.large\n"),
    ),
    Case(
        "utf-16",
        QUOTAS,
        "quotas.yaml saved as UTF-16 with a byte-order mark",
        "UTF-16",
        _bytes("utf16.yaml", "quotas: []\n".encode("utf-16")),
    ),
    Case(
        "control-character",
        QUOTAS,
        "a BEL control character inside a value",
        "not valid YAML",
        _text("control.yaml", 'quotas:\n  - name: "a\x07b"\n'),
    ),
    Case(
        "huge-file",
        BUDGETS,
        "6 MB budgets.yaml of 29,000 budgets (over the 4 MiB size limit)",
        "the limit is 4 MiB",
        _text("huge.yaml", budgets_yaml(29_000, name_length=80)),
    ),
    Case(
        "too-many-budgets",
        BUDGETS,
        f"{MAX_BUDGETS + 1:,} budgets (one over the limit)",
        f"expected at most {MAX_BUDGETS:,} budgets",
        _text("many-budgets.yaml", budgets_yaml(MAX_BUDGETS + 1)),
    ),
    Case(
        "too-many-quotas",
        QUOTAS,
        f"{MAX_QUOTAS + 1:,} quotas (one over the limit)",
        f"expected at most {MAX_QUOTAS:,} quotas",
        _text("many-quotas.yaml", quotas_yaml(MAX_QUOTAS + 1)),
    ),
    Case(
        "too-many-nodes",
        PRICING,
        "a 2.6 MB flow list of 1.3 million numbers (under the size limit)",
        "more than 200,000 nodes",
        _text("nodes.yaml", "instance_types: [" + "1," * 1_300_000 + "1]\n"),
    ),
    Case(
        "deep-sequence",
        CONFIG,
        "500 nested flow sequences [[[[…]]]]",
        "nested deeper than 32 levels",
        _text("deep.yaml", "exporter: " + "[" * 500 + "]" * 500 + "\n"),
    ),
    Case(
        "deeper-sequence",
        CONFIG,
        "10,000 nested flow sequences (past libyaml's own limit of 1,000)",
        "exceeded maximum nesting depth",
        _text("deeper.yaml", "exporter: " + "[" * 10_000 + "]" * 10_000 + "\n"),
    ),
    Case(
        "deep-mapping",
        WEB,
        "web config with 200 nested block mappings",
        "nested deeper than 32 levels",
        _text("deep-web.yaml", "".join(f"{'  ' * depth}k{depth}:\n" for depth in range(200)) + "  " * 200 + "v\n"),
    ),
    Case(
        "tabs",
        CONFIG,
        "indentation with a tab",
        "a tab: YAML indents with spaces only",
        _text("tabs.yaml", "exporter:\n\tlisten_address: ':9965'\n"),
    ),
    Case(
        "duplicate-key",
        CONFIG,
        "two `cost:` sections (the first would be silently dropped)",
        "duplicate key 'cost' (first at line 1)",
        _text("duplicate.yaml", "cost:\n  timezone: UTC\nlog:\n  level: info\ncost:\n  timezone: Europe/Berlin\n"),
    ),
    Case(
        "recursive-alias",
        BUDGETS,
        "an anchor that contains an alias to itself",
        "recursive alias *loop",
        _text("recursive.yaml", "budgets: &loop\n  - *loop\n"),
    ),
    Case(
        "undefined-alias",
        WEB,
        "an alias to no anchor",
        "alias *nowhere names no anchor",
        _text("undefined.yaml", "basic_auth_users: *nowhere\n"),
    ),
    Case(
        "huge-integer",
        BUDGETS,
        "an amount of 10,000 digits",
        "not valid YAML: Exceeds the limit",
        _text("huge-int.yaml", "budgets:\n  - {name: a, scope: org, amount_usd: " + "9" * 10_000 + "}\n"),
    ),
    Case(
        "top-level-list",
        CONFIG,
        "a YAML list where a mapping of sections belongs",
        "expected a mapping of sections at the top level",
        _text("list.yaml", "- exporter\n- cost\n"),
    ),
    Case(
        "top-level-scalar",
        WEB,
        "a bare string as the web config",
        "expected a mapping of sections at the top level",
        _text("scalar-web.yaml", "just some text\n"),
    ),
    Case(
        "wrong-shape",
        BUDGETS,
        "`budgets: yes` (a boolean where a list belongs)",
        "budgets: got True: expected a valid list",
        _text("shape.yaml", "budgets: yes\n"),
    ),
    Case(
        "huge-value",
        BUDGETS,
        "a 3 MB string as a budget's amount (the error quotes 200 characters of it)",
        "(3,000,000 characters): expected a valid number",
        _text(
            "huge-value.yaml",
            json.dumps({"budgets": [{"name": "a", "scope": "org", "amount_usd": "9" * 2_999_999 + "x"}]}),
        ),
    ),
    Case("directory", CONFIG, "a directory given as the config file", "not a regular file", _directory),
    Case("dev-zero", BUDGETS, "/dev/zero as budgets.yaml (endless)", "not a regular file", _dev_zero),
    Case("fifo", PRICING, "a named pipe as a pricing file (would block forever)", "not a regular file", _fifo),
)


def exporter_argv(case: Case, path: Path, tmp_path: Path) -> list[str]:
    """``python -m raylens exporter`` reaching ``path`` in the case's role (a config written to tmp_path)."""
    argv = [sys.executable, "-m", "raylens", "exporter", f"--web.listen-address=127.0.0.1:{free_port()}"]
    if case.role == CONFIG:
        return [*argv, f"--config.file={path}", "--collectors=node"]
    if case.role == WEB:
        return [*argv, f"--web.config.file={path}", "--collectors=node"]
    cost: dict[str, object] = {"state_dir": str(tmp_path / "state")}
    cost[{BUDGETS: "budgets_file", QUOTAS: "quotas_file"}.get(case.role, "pricing_files")] = (
        [str(path)] if case.role == PRICING else str(path)
    )
    config = tmp_path / "raylens.yaml"
    config.write_text(json.dumps({"cost": cost}))
    return [*argv, f"--config.file={config}", "--collectors=cost"]
