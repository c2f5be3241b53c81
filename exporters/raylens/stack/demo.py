"""The demo `raylens up` runs on a fresh local cluster: prices, budgets and quotas for it.

The jobs themselves (a Serve app under steady load, Data and Train runs, a spill and a failing job,
for two projects and four users) are kept going by ``raylens.stack.demo_loop``.
"""

from __future__ import annotations

from pathlib import Path

from raylens.stack.ports import free_port

WORKLOADS = Path(__file__).resolve().parents[1] / "demo"
WORKER_PORT_RANGE = range(10002, 20000)


def free_serve_port() -> int:
    """A loopback port for Serve's HTTP proxy outside the range Ray hands to its workers."""
    port = free_port()
    while port in WORKER_PORT_RANGE:
        port = free_port()
    return port


# The local head describes itself the way cloud nodes do, so the cost engine prices it from the
# demo pricing file like any other instance type.
LOCAL_NODE_LABELS = {"raylens.io/instance-type": "local-demo", "ray.io/market-type": "on-demand"}


# Budget alerts wait this long in the demo (production default: alerts.budget_threshold_for, 5m).
DEMO_BUDGET_THRESHOLD_FOR = "30s"

# A deliberately high demo price, so spend moves visibly within minutes on a laptop.
DEMO_USD_PER_HOUR = 36.0


def demo_pricing(cpus: int, memory_gib: float) -> dict:
    return {
        "format_version": 1,
        "instance_types": [
            {
                "instance_type": "local-demo",
                "cloud": "onprem",
                "vcpus": cpus,
                "memory_gib": round(memory_gib, 1),
                "gpus": 0,
                "usd_per_hour": DEMO_USD_PER_HOUR,
                "source": "raylens demo figure (not a real price): $36/h so spend moves within minutes",
                "as_of": "2026-11-25",
            }
        ],
    }


def demo_budgets() -> dict:
    return {
        "budgets": [
            {"name": "org-monthly", "scope": "org", "amount_usd": 5000, "period": "month"},
            {"name": "vision-daily", "scope": "project", "match": "vision", "amount_usd": 50, "period": "day"},
            # Small on purpose: the Serve demo crosses 50/80/100 % of it within a few minutes.
            {"name": "search-daily", "scope": "project", "match": "search", "amount_usd": 0.1, "period": "day"},
            {"name": "alice-daily", "scope": "user", "match": "alice", "amount_usd": 20, "period": "day"},
        ]
    }


def demo_quotas() -> dict:
    return {
        "quotas": [
            {"name": "cpus-per-project", "scope": "project", "match": "*", "resource": "cpus", "limit": 2},
            {"name": "gpus-per-user", "scope": "user", "match": "*", "resource": "gpus", "limit": 1},
        ]
    }


# A root disk on the head, so the storage cost kind has spend too.
DEMO_VOLUME = {"name": "root-disk", "size_gib": 100, "usd_per_gib_month": 0.08}


def apply_demo_settings(config: dict, state_dir: Path) -> dict:
    """Price the local head and set sample budgets and quotas, from files written into the state folder."""
    import psutil
    import yaml

    demo_dir = state_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    pricing = demo_dir / "pricing.yaml"
    budgets = demo_dir / "budgets.yaml"
    cpus = max(2, psutil.cpu_count() or 2)
    pricing.write_text(yaml.safe_dump(demo_pricing(cpus, psutil.virtual_memory().total / 2**30), sort_keys=False))
    budgets.write_text(yaml.safe_dump(demo_budgets(), sort_keys=False))
    quotas = demo_dir / "quotas.yaml"
    quotas.write_text(yaml.safe_dump(demo_quotas(), sort_keys=False))
    cost = config.setdefault("cost", {})
    cost["pricing_files"] = [*cost.get("pricing_files", []), str(pricing)]
    cost.setdefault("budgets_file", str(budgets))
    cost.setdefault("quotas_file", str(quotas))
    if not cost.get("volumes"):  # the stack's config dump carries the default, an empty list
        cost["volumes"] = [DEMO_VOLUME]
    cost.setdefault("state_dir", str(state_dir / "cost"))
    return config
