"""Valid but implausible money (raylens.cost.plausibility): warnings from `raylens config check` that name
the file, the field and the likely unit mistake, errors with `--strict`, and log lines at start-up."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import pytest
import yaml

from raylens.cli import main
from raylens.config import CostConfig, load_config
from raylens.cost.budgets import validate_budgets
from raylens.cost.catalog import load_catalog
from raylens.cost.loading import load_cost_setup
from raylens.cost.plausibility import budget_warnings, price_warnings, spend_rate
from raylens.cost.state import STATE_FILE, EngineState, NodeRecord, write_json_atomically


def config_check(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["config", "check", *args])
    return code, err.getvalue()


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


MONTHLY_PRICE = {"instance_types": [{"instance_type": "m5.4xlarge", "region": "us-east-1", "usd_per_hour": 445.3}]}


def test_a_monthly_price_in_usd_per_hour_warns_and_strict_refuses(tmp_path: Path) -> None:
    pricing = write(tmp_path / "pricing.yaml", MONTHLY_PRICE)
    code, err = config_check(str(pricing))
    assert code == 0
    [line] = err.splitlines()
    assert line.startswith(
        f"raylens: warning: {pricing}: instance_types: m5.4xlarge (us-east-1).usd_per_hour: got 445.3"
    )
    assert "580 times the catalog's price for m5.4xlarge (0.768 USD/h)" in line
    assert "likely a monthly price: 445.3 ÷ 730 = 0.61 USD/h" in line

    code, err = config_check("--strict", str(pricing))
    assert code == 2 and "invalid configuration:" in err and "likely a monthly price" in err


def test_plausible_overrides_say_nothing(tmp_path: Path) -> None:
    pricing = write(
        tmp_path / "pricing.yaml",
        {
            "instance_types": [
                {"instance_type": "m5.4xlarge", "usd_per_hour": 0.70, "spot_usd_per_hour": 0.30},
                {"instance_type": "z1.big", "cloud": "aws", "vcpus": 64, "memory_gib": 512, "usd_per_hour": 120},
            ],
            "resource_prices": [{"name": "onprem", "usd_per_cpu_hour": 0.03, "usd_per_memory_gib_hour": 0.004}],
        },
    )
    assert config_check("--strict", str(pricing)) == (0, "")


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            {"instance_type": "x9.mega", "cloud": "aws", "vcpus": 8, "memory_gib": 32, "usd_per_hour": 64_000},
            "723 times the catalog's most expensive type (a3-highgpu-8g, 88.49 USD/h); likely a monthly price",
        ),
        (
            {"instance_type": "g5.xlarge", "usd_per_hour": 1.0, "spot_usd_per_hour": 2.0},
            "above the on-demand price 1; spot capacity costs less",
        ),
        (
            {"instance_type": "g5.xlarge", "usd_per_hour": 100.6},
            "100 times the catalog's price for g5.xlarge (1.006 USD/h); likely cents: 100.6 ÷ 100 = 1.006 USD/h",
        ),
    ],
)
def test_instance_price_mistakes_name_the_likely_unit(row: dict, expected: str, tmp_path: Path) -> None:
    pricing = write(tmp_path / "pricing.yaml", {"instance_types": [row]})
    code, err = config_check(str(pricing))
    assert code == 0 and expected in err, err


def test_a_resource_price_far_above_the_catalog_warns(tmp_path: Path) -> None:
    pricing = write(
        tmp_path / "pricing.yaml",
        {
            "resource_prices": [
                {
                    "name": "lab",
                    "usd_per_cpu_hour": 0.02,
                    "usd_per_memory_gib_hour": 0.003,
                    "usd_per_gpu_hour": {"A100": 2920},
                }
            ]
        },
    )
    code, err = config_check(str(pricing))
    assert code == 0 and "resource_prices: lab.usd_per_gpu_hour.A100: got 2920" in err
    assert "likely a monthly price: 2,920 ÷ 730 = 4 USD/h" in err


def state_with_rate(usd_per_hour: float) -> EngineState:
    """A cluster whose one alive node has cost ``usd_per_hour`` for the last 10 hours."""
    state = EngineState(time=36_000.0)
    state.nodes["n1"] = NodeRecord(0.0, None, 36_000.0, [usd_per_hour * 10, 0.0, 0.0], None, 36_000.0, [])
    return state


def test_budgets_out_of_proportion_to_the_spend_rate_warn(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    write_json_atomically(state_dir / STATE_FILE, state_with_rate(2.0).to_json())  # 1,460 USD a month
    budgets = write(
        tmp_path / "budgets.yaml",
        {
            "budgets": [
                {"name": "sane", "scope": "org", "amount_usd": 5_000},
                {"name": "in-cents", "scope": "project", "match": "vision", "amount_usd": 5_000_000},
                {"name": "tiny", "scope": "org", "amount_usd": 0.3, "period": "week"},
            ]
        },
    )
    config = write(tmp_path / "raylens.yaml", {"cost": {"state_dir": str(state_dir), "budgets_file": str(budgets)}})
    code, err = config_check(str(config), str(budgets))
    warnings = [line for line in err.splitlines() if line.startswith("raylens: warning:")]
    assert code == 0
    # Each budget file is reached twice (named by the config and on the command line): one warning each.
    assert len(warnings) == 2, err
    assert (
        f"{budgets}: budgets.1.amount_usd: got 5000000.0: 3,425 times what the cluster spends 1,460.00 USD a month"
        in err
    )
    assert "cents typed as dollars (50,000.00 USD)" in err
    assert f"{budgets}: budgets.2.amount_usd: got 0.3: gone in 9 minutes" in err

    # Without a known spend rate there is nothing to compare with: no budget warnings.
    assert budget_warnings(validate_budgets(yaml.safe_load(budgets.read_text()), "b", []), "b", None) == []


def test_spend_rate_reads_alive_nodes_only() -> None:
    state = state_with_rate(3.0)
    state.nodes["dead"] = NodeRecord(0.0, 100.0, 100.0, [50.0, 0.0, 0.0], None, 100.0, [])
    assert spend_rate(state) == pytest.approx(3.0)
    assert spend_rate(EngineState()) is None and spend_rate(None) is None


def test_start_up_logs_each_warning_and_still_starts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pricing = write(tmp_path / "pricing.yaml", MONTHLY_PRICE)
    config_path = tmp_path / "raylens.yaml"
    config_path.write_text(
        json.dumps({"cost": {"state_dir": str(tmp_path / "state"), "pricing_files": [str(pricing)]}})
    )
    with caplog.at_level(logging.WARNING, logger="raylens.cost"):
        setup = load_cost_setup(load_config(config_path, environ={}).cost)
    assert setup.engine is not None
    [record] = [r for r in caplog.records if "implausible money" in r.getMessage()]
    assert record.file == str(pricing) and record.field.endswith("usd_per_hour")  # type: ignore[attr-defined]
    assert "likely a monthly price" in record.why  # type: ignore[attr-defined]


def test_the_shipped_catalog_alone_is_plausible() -> None:
    assert price_warnings(load_catalog()) == []
    assert CostConfig()  # defaults need no pricing file
