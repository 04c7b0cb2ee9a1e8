"""The ledger schema as an ordered list of migration steps, and the code that applies them."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Final

import aiosqlite

from edge.ledger import eventcodec, typedjson
from edge.ledger.errors import LedgerError
from edge.ledger.tombstones import keyed_tombstones

_LOGGER = logging.getLogger(__name__)

# One statement of a step: SQL, or a function run on the connection (on its thread) in the step's transaction,
# for what SQL alone cannot do.
Statement = str | Callable[[sqlite3.Connection], None]


def _compact_outbox(conn: sqlite3.Connection) -> None:
    """Step 5: the rows of the version-4 outbox into the compact table, seqs and sequence kept.

    A queued body is kept verbatim (``eventcodec.VERBATIM``): copying is fast whatever the backlog, and what
    is pushed stays byte for byte what was queued. The id becomes its 16 bytes when it is a canonical UUID,
    so a redelivered write after the upgrade still finds it (the unique index compares stored values).
    """
    conn.create_function("edge_pack_id", 1, eventcodec.pack_id, deterministic=True)
    conn.create_function("edge_wall_ms", 1, typedjson.wall_ms, deterministic=True)
    try:
        conn.execute(
            "INSERT INTO outbox (seq, event_id, class, kind, at_ms, shopper_id, bytes, data) "
            "SELECT seq, edge_pack_id(event_id), class, CASE kind WHEN 'decision' THEN 1 "
            "WHEN 'exposure' THEN 2 WHEN 'consent' THEN 3 WHEN 'erasure' THEN 4 WHEN 'conversion' THEN 5 "
            "ELSE kind END, edge_wall_ms(at_wall), shopper_id, length(body), CAST(x'00' || body AS BLOB) "
            "FROM outbox_v4 ORDER BY seq"
        )
    finally:
        conn.create_function("edge_pack_id", 1, None)
        conn.create_function("edge_wall_ms", 1, None)
    # AUTOINCREMENT's high mark moves to the new table: a seq acked before the upgrade is never handed out.
    conn.execute(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox', 0 "
        "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox')"
    )
    conn.execute(
        "UPDATE sqlite_sequence SET seq = max(seq, "
        "(SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'outbox_v4')) WHERE name = 'outbox'"
    )


# Step N (1-based) moves the schema from user_version N-1 to N. Append new steps; never edit a shipped one,
# because gateways in the field have already applied it and will not run it again.
SCHEMA_STEPS: Final[tuple[tuple[Statement, ...], ...]] = (
    (
        # One row per decision. shopper_id is NULL unless the shopper's consent allowed keeping it.
        """CREATE TABLE decisions (
            decision_id   TEXT PRIMARY KEY,
            display_id    TEXT NOT NULL,
            zone          TEXT NOT NULL,
            at_wall       REAL NOT NULL,
            shopper_id    TEXT,
            offer_id      TEXT,
            template      TEXT NOT NULL,
            model_version TEXT NOT NULL,
            propensity    REAL NOT NULL CHECK (propensity >= 0.0 AND propensity <= 1.0),
            explored      INTEGER NOT NULL CHECK (explored IN (0, 1)),
            holdout       INTEGER NOT NULL CHECK (holdout IN (0, 1)),
            personalized  INTEGER NOT NULL CHECK (personalized IN (0, 1)),
            candidates    TEXT NOT NULL
        )""",
        "CREATE INDEX decisions_at ON decisions (at_wall)",
        "CREATE INDEX decisions_shopper ON decisions (shopper_id) WHERE shopper_id IS NOT NULL",
        # An exposure exists only once a display acked it; (decision, display) makes MQTT redelivery a no-op.
        """CREATE TABLE exposures (
            decision_id   TEXT NOT NULL REFERENCES decisions (decision_id) ON DELETE CASCADE,
            display_id    TEXT NOT NULL,
            version       INTEGER NOT NULL,
            shown_at_wall REAL NOT NULL,
            acked_at_wall REAL NOT NULL,
            shopper_id    TEXT,
            PRIMARY KEY (decision_id, display_id)
        )""",
        "CREATE INDEX exposures_acked ON exposures (acked_at_wall)",
        "CREATE INDEX exposures_shopper ON exposures (shopper_id) WHERE shopper_id IS NOT NULL",
        """CREATE TABLE consents (
            shopper_id TEXT NOT NULL,
            purpose    TEXT NOT NULL,
            granted    INTEGER NOT NULL CHECK (granted IN (0, 1)),
            at_wall    REAL NOT NULL,
            source     TEXT NOT NULL,
            PRIMARY KEY (shopper_id, purpose)
        ) WITHOUT ROWID""",
        # Token replay cache: a jti is remembered until its token expires.
        """CREATE TABLE jti (
            jti      TEXT PRIMARY KEY,
            exp_wall REAL NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX jti_exp ON jti (exp_wall)",
    ),
    (
        # The outbox to the cloud (docs/ledger.md "Outbox"). seq never repeats (AUTOINCREMENT), so an ack
        # that arrives late can never delete a newer event that reused a number. body is the event's final
        # compact JSON; bytes is derived from it (VIRTUAL: no space on disk).
        """CREATE TABLE outbox (
            seq        INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id   TEXT NOT NULL UNIQUE,
            class      INTEGER NOT NULL CHECK (class BETWEEN 0 AND 2),
            kind       TEXT NOT NULL,
            at_wall    REAL NOT NULL,
            shopper_id TEXT,
            body       BLOB NOT NULL,
            bytes      INTEGER GENERATED ALWAYS AS (length(body)) VIRTUAL
        )""",
        # Index entries are (class, seq): the oldest telemetry is the front of class 0, and an ack of the
        # queue's head deletes a contiguous run of it. There is deliberately no index on shopper_id: its
        # entries are in shopper order, so every ack would rewrite pages all over it (a drain step 13 -> 19 ms,
        # +12 B/event, docs/benchmarks.md), for a query that runs once per erasure (docs/ledger.md "Outbox").
        "CREATE INDEX outbox_class ON outbox (class)",
        # Events and bytes queued per class, kept exact by the triggers below (so stats never COUNT(*)),
        # and the events the byte bound dropped, per class, across restarts.
        """CREATE TABLE outbox_totals (
            class   INTEGER PRIMARY KEY,
            events  INTEGER NOT NULL,
            bytes   INTEGER NOT NULL,
            dropped INTEGER NOT NULL
        )""",
        "INSERT INTO outbox_totals (class, events, bytes, dropped) VALUES (0, 0, 0, 0), (1, 0, 0, 0), (2, 0, 0, 0)",
        """CREATE TRIGGER outbox_counted_in AFTER INSERT ON outbox BEGIN
            UPDATE outbox_totals SET events = events + 1, bytes = bytes + NEW.bytes WHERE class = NEW.class;
        END""",
        """CREATE TRIGGER outbox_counted_out AFTER DELETE ON outbox BEGIN
            UPDATE outbox_totals SET events = events - 1, bytes = bytes - OLD.bytes WHERE class = OLD.class;
        END""",
        # Rows are written once and deleted once; an update would bypass the totals.
        """CREATE TRIGGER outbox_immutable BEFORE UPDATE ON outbox BEGIN
            SELECT RAISE(ABORT, 'outbox rows are immutable');
        END""",
        # The sync cursor (and any later sync bookkeeping), stored in the same transaction as its page.
        """CREATE TABLE sync_state (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) WITHOUT ROWID""",
        # The local replica of the cloud (docs/ledger.md "Replica").
        """CREATE TABLE profiles (
            shopper_id TEXT PRIMARY KEY,
            profile    TEXT NOT NULL,
            at_wall    REAL NOT NULL
        )""",
        """CREATE TABLE eid_keys (
            shopper_id        TEXT PRIMARY KEY,
            identity_key      BLOB NOT NULL CHECK (length(identity_key) = 16),
            rotation_exponent INTEGER NOT NULL CHECK (rotation_exponent BETWEEN 0 AND 15),
            clock_offset_s    INTEGER NOT NULL
        )""",
        """CREATE TABLE token_keys (
            kid            TEXT PRIMARY KEY,
            public_key_pem TEXT NOT NULL
        )""",
        """CREATE TABLE offers (
            offer_id TEXT PRIMARY KEY,
            body     TEXT NOT NULL
        )""",
        """CREATE TABLE inventory (
            offer_id  TEXT PRIMARY KEY,
            available INTEGER NOT NULL CHECK (available IN (0, 1)),
            quantity  INTEGER
        )""",
        # An erased shopper: nothing older than erased_wall may come back (consents, profiles, keys).
        """CREATE TABLE tombstones (
            shopper_id  TEXT PRIMARY KEY,
            erased_wall REAL NOT NULL
        ) WITHOUT ROWID""",
    ),
    (
        # A claim is kept until the token would no longer verify: its exp plus the verifier's leeway
        # (docs/identity.md "Replay"). Rows written before this step hold the bare exp: they get the largest
        # leeway the configuration allows (300 s), so none ends before its token does.
        "ALTER TABLE jti RENAME COLUMN exp_wall TO until_wall",
        "UPDATE jti SET until_wall = until_wall + 300",
        # Durable marks of the wall clock (edge/identity/wallclock.py): the highest wall time seen, and
        # the point through which a purge has forgotten token claims. A clock that steps back below them
        # is reported, and cannot make a forgotten jti usable again.
        """CREATE TABLE clock_marks (
            mark TEXT PRIMARY KEY,
            wall REAL NOT NULL
        ) WITHOUT ROWID""",
    ),
    (
        # Events the cloud refused one by one (docs/ledger.md "Refused events"). A parked event stays in the
        # outbox (counted, never dropped unless telemetry at the byte bound) and is retried alone at
        # next_wall; this table only says why and when. No foreign key: an erasure rewrites outbox rows
        # with the same seq, which a cascade would unpark.
        """CREATE TABLE outbox_parked (
            seq         INTEGER PRIMARY KEY,
            reason      TEXT NOT NULL,
            attempts    INTEGER NOT NULL CHECK (attempts >= 1),
            parked_wall REAL NOT NULL,
            next_wall   REAL NOT NULL
        )""",
        # Whatever removes an outbox row (an ack, the byte bound, a dead letter) ends its parking.
        """CREATE TRIGGER outbox_unparked AFTER DELETE ON outbox BEGIN
            DELETE FROM outbox_parked WHERE seq = OLD.seq;
        END""",
        # Telemetry the cloud refused for good, with its reason: kept for an operator to export, bounded.
        """CREATE TABLE dead_letter (
            seq           INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id      TEXT NOT NULL UNIQUE,
            class         INTEGER NOT NULL CHECK (class BETWEEN 0 AND 2),
            kind          TEXT NOT NULL,
            at_wall       REAL NOT NULL,
            shopper_id    TEXT,
            body          BLOB NOT NULL,
            reason        TEXT NOT NULL,
            given_up_wall REAL NOT NULL
        )""",
        # Kept exact by triggers, so health never counts rows: given up ever, evicted by the bound, held now.
        """CREATE TABLE dead_letter_totals (
            id       INTEGER PRIMARY KEY CHECK (id = 0),
            events   INTEGER NOT NULL,
            given_up INTEGER NOT NULL,
            evicted  INTEGER NOT NULL
        )""",
        "INSERT INTO dead_letter_totals (id, events, given_up, evicted) VALUES (0, 0, 0, 0)",
        """CREATE TRIGGER dead_letter_in AFTER INSERT ON dead_letter BEGIN
            UPDATE dead_letter_totals SET events = events + 1, given_up = given_up + 1;
        END""",
        """CREATE TRIGGER dead_letter_out AFTER DELETE ON dead_letter BEGIN
            UPDATE dead_letter_totals SET events = events - 1, evicted = evicted + 1;
        END""",
        # Token key ids the cloud revoked: they win over identity.public_key_files at every build, until
        # the cloud trusts the kid again (an upsert). A reset keeps them: refusing is the safe side.
        """CREATE TABLE revoked_keys (
            kid          TEXT PRIMARY KEY,
            revoked_wall REAL NOT NULL
        ) WITHOUT ROWID""",
        # The keys a rebuild after a cursor reset has seen so far (docs/sync.md "Cursor reset"); swept at
        # its last page. sub is the purpose of a consent, '' otherwise.
        """CREATE TABLE rebuild_seen (
            kind TEXT NOT NULL,
            id   TEXT NOT NULL,
            sub  TEXT NOT NULL,
            PRIMARY KEY (kind, id, sub)
        ) WITHOUT ROWID""",
    ),
    (
        # The outbox, compact (docs/ledger.md "Outbox on disk"): ~500 bytes an event on disk became ~150. The
        # id is 16 bytes when it is a canonical UUID (else its text), the kind a small code for the gateway's
        # own kinds (else its text): neither column has a type, so no affinity turns one into the other.
        # at_ms is the event's `at` in unix ms; bytes is the wire event's length, which the byte bound and
        # the totals count (as before: they count what is pushed, not what is stored); data is the event's
        # data in eventcodec's form (its first byte says which). The rows are copied with their seqs, so
        # outbox_parked still points at them.
        "ALTER TABLE outbox RENAME TO outbox_v4",
        """CREATE TABLE outbox (
            seq        INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id   NOT NULL UNIQUE,
            class      INTEGER NOT NULL CHECK (class BETWEEN 0 AND 2),
            kind       NOT NULL,
            at_ms      INTEGER NOT NULL,
            shopper_id TEXT,
            bytes      INTEGER NOT NULL,
            data       BLOB NOT NULL
        )""",
        _compact_outbox,
        # Its index and triggers go with it (they keep their names across a rename).
        "DROP TABLE outbox_v4",
        # As in step 2: (class, seq) finds the oldest telemetry; still no shopper_id index.
        "CREATE INDEX outbox_class ON outbox (class)",
        """CREATE TRIGGER outbox_counted_in AFTER INSERT ON outbox BEGIN
            UPDATE outbox_totals SET events = events + 1, bytes = bytes + NEW.bytes WHERE class = NEW.class;
        END""",
        """CREATE TRIGGER outbox_counted_out AFTER DELETE ON outbox BEGIN
            UPDATE outbox_totals SET events = events - 1, bytes = bytes - OLD.bytes WHERE class = OLD.class;
        END""",
        """CREATE TRIGGER outbox_immutable BEFORE UPDATE ON outbox BEGIN
            SELECT RAISE(ABORT, 'outbox rows are immutable');
        END""",
        """CREATE TRIGGER outbox_unparked AFTER DELETE ON outbox BEGIN
            DELETE FROM outbox_parked WHERE seq = OLD.seq;
        END""",
        # The copy went in before the triggers: the totals are what was copied (the same figures as before).
        """UPDATE outbox_totals SET
            events = (SELECT count(*) FROM outbox WHERE class = outbox_totals.class),
            bytes = (SELECT coalesce(sum(bytes), 0) FROM outbox WHERE class = outbox_totals.class)""",
    ),
    (
        # What the devices were set to and for whom (docs/devices.md "Privacy"): one row per command that
        # went out, the values as JSON; the shoppers whose preferences shaped it in their own table, only
        # with `measurement`, so an erasure deletes their links and a shopper's export can list them.
        """CREATE TABLE device_settings (
            id        INTEGER PRIMARY KEY,
            device_id TEXT NOT NULL,
            at_wall   REAL NOT NULL,
            reason    TEXT NOT NULL,
            applied   TEXT NOT NULL
        )""",
        "CREATE INDEX device_settings_at ON device_settings (at_wall)",
        """CREATE TABLE device_setting_shoppers (
            shopper_id TEXT NOT NULL,
            setting_id INTEGER NOT NULL REFERENCES device_settings (id) ON DELETE CASCADE,
            PRIMARY KEY (shopper_id, setting_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX device_setting_shoppers_setting ON device_setting_shoppers (setting_id)",
    ),
    (
        # Staff answers to notices (docs/staff.md): one row per (notice, action); the shopper's id only with
        # `measurement`. An erasure unlinks it, retention deletes old rows.
        """CREATE TABLE staff_interactions (
            notice_id  TEXT NOT NULL,
            action     TEXT NOT NULL CHECK (action IN ('assisting', 'dismissed')),
            team       TEXT NOT NULL,
            zone       TEXT NOT NULL,
            at_wall    REAL NOT NULL,
            shopper_id TEXT,
            PRIMARY KEY (notice_id, action)
        ) WITHOUT ROWID""",
        "CREATE INDEX staff_interactions_at ON staff_interactions (at_wall)",
        "CREATE INDEX staff_interactions_shopper ON staff_interactions (shopper_id) WHERE shopper_id IS NOT NULL",
    ),
    (
        # Online orders ready for pickup at this store (docs/pickup.md): the cloud's `order` changes. A row
        # collected here keeps `collected_wall` (and its event waits in the outbox) until the cloud's delete
        # arrives; an erasure deletes the shopper's rows.
        """CREATE TABLE pickup_orders (
            order_id       TEXT PRIMARY KEY,
            shopper_id     TEXT NOT NULL,
            reference      TEXT NOT NULL,
            counter        TEXT NOT NULL,
            ready_wall     REAL NOT NULL,
            collected_wall REAL
        ) WITHOUT ROWID""",
        "CREATE INDEX pickup_orders_shopper ON pickup_orders (shopper_id)",
    ),
    (
        # Erasure that leaves nothing (issue 15): a tombstone keeps an HMAC of the id, not the id
        # (edge/ledger/tombstones.py), under a key drawn here, once per ledger file.
        keyed_tombstones,
    ),
    (
        # The shopper's right of access (docs/privacy.md): every export of what the store holds about a
        # shopper, by staff at the gateway or asked by the cloud, is recorded here. The shopper is named by the
        # same keyed hash as a tombstone (an auditor with a candidate id can check it; nobody can list who
        # asked); a cloud request's id is unique, so a request delivered twice is answered once.
        """CREATE TABLE privacy_audit (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            at_wall     REAL NOT NULL,
            shopper_key TEXT NOT NULL,
            action      TEXT NOT NULL,
            via         TEXT NOT NULL,
            request_id  TEXT,
            detail      TEXT NOT NULL
        )""",
        "CREATE UNIQUE INDEX privacy_audit_request ON privacy_audit (request_id) WHERE request_id IS NOT NULL",
        "CREATE INDEX privacy_audit_at ON privacy_audit (at_wall)",
        # The chosen offer's feature row (float32, the model's input order), kept only with the shopper id:
        # what the export explains a decision with ("why did I see this offer?").
        "ALTER TABLE decisions ADD COLUMN features BLOB",
    ),
    (
        # When each shopper was last seen at this store (edge/ledger/seen.py): a committed check-in, a POS sale
        # with their token, a BLE enter, a profile fetched on a cache miss; or, for a profile pulled before
        # any visit, its arrival. A shopper not seen for ledger.retention.profiles_unseen_days loses their
        # profile and this row (docs/ledger.md "Retention"): the table holds recent visitors only.
        """CREATE TABLE shopper_seen (
            shopper_id TEXT PRIMARY KEY,
            seen_wall  REAL NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX shopper_seen_at ON shopper_seen (seen_wall)",
        # Profiles stored before this step count from the cloud's last change of them (a migration has no
        # clock): at worst one is evicted early, and the shopper's next visit fetches it again.
        "INSERT INTO shopper_seen (shopper_id, seen_wall) SELECT shopper_id, at_wall FROM profiles",
    ),
    (
        # Sales kept at the store for measurement (docs/measurement.md): one row per POS sale (its id is the
        # sale's outbox event id, so a redelivered sale is one row), its lines in conversion_items. The shopper
        # id only with `measurement`; an erasure deletes their rows, retention deletes old ones.
        """CREATE TABLE conversions (
            event_id      TEXT PRIMARY KEY,
            at_wall       REAL NOT NULL,
            received_wall REAL NOT NULL,
            lane          TEXT NOT NULL,
            shopper_id    TEXT,
            total         REAL NOT NULL,
            currency      TEXT
        ) WITHOUT ROWID""",
        "CREATE INDEX conversions_at ON conversions (at_wall)",
        # Retention goes by when the gateway heard the sale (its own clock): a POS stamp years off cannot
        # keep a row for ever nor delete it at once.
        "CREATE INDEX conversions_received ON conversions (received_wall)",
        "CREATE INDEX conversions_shopper ON conversions (shopper_id, at_wall) WHERE shopper_id IS NOT NULL",
        """CREATE TABLE conversion_items (
            event_id TEXT NOT NULL REFERENCES conversions (event_id) ON DELETE CASCADE,
            line     INTEGER NOT NULL,
            sku      TEXT NOT NULL,
            category TEXT,
            qty      REAL NOT NULL,
            price    REAL NOT NULL,
            PRIMARY KEY (event_id, line)
        ) WITHOUT ROWID""",
        "CREATE INDEX conversion_items_sku ON conversion_items (sku)",
        # A holdout decision's counterfactual: the offer the policy would have shown (edge/decide/policy.py),
        # what the holdout comparison groups held-out shoppers by, offer by offer.
        "ALTER TABLE decisions ADD COLUMN counterfactual_offer_id TEXT",
        # The holdout decisions of a period, without reading every decision (a tenth of them, or fewer).
        "CREATE INDEX decisions_holdout ON decisions (at_wall) WHERE holdout = 1",
    ),
    (
        # The decision's context as the model saw it (edge/decide/logged.py), for every decision: what an
        # off-policy evaluation of a candidate model rebuilds each candidate's features from. Set to NULL
        # with the shopper id on erasure.
        "ALTER TABLE decisions ADD COLUMN context BLOB",
    ),
    (
        # Campaign exposures the cloud sends down (change kind `campaign_exposure`): a shopper who saw an
        # online campaign, so a sale in this store can be attributed online -> store. Shopper data: an
        # erasure deletes the shopper's rows, retention deletes old ones.
        """CREATE TABLE campaign_exposures (
            exposure_id TEXT PRIMARY KEY,
            shopper_id  TEXT NOT NULL,
            campaign_id TEXT NOT NULL,
            at_wall     REAL NOT NULL,
            skus        TEXT NOT NULL,
            category    TEXT
        ) WITHOUT ROWID""",
        "CREATE INDEX campaign_exposures_shopper ON campaign_exposures (shopper_id, at_wall)",
        "CREATE INDEX campaign_exposures_at ON campaign_exposures (at_wall)",
    ),
    (
        # The store's context for decisions (docs/context.md): the latest weather from the cloud or a local
        # sensor, kept across a restart and judged stale by its own time, never by when it was stored.
        """CREATE TABLE store_context (
            name          TEXT PRIMARY KEY,
            source        TEXT NOT NULL,
            observed_wall REAL NOT NULL,
            data          TEXT NOT NULL
        ) WITHOUT ROWID""",
    ),
)

SCHEMA_VERSION: Final[int] = len(SCHEMA_STEPS)


async def schema_version(db: aiosqlite.Connection) -> int:
    """The schema version stored in the database header (0 for a new file)."""
    rows = list(await db.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


async def migrate(db: aiosqlite.Connection, steps: Sequence[Sequence[Statement]] = SCHEMA_STEPS) -> int:
    """Apply the steps the database lacks, each in its own transaction; return the resulting version.

    The connection must be in autocommit mode (``isolation_level=None``). ``user_version`` lives in the
    database header and is written inside the step's transaction, so a step is applied entirely or not at
    all, even across a power cut.
    """
    current = await schema_version(db)
    target = len(steps)
    if current > target:
        raise LedgerError(
            f"ledger database schema version {current} is newer than this gateway supports ({target}); "
            "refusing to open it (upgrade the gateway, or restore a matching backup)"
        )
    for version in range(current + 1, target + 1):
        await db.execute_fetchall("BEGIN IMMEDIATE")
        try:
            for statement in steps[version - 1]:
                if isinstance(statement, str):
                    await db.execute_fetchall(statement)
                else:
                    # On the connection's own thread, inside this transaction (as the writer runs its ops).
                    await db._execute(statement, db._conn)  # type: ignore[no-untyped-call]
            # PRAGMA takes no bound parameters; version is an int we computed, not input.
            await db.execute_fetchall(f"PRAGMA user_version = {int(version)}")
            await db.execute_fetchall("COMMIT")
        except BaseException:
            await rollback_quietly(db)
            raise
        _LOGGER.info("ledger schema migrated to version %s", version)
    return target


async def rollback_quietly(db: aiosqlite.Connection) -> None:
    """Roll back the open transaction, if any; a failed rollback is only logged (the first error matters)."""
    if not db.in_transaction:
        return
    try:
        await db.execute_fetchall("ROLLBACK")
    except sqlite3.Error as exc:
        _LOGGER.warning("ledger rollback failed: %s", exc)
