"""The ``reports`` section: defaults of ``raylens report`` (docs/reports.md)."""

from __future__ import annotations

from pydantic import Field, field_validator

from raylens.config.alerts import Duration
from raylens.config.base import _Section
from raylens.config.cost import _check_timezone


class ReportsConfig(_Section):
    timezone: str | None = Field(
        None,
        description="IANA time zone in which report periods (days, weeks, months) begin; unset: cost.timezone, "
        "so reports and budgets cut months at the same instant.",
    )
    forecast_window: Duration = Field(
        "24h",
        description="Run-rate window of the period-end forecast (spend so far + the mean rate over this window x "
        "the time left). Lengthen it (7d) to smooth weekly cycles; shorter follows changes faster.",
    )
    check_tolerance_percent: float = Field(
        0.1,
        ge=0,
        le=10,
        description="How far the sum over jobs or nodes may drift from the cluster total (two metric families "
        "scraped together, extrapolated separately) before `raylens report` refuses to print; rows of one "
        "family must always add up exactly.",
    )
    top: int = Field(
        0,
        ge=0,
        description="Rows shown per level, largest first; the rest are folded into one `(other)` row so totals "
        "still add up. 0 shows every row.",
    )

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return _check_timezone(value) if value is not None else value
