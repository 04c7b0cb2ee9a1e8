"""The ledger's write operations: each factory returns the closure the writer runs inside a batch.

Ops that change something the cloud must hear about queue its event in the same transaction
(a transactional outbox): the row and its event commit together or not at all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

from edge.clock import iso_utc
from edge.decide.logged import without_personal
from edge.events import Candidates, Decision, Purpose
from edge.ledger.deadletter import anonymise_dead_letters
from edge.ledger.outbox import NewEvent, anonymise_shopper_events, encode_event, event_id_for, insert_event
from edge.ledger.writer import Op, Tx
from edge.sync.wire import EventClass

T = TypeVar("T")

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
    "features",
    "context",
    "counterfactual_offer_id",
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

# The durable marks of the wall clock (table clock_marks): the highest wall time seen, and the point up to
# which token claims have been forgotten by a purge.
MARK_HIGH_WATER: Final = "high_water"
MARK_FORGOTTEN: Final = "jti_forgotten_through"
# Every FORGET_EVERY_CLAIMS-th claim also forgets up to FORGET_AT_MOST ended claims (docs/ledger.md "Token
# claims"): the table holds about one token lifetime of claims instead of growing until the hourly purge.
FORGET_EVERY_CLAIMS: Final = 256
FORGET_AT_MOST: Final = 1024

# A consent whose source is the cloud came from the cloud (sync or a profile fetch), and a seed file's come
# from the operator's copy of the cloud: neither is echoed back as an event.
CLOUD_SOURCE: Final = "cloud"
NOT_ECHOED: Final = frozenset({CLOUD_SOURCE, "seed"})

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


def insert_decision(decision: Decision, *, keep_shopper: bool, outbox_max_bytes: int | None) -> Op[bool]:
    """Insert a decision once, with its telemetry event; the op returns False if its id was already recorded."""
    # Encoded here, in the caller's context, so a bad value fails its caller before it reaches a batch.
    shopper_id = decision.shopper_id if keep_shopper else None
    params = (
        decision.decision_id,
        decision.display_id,
        decision.zone,
        decision.at_wall,
        shopper_id,
        decision.offer_id,
        decision.template,
        decision.model_version,
        decision.propensity,
        int(decision.explored),
        int(decision.holdout),
        int(decision.personalized),
        candidates_json(decision.candidates),
        decision.features if keep_shopper else None,
        # A shopper not kept leaves the store's part of the context only (their profile and basket go).
        decision.context if keep_shopper else without_personal(decision.context),
        decision.counterfactual_offer_id,
    )
    event = encode_event(
        "decision",
        EventClass.TELEMETRY,
        {
            "decision_id": decision.decision_id,
            "display_id": decision.display_id,
            "zone": decision.zone,
            "offer_id": decision.offer_id,
            "template": decision.template,
            "model_version": decision.model_version,
            # Plain types: the decision may carry numpy scalars.
            "propensity": float(decision.propensity),
            "explored": bool(decision.explored),
            "holdout": bool(decision.holdout),
            "personalized": bool(decision.personalized),
        },
        at_wall=decision.at_wall,
        shopper_id=shopper_id,
        event_id=event_id_for(decision.at_wall, "decision:" + decision.decision_id),
    )

    def run(tx: Tx) -> bool:
        if not tx.returning(_INSERT_DECISION, params):
            return False
        insert_event(tx, event, outbox_max_bytes)
        return True

    return run


def insert_exposure(
    *,
    decision_id: str,
    display_id: str,
    version: int,
    shown_at_wall: float,
    acked_at_wall: float,
    outbox_max_bytes: int | None,
) -> Op[ExposureOutcome]:
    """Insert an acked exposure once per (decision, display), copying the decision's shopper id."""
    data = {
        "decision_id": decision_id,
        "display_id": display_id,
        "version": version,
        "shown_at": iso_utc(shown_at_wall),
        "acked_at": iso_utc(acked_at_wall),
    }
    event_id = event_id_for(shown_at_wall, f"exposure:{decision_id}:{display_id}")

    def run(tx: Tx) -> ExposureOutcome:
        # The shopper id comes from the decision row, so it is kept exactly when the decision kept it.
        rows = tx.returning(
            "INSERT INTO exposures (decision_id, display_id, version, shown_at_wall, acked_at_wall, "
            "shopper_id) SELECT ?, ?, ?, ?, ?, shopper_id FROM decisions WHERE decision_id = ? "
            "ON CONFLICT (decision_id, display_id) DO NOTHING RETURNING shopper_id",
            (decision_id, display_id, version, shown_at_wall, acked_at_wall, decision_id),
        )
        if rows:
            # Encoded here: the shopper id is only known once the row is written.
            event = encode_event(
                "exposure",
                EventClass.TELEMETRY,
                data,
                at_wall=shown_at_wall,
                shopper_id=rows[0][0],
                event_id=event_id,
            )
            insert_event(tx, event, outbox_max_bytes)
            return "new"
        # Rare path (redelivery or a stray ack): one more read to say which.
        known = tx.fetch("SELECT 1 FROM decisions WHERE decision_id = ?", (decision_id,))
        return "duplicate" if known else "unknown_decision"

    return run


def claim_jti(jti: str, until_wall: float, now_wall: float, *, forget: bool = False) -> Op[bool]:
    """Claim a token id until ``until_wall``; the op returns False if a claim still in force exists.
    ``forget`` also forgets a bounded number of ended claims in the same transaction (``Ledger``)."""

    def run(tx: Tx) -> bool:
        if not _claim(tx, jti, until_wall, now_wall):
            return False
        if forget:
            forget_ended_claims(tx, now_wall, at_most=FORGET_AT_MOST)
        return True

    return run


def claimed(op: Op[T], jti: str, until_wall: float, now_wall: float) -> Op[T | None]:
    """``op`` and the claim of the token id ``jti`` in one transaction: exactly once per token. None, and
    nothing done, when the token was claimed before (a broker's redelivery of a message already applied)."""

    def run(tx: Tx) -> T | None:
        if not _claim(tx, jti, until_wall, now_wall):
            return None
        return op(tx)

    return run


def _claim(tx: Tx, jti: str, until_wall: float, now_wall: float) -> bool:
    # An ended claim may be taken again: a token still valid with that id is new (the verifier refuses the
    # old one), and a not-yet-purged row must not turn a reused id into a false replay.
    rows = tx.returning(
        "INSERT INTO jti (jti, until_wall) VALUES (?, ?) ON CONFLICT (jti) DO UPDATE "
        "SET until_wall = excluded.until_wall WHERE jti.until_wall <= ? RETURNING 1",
        (jti, until_wall, now_wall),
    )
    return bool(rows)


def record_checkin(
    jti: str,
    until_wall: float,
    now_wall: float,
    decisions: Sequence[tuple[Decision, bool]],
    *,
    outbox_max_bytes: int | None,
    forget: bool = False,
) -> Op[bool]:
    """A check-in, atomically: its jti claim and its decisions (each with keep_shopper) in one transaction.

    False (and nothing written) if the jti is claimed already: the check-in was done before. ``forget`` as
    in ``claim_jti``.
    """
    inserts = [
        insert_decision(d, keep_shopper=keep, outbox_max_bytes=outbox_max_bytes) for d, keep in decisions
    ]

    def run(tx: Tx) -> bool:
        if not _claim(tx, jti, until_wall, now_wall):
            return False
        if forget:
            forget_ended_claims(tx, now_wall, at_most=FORGET_AT_MOST)
        for insert in inserts:
            insert(tx)
        return True

    return run


def insert_decisions(decisions: Sequence[tuple[Decision, bool]], *, outbox_max_bytes: int | None) -> Op[int]:
    """Several decisions (each with keep_shopper) in one transaction; the op returns how many were new."""
    inserts = [
        insert_decision(d, keep_shopper=keep, outbox_max_bytes=outbox_max_bytes) for d, keep in decisions
    ]

    def run(tx: Tx) -> int:
        return sum([insert(tx) for insert in inserts])

    return run


def store_consent(tx: Tx, row: ConsentRow) -> bool:
    """Keep the maximum of (at_wall, withdrawn, source) unless the shopper was erased at or after ``at_wall``.

    Shared by local updates and the cloud replica, so both follow one order. True if ``row`` was stored.
    """
    rows = tx.returning(
        "INSERT INTO consents (shopper_id, purpose, granted, at_wall, source) SELECT ?, ?, ?, ?, ? "
        "WHERE NOT EXISTS (SELECT 1 FROM tombstones WHERE shopper_key = edge_tombstone(?) AND erased_wall >= ?) "
        "ON CONFLICT (shopper_id, purpose) DO UPDATE SET granted = excluded.granted, "
        "at_wall = excluded.at_wall, source = excluded.source "
        "WHERE (excluded.at_wall, 1 - excluded.granted, excluded.source) "
        "> (consents.at_wall, 1 - consents.granted, consents.source) RETURNING 1",
        (
            row.shopper_id,
            row.purpose.value,
            int(row.granted),
            row.at_wall,
            row.source,
            row.shopper_id,
            row.at_wall,
        ),
    )
    if rows and row.purpose is Purpose.MEASUREMENT and not row.granted:
        # Campaign exposures are kept for measurement only: a withdrawal here takes them at once, before
        # the cloud's deletes arrive.
        tx.execute("DELETE FROM campaign_exposures WHERE shopper_id = ?", (row.shopper_id,))
    return bool(rows)


def upsert_consent(row: ConsentRow, *, outbox_max_bytes: int | None) -> Op[bool]:
    """Store ``row`` if it wins (see ``store_consent``) and tell the cloud; False if ``row`` lost.

    The privacy event is queued only when the row was stored and did not come from the cloud.
    """
    event = None
    if row.source not in NOT_ECHOED:
        event = encode_event(
            "consent",
            EventClass.PRIVACY,
            {
                "purpose": row.purpose.value,
                "granted": row.granted,
                "at": iso_utc(row.at_wall),
                "source": row.source,
            },
            at_wall=row.at_wall,
            shopper_id=row.shopper_id,
            event_id=event_id_for(
                row.at_wall,
                f"consent:{row.shopper_id}:{row.purpose.value}:{row.at_wall!r}:{int(row.granted)}:{row.source}",
            ),
        )

    def run(tx: Tx) -> bool:
        if not store_consent(tx, row):
            return False
        if event is not None:
            insert_event(tx, event, outbox_max_bytes)
        return True

    return run


def erase_shopper(tx: Tx, shopper_id: str, erased_wall: float) -> int:
    """Forget a shopper everywhere local; returns how many of their queued events were anonymised.

    Leaves a tombstone (the later erasure time wins) so nothing older comes back from a late sync page or
    update. Decisions and exposures stay, unlinked: anonymous measurement.
    """
    tx.execute(
        "INSERT INTO tombstones (shopper_key, erased_wall) VALUES (edge_tombstone(?), ?) ON CONFLICT (shopper_key) "
        "DO UPDATE SET erased_wall = excluded.erased_wall WHERE excluded.erased_wall > tombstones.erased_wall",
        (shopper_id, erased_wall),
    )
    for sql in (
        "DELETE FROM consents WHERE shopper_id = ?",
        "DELETE FROM device_setting_shoppers WHERE shopper_id = ?",
        "DELETE FROM pickup_orders WHERE shopper_id = ?",
        # Their sales kept for measurement (the lines go by the cascade); the cloud erases its own copy.
        "DELETE FROM conversions WHERE shopper_id = ?",
        "DELETE FROM campaign_exposures WHERE shopper_id = ?",
        "DELETE FROM profiles WHERE shopper_id = ?",
        "DELETE FROM eid_keys WHERE shopper_id = ?",
        "DELETE FROM shopper_seen WHERE shopper_id = ?",
        # The feature row and the logged context hold what the profile and basket said: they go with the link.
        "UPDATE decisions SET shopper_id = NULL, features = NULL, context = NULL WHERE shopper_id = ?",
        "UPDATE exposures SET shopper_id = NULL WHERE shopper_id = ?",
        "UPDATE staff_interactions SET shopper_id = NULL WHERE shopper_id = ?",
    ):
        tx.execute(sql, (shopper_id,))
    anonymise_dead_letters(tx, shopper_id)
    # An export not yet sent is the shopper's data itself: it goes, not just their id.
    tx.execute("DELETE FROM outbox WHERE shopper_id = ? AND kind = 'privacy_export'", (shopper_id,))
    return anonymise_shopper_events(tx, shopper_id)


def forget_shopper(
    shopper_id: str, erased_wall: float, *, report: NewEvent | None, outbox_max_bytes: int | None
) -> Op[int]:
    """Erase the shopper locally (``erase_shopper``) and queue ``report`` (their erasure event) if given."""

    def run(tx: Tx) -> int:
        removed = erase_shopper(tx, shopper_id, erased_wall)
        if report is not None:
            insert_event(tx, report, outbox_max_bytes)
        return removed

    return run


def forget_ended_claims(tx: Tx, now_wall: float, *, at_most: int | None) -> int:
    """Delete token claims that ended by ``now_wall`` (the oldest ``at_most`` of them, or all) and raise the
    durable floor through the last one forgotten; nothing while the clock is behind that floor."""
    rows = tx.fetch("SELECT wall FROM clock_marks WHERE mark = ?", (MARK_FORGOTTEN,))
    if rows and float(rows[0][0]) > now_wall:
        return 0
    through = now_wall
    if at_most is not None:
        # Through the at_most-th oldest ended claim (jti_exp index); its ties go with it.
        last = tx.fetch(
            "SELECT max(until_wall) FROM (SELECT until_wall FROM jti WHERE until_wall <= ? "
            "ORDER BY until_wall LIMIT ?)",
            (now_wall, at_most),
        )
        if last[0][0] is None:
            return 0
        through = float(last[0][0])
    removed = tx.execute("DELETE FROM jti WHERE until_wall <= ?", (through,))
    raise_mark(tx, MARK_FORGOTTEN, through)
    return removed


def record_device_setting(
    device_id: str, at_wall: float, reason: str, applied: Mapping[str, object], shoppers: Sequence[str]
) -> Op[int]:
    """One command a device was sent: its values and the shoppers (kept with ``measurement``) behind it."""
    values = json.dumps(applied, separators=(",", ":"), sort_keys=True)

    def run(tx: Tx) -> int:
        rows = tx.returning(
            "INSERT INTO device_settings (device_id, at_wall, reason, applied) VALUES (?, ?, ?, ?) RETURNING id",
            (device_id, at_wall, reason, values),
        )
        setting_id = int(rows[0][0])
        for shopper_id in shoppers:
            tx.execute(
                "INSERT OR IGNORE INTO device_setting_shoppers (shopper_id, setting_id) VALUES (?, ?)",
                (shopper_id, setting_id),
            )
        return setting_id

    return run


def record_staff_interaction(
    notice_id: str,
    action: str,
    team: str,
    zone: str,
    at_wall: float,
    shopper_id: str | None,
    *,
    outbox_max_bytes: int | None,
) -> Op[bool]:
    """A staff answer to a notice, once per (notice, action), with its event for the cloud (measurement of
    the staff touchpoint); ``shopper_id`` only when the shopper granted ``measurement``. False: a repeat."""
    event = encode_event(
        "staff_interaction",
        EventClass.TELEMETRY,
        {"team": team, "zone": zone, "action": action, "at": iso_utc(at_wall)},
        at_wall=at_wall,
        shopper_id=shopper_id,
        event_id=event_id_for(at_wall, f"staff:{notice_id}:{action}"),
    )

    def run(tx: Tx) -> bool:
        rows = tx.returning(
            "INSERT INTO staff_interactions (notice_id, action, team, zone, at_wall, shopper_id) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1",
            (notice_id, action, team, zone, at_wall, shopper_id),
        )
        if not rows:
            return False
        insert_event(tx, event, outbox_max_bytes)
        return True

    return run


def collect_orders(
    order_ids: Sequence[str], via: str, at_wall: float, *, outbox_max_bytes: int | None
) -> Op[list[str]]:
    """Mark open orders collected (``via`` "pos" or "staff"), each with its ``order_collected`` event for the
    cloud (a conversion: never dropped; no shopper id, the order names its shopper at the cloud). Returns
    the ids that were open; an unknown or already collected id changes nothing."""

    def run(tx: Tx) -> list[str]:
        collected = []
        for order_id in dict.fromkeys(order_ids):
            if not tx.returning(
                "UPDATE pickup_orders SET collected_wall = ? WHERE order_id = ? AND collected_wall IS NULL "
                "RETURNING 1",
                (at_wall, order_id),
            ):
                continue
            collected.append(order_id)
            event = encode_event(
                "order_collected",
                EventClass.CONVERSION,
                {"order_id": order_id, "via": via},
                at_wall=at_wall,
                shopper_id=None,
                event_id=event_id_for(at_wall, f"order:{order_id}"),
            )
            insert_event(tx, event, outbox_max_bytes)
        return collected

    return run


def mark_wall(now_wall: float) -> Op[float]:
    """Raise the durable high-water mark of the wall clock; the op returns the mark."""

    def run(tx: Tx) -> float:
        return raise_mark(tx, MARK_HIGH_WATER, now_wall)

    return run


def raise_mark(tx: Tx, mark: str, wall: float) -> float:
    rows = tx.returning(
        "INSERT INTO clock_marks (mark, wall) VALUES (?, ?) ON CONFLICT (mark) DO UPDATE "
        "SET wall = max(clock_marks.wall, excluded.wall) RETURNING wall",
        (mark, wall),
    )
    return float(rows[0][0])


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
