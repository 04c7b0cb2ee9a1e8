"""The ledger's write operations: each factory returns the closure the writer runs inside a batch."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Final, Literal

from edge.events import Candidates, Decision, Purpose
from edge.ledger.writer import Op, Tx

DECISION_COLUMNS: Final = (
    "decision_id",
    "display_id",
    "zone",
    "at_wall",
    "shopper_id",
    "offer_id",
    "template",
    "model_version",
    "propensity",
    "explored",
    "holdout",
    "personalized",
    "candidates",
)
DECISION_FLAGS: Final = frozenset({"explored", "holdout", "personalized"})
EXPOSURE_COLUMNS: Final = (
    "decision_id",
    "display_id",
    "version",
    "shown_at_wall",
    "acked_at_wall",
    "shopper_id",
)

ExposureOutcome = Literal["new", "duplicate", "unknown_decision"]

_INSERT_DECISION: Final = (
    f"INSERT INTO decisions ({', '.join(DECISION_COLUMNS)}) "  # noqa: S608 - constant column names
    f"VALUES ({', '.join('?' * len(DECISION_COLUMNS))}) ON CONFLICT (decision_id) DO NOTHING RETURNING 1"
)


@dataclass(slots=True, frozen=True)
class ConsentRow:
    """One shopper's latest consent state for one purpose, with when and where it was given or withdrawn."""

    shopper_id: str
    purpose: Purpose
    granted: bool
    at_wall: float
    source: str


def insert_decision(decision: Decision, *, keep_shopper: bool) -> Op[bool]:
    """Insert a decision once; the op returns False if its id was already recorded."""
    # Encoded here, in the caller's context, so a bad value fails its caller before it reaches a batch.
    params = (
        decision.decision_id,
        decision.display_id,
        decision.zone,
        decision.at_wall,
        decision.shopper_id if keep_shopper else None,
        decision.offer_id,
        decision.template,
        decision.model_version,
        decision.propensity,
        int(decision.explored),
        int(decision.holdout),
        int(decision.personalized),
        candidates_json(decision.candidates),
    )

    async def run(tx: Tx) -> bool:
        return bool(await tx.returning(_INSERT_DECISION, params))

    return run


def insert_exposure(
    *, decision_id: str, display_id: str, version: int, shown_at_wall: float, acked_at_wall: float
) -> Op[ExposureOutcome]:
    """Insert an acked exposure once per (decision, display), copying the decision's shopper id."""

    async def run(tx: Tx) -> ExposureOutcome:
        # The shopper id comes from the decision row, so it is kept exactly when the decision kept it.
        rows = await tx.returning(
            "INSERT INTO exposures (decision_id, display_id, version, shown_at_wall, acked_at_wall, "
            "shopper_id) SELECT ?, ?, ?, ?, ?, shopper_id FROM decisions WHERE decision_id = ? "
            "ON CONFLICT (decision_id, display_id) DO NOTHING RETURNING 1",
            (decision_id, display_id, version, shown_at_wall, acked_at_wall, decision_id),
        )
        if rows:
            return "new"
        # Rare path (redelivery or a stray ack): one more read to say which.
        known = await tx.fetch("SELECT 1 FROM decisions WHERE decision_id = ?", (decision_id,))
        return "duplicate" if known else "unknown_decision"

    return run


def claim_jti(jti: str, exp_wall: float, now_wall: float) -> Op[bool]:
    """Claim a token id until ``exp_wall``; the op returns False if an unexpired claim exists."""

    async def run(tx: Tx) -> bool:
        # An expired claim may be taken again: the token itself is rejected for its exp anyway, and a
        # not-yet-purged row must not turn a reused id into a false replay.
        rows = await tx.returning(
            "INSERT INTO jti (jti, exp_wall) VALUES (?, ?) ON CONFLICT (jti) DO UPDATE "
            "SET exp_wall = excluded.exp_wall WHERE jti.exp_wall <= ? RETURNING 1",
            (jti, exp_wall, now_wall),
        )
        return bool(rows)

    return run


def upsert_consent(row: ConsentRow) -> Op[bool]:
    """Keep the maximum of (at_wall, withdrawn, source); the op returns False if ``row`` lost."""

    async def run(tx: Tx) -> bool:
        rows = await tx.returning(
            "INSERT INTO consents (shopper_id, purpose, granted, at_wall, source) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (shopper_id, purpose) DO UPDATE SET granted = excluded.granted, "
            "at_wall = excluded.at_wall, source = excluded.source "
            "WHERE (excluded.at_wall, 1 - excluded.granted, excluded.source) "
            "> (consents.at_wall, 1 - consents.granted, consents.source) RETURNING 1",
            (row.shopper_id, row.purpose.value, int(row.granted), row.at_wall, row.source),
        )
        return bool(rows)

    return run


def forget_shopper(shopper_id: str) -> Op[None]:
    """Delete the shopper's consents and unlink their id from decisions and exposures."""

    async def run(tx: Tx) -> None:
        await tx.execute("DELETE FROM consents WHERE shopper_id = ?", (shopper_id,))
        await tx.execute("UPDATE decisions SET shopper_id = NULL WHERE shopper_id = ?", (shopper_id,))
        await tx.execute("UPDATE exposures SET shopper_id = NULL WHERE shopper_id = ?", (shopper_id,))

    return run


def purge(now_wall: float, cutoff_wall: float) -> Op[dict[str, int]]:
    """Delete claims expired at ``now_wall`` and decisions/exposures older than ``cutoff_wall``."""

    async def run(tx: Tx) -> dict[str, int]:
        jti = await tx.execute("DELETE FROM jti WHERE exp_wall <= ?", (now_wall,))
        # Exposures go with their decision; deleted (and counted) here rather than by a silent cascade.
        exposures = await tx.execute(
            "DELETE FROM exposures WHERE acked_at_wall < ? "
            "OR decision_id IN (SELECT decision_id FROM decisions WHERE at_wall < ?)",
            (cutoff_wall, cutoff_wall),
        )
        decisions = await tx.execute("DELETE FROM decisions WHERE at_wall < ?", (cutoff_wall,))
        return {"jti": jti, "decisions": decisions, "exposures": exposures}

    return run


def candidates_json(candidates: Candidates) -> str:
    """Compact, strict JSON: a masked-out candidate's -inf score becomes null."""
    return json.dumps(
        [
            {
                "offer_id": c.offer_id,
                "eligible": c.eligible,
                "score": c.score if math.isfinite(c.score) else None,
                "reason": c.reason,
            }
            for c in candidates
        ],
        separators=(",", ":"),
        allow_nan=False,
    )
