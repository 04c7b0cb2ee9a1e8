import sqlite3
from pathlib import Path

from edge.tools.ble import MIN_HYSTERESIS_DB, read_presence_consents, thresholds


def test_thresholds_follow_the_median_and_spread() -> None:
    steady = thresholds("store beacon a", [-70] * 20 + [-71] * 10 + [-69] * 10)
    assert steady.enter_rssi_dbm == -70
    assert steady.enter_rssi_dbm - steady.exit_rssi_dbm == MIN_HYSTERESIS_DB  # tight samples: the floor
    noisy = thresholds("store beacon a", [-70, -62, -80, -71, -69, -85, -70, -66, -74, -70, -90, -68])
    assert noisy.enter_rssi_dbm == -70
    assert noisy.exit_rssi_dbm < steady.exit_rssi_dbm  # a wider spread gives a lower exit
    assert noisy.p10_dbm <= noisy.median_dbm <= noisy.p90_dbm


def test_consents_are_read_read_only(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    assert read_presence_consents(db) == frozenset()
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE consents (shopper_id TEXT, purpose TEXT, granted INTEGER, at_wall REAL, source TEXT)"
        )
        conn.executemany(
            "INSERT INTO consents VALUES (?, ?, ?, 0, 'seed')",
            [("a", "presence_ble", 1), ("b", "presence_ble", 0), ("c", "personalization", 1)],
        )
    assert read_presence_consents(db) == frozenset({"a"})
    assert not list(tmp_path.glob("*-wal"))  # nothing was written
