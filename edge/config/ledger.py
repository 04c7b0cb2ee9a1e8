"""The ``[ledger]`` section: where the ledger is, how it batches, and how long each table keeps its rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, TypeGuard

from pydantic import Field, ValidationInfo, field_validator, model_validator

from edge.config.base import Section

# Decisions and exposures keep pseudonymous shopper ids: a year and a month allows a year-on-year comparison;
# anything longer belongs in the cloud's own retention, not on a store's SD card.
MAX_RETENTION_DAYS: Final = 400
# What ``retention_days`` always covered, and so what it still sets when a table's own key is not written.
HISTORY_TABLES: Final = (
    "decisions_days",
    "exposures_days",
    "device_settings_days",
    "staff_interactions_days",
)
DEFAULT_HISTORY_DAYS: Final = 90
# The audit of exports (the right of access): a request may take three months to answer (one month, plus two
# for a complex one), so an audit row must outlive that; three years is the usual limitation period for a
# claim about how a request was handled, and past that the store has no reason to keep it.
MIN_AUDIT_DAYS: Final = 90
MAX_AUDIT_DAYS: Final = 1_100
# Dead letters may name a shopper (measurement); they wait for an operator's export, and a quarter is plenty
# for someone to notice the alert.
MAX_DEAD_LETTER_DAYS: Final = 90
# A collected order waits only for the cloud's delete (minutes once its event is pushed); past a quarter the
# cloud has lost it, and the row (a shopper id and an order reference) has no use left.
MAX_COLLECTED_ORDER_DAYS: Final = 90


class RetentionSettings(Section):
    """``[ledger.retention]``: how long each history table keeps a row (docs/ledger.md "Retention").

    The tables that hold state rather than history (consents, keys, the outbox, tombstones, ...) have rules,
    not numbers: docs/ledger.md says each one.
    """

    decisions_days: int = Field(
        default=DEFAULT_HISTORY_DAYS,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="Decisions are deleted this long after they were made (at most 400 days: a year-on-year "
        "comparison). Default: ledger.retention_days.",
    )
    exposures_days: int = Field(
        default=DEFAULT_HISTORY_DAYS,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="Exposures are deleted this long after the screen acked them, and always with their "
        "decision (so at most decisions_days). Default: ledger.retention_days, or decisions_days if shorter.",
    )
    device_settings_days: int = Field(
        default=DEFAULT_HISTORY_DAYS,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="Commands sent to smart devices, with the shoppers behind them, are deleted this long "
        "after they were sent. Default: ledger.retention_days.",
    )
    staff_interactions_days: int = Field(
        default=DEFAULT_HISTORY_DAYS,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="Staff answers to notices are deleted this long after they were given. Default: "
        "ledger.retention_days.",
    )
    privacy_audit_days: int = Field(
        default=365,
        ge=MIN_AUDIT_DAYS,
        le=MAX_AUDIT_DAYS,
        description="The audit of privacy exports is kept this long: at least 90 days (a request may take "
        "three months to answer), at most about three years (the usual limitation period).",
    )
    dead_letters_days: int = Field(
        default=30,
        ge=1,
        le=MAX_DEAD_LETTER_DAYS,
        description="Events the cloud refused for good are kept this long for an operator's export (they "
        "may name a shopper), besides the bound of 20,000.",
    )
    collected_orders_days: int = Field(
        default=30,
        ge=1,
        le=MAX_COLLECTED_ORDER_DAYS,
        description="A pickup order collected here is deleted this long after its collection, even if the "
        "cloud's delete never comes (open orders are the cloud's state: they stay until it deletes them).",
    )
    conversions_days: int = Field(
        default=DEFAULT_HISTORY_DAYS,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="POS sales kept for measurement (the report's attribution; a shopper's only with "
        "`measurement`) are deleted this long after the gateway heard them. Keep it longer than "
        "measurement.attribution_window_days, or late touches lose their sales.",
    )
    campaign_exposures_days: int = Field(
        default=30,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="Online campaigns a shopper saw, sent by the cloud (only with `measurement`), are "
        "deleted this long after the shopper saw them: a sale is attributed to one only within the "
        "attribution window, so keep it at least that long.",
    )
    profiles_unseen_days: int = Field(
        default=30,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="A shopper's profile is evicted (disk and memory) when they have not been seen at this "
        "store for this long; a later visit fetches it again. Their consents and EID key stay.",
    )

    @model_validator(mode="before")
    @classmethod
    def _exposures_default(cls, data: Any) -> Any:
        """Unset, exposures_days follows a shorter decisions_days: a default must not be an error."""
        if isinstance(data, dict) and "exposures_days" not in data and _days(data.get("decisions_days")):
            return {**data, "exposures_days": min(DEFAULT_HISTORY_DAYS, data["decisions_days"])}
        return data

    @field_validator("exposures_days")
    @classmethod
    def _exposures_go_with_decisions(cls, value: int, info: ValidationInfo) -> int:
        decisions = info.data.get("decisions_days")
        if decisions is not None and value > decisions:
            msg = (
                f"must not exceed decisions_days ({decisions}): an exposure is deleted with its decision, so "
                "it could not be kept longer"
            )
            raise ValueError(msg)
        return value


def _days(value: object) -> TypeGuard[int]:
    """A value the history tables' days accept (anything else is left to the field's own error)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_RETENTION_DAYS


class LedgerSettings(Section):
    path: Path = Field(
        default=Path("state/ledger.sqlite"),
        description="SQLite ledger file; 'state/ledger.sqlite' next to this file by default, beside "
        "control.state_dir (an installed gateway sets /var/lib/edge-gateway/ledger.sqlite).",
    )
    batch_max: int = Field(default=256, ge=1, le=10_000, description="Writes committed together at most.")
    batch_window_ms: float = Field(
        default=0.0,
        ge=0,
        le=1_000,
        description=(
            "Wait this long for more writes after the first. 0 (default): commit what is queued now; "
            "writes arriving during a commit form the next batch, so batching costs no latency."
        ),
    )
    retention_days: int = Field(
        default=DEFAULT_HISTORY_DAYS,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="The default of ledger.retention's decisions_days, exposures_days, device_settings_days "
        "and staff_interactions_days (the tables it always covered); a key set there wins.",
    )
    corrupt_keep_days: float = Field(
        default=7.0,
        ge=0,
        le=30,
        description="A ledger file moved aside as corrupt is kept this long for a post-mortem, then deleted; "
        "an erasure deletes it at once (it cannot be edited, and may hold the shopper).",
    )
    retention: RetentionSettings = Field(
        default_factory=RetentionSettings, description="How long each history table keeps a row."
    )

    @model_validator(mode="before")
    @classmethod
    def _history_default(cls, data: Any) -> Any:
        """``retention_days`` (a configuration written before ``[ledger.retention]``) sets the history tables'
        days that the file does not set itself. A bad value is left to its own field's error."""
        if not isinstance(data, dict):
            return data
        days = data.get("retention_days")
        retention = data.get("retention", {})
        if not _days(days) or not isinstance(retention, dict):
            return data
        filled = dict.fromkeys(HISTORY_TABLES, days)
        decisions = retention.get("decisions_days")
        if _days(decisions):
            filled["exposures_days"] = min(days, decisions)
        return {**data, "retention": {**filled, **retention}}
