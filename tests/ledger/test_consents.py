"""Consent upserts: latest wins, a withdrawal wins a tie, and the result matches a pure model."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.clock import ManualClock
from edge.events import Purpose
from edge.ledger import ConsentRow, Ledger


async def test_latest_wins(ledger: Ledger) -> None:
    await ledger.set_consent(ConsentRow("s1", Purpose.PERSONALIZATION, True, 10.0, "app"))
    await ledger.set_consent(ConsentRow("s1", Purpose.PERSONALIZATION, False, 20.0, "kiosk"))
    # An older grant arriving late (e.g. from the cloud) does not undo the newer withdrawal.
    await ledger.set_consent(ConsentRow("s1", Purpose.PERSONALIZATION, True, 15.0, "cloud"))
    assert await ledger.load_consents() == [ConsentRow("s1", Purpose.PERSONALIZATION, False, 20.0, "kiosk")]
    await ledger.set_consent(ConsentRow("s1", Purpose.PERSONALIZATION, True, 30.0, "app"))
    assert await ledger.load_consents() == [ConsentRow("s1", Purpose.PERSONALIZATION, True, 30.0, "app")]
    assert ledger.stats().consent_stale == 1


async def test_withdrawal_wins_a_tie_in_either_order(ledger: Ledger) -> None:
    await ledger.set_consent(ConsentRow("s1", Purpose.CLIENTELING, True, 10.0, "app"))
    await ledger.set_consent(ConsentRow("s1", Purpose.CLIENTELING, False, 10.0, "app"))
    await ledger.set_consent(ConsentRow("s2", Purpose.CLIENTELING, False, 10.0, "app"))
    await ledger.set_consent(ConsentRow("s2", Purpose.CLIENTELING, True, 10.0, "app"))
    assert [(c.shopper_id, c.granted) for c in await ledger.load_consents()] == [("s1", False), ("s2", False)]


async def test_purposes_are_independent(ledger: Ledger) -> None:
    await ledger.set_consent(ConsentRow("s1", Purpose.MEASUREMENT, True, 10.0, "app"))
    await ledger.set_consent(ConsentRow("s1", Purpose.PRESENCE_BLE, False, 11.0, "app"))
    assert {(c.purpose, c.granted) for c in await ledger.load_consents()} == {
        (Purpose.MEASUREMENT, True),
        (Purpose.PRESENCE_BLE, False),
    }


def _model(rows: list[ConsentRow]) -> dict[tuple[str, Purpose], ConsentRow]:
    """The documented rule as plain Python: keep the maximum of (at_wall, withdrawn, source)."""
    state: dict[tuple[str, Purpose], ConsentRow] = {}
    for row in rows:
        key = (row.shopper_id, row.purpose)
        old = state.get(key)
        if old is None or (row.at_wall, not row.granted, row.source) > (
            old.at_wall,
            not old.granted,
            old.source,
        ):
            state[key] = row
    return state


_rows = st.builds(
    ConsentRow,
    shopper_id=st.sampled_from(["s1", "s2"]),
    purpose=st.sampled_from([Purpose.PERSONALIZATION, Purpose.CLIENTELING]),
    granted=st.booleans(),
    # Few distinct times so ties are common.
    at_wall=st.sampled_from([0.0, 1.0, 1.5, 2.0]),
    source=st.sampled_from(["app", "cloud", "kiosk"]),
)


async def _apply(path: Path, rows: list[ConsentRow], *, concurrently: bool) -> list[ConsentRow]:
    async with Ledger(path, ManualClock()) as ledger:
        if concurrently:
            await asyncio.gather(*(ledger.set_consent(row) for row in rows))
        else:
            for row in rows:
                await ledger.set_consent(row)
        return await ledger.load_consents()


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(_rows, max_size=25), concurrently=st.booleans())
def test_upserts_match_the_reference_model(rows: list[ConsentRow], concurrently: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        stored = asyncio.run(_apply(Path(folder) / "ledger.db", rows, concurrently=concurrently))
    expected = _model(rows)
    assert stored == [expected[key] for key in sorted(expected)]
