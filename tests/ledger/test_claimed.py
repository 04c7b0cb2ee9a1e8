"""A shopper's own action and its token's claim in one transaction (privacy/action): exactly once.

The broker redelivers a message whose handler was killed after the commit: the second delivery finds the
claim and writes nothing, so the cloud gets one consent event, one erasure event, never two.
"""

from __future__ import annotations

from edge.clock import ManualClock
from edge.events import Purpose
from edge.ledger import ConsentRow, Ledger


async def _kinds(ledger: Ledger) -> list[str]:
    return [entry.kind for entry in await ledger.outbox.peek(100, 1 << 20)]


async def test_a_claimed_consent_is_written_once_whatever_the_redeliveries(
    ledger: Ledger, clock: ManualClock
) -> None:
    until = clock.wall() + 300
    row = ConsentRow("p-1", Purpose.PERSONALIZATION, False, clock.wall(), "kiosk")
    await ledger.set_consent(row, claim=("jti-1", until))
    clock.advance(2)  # the redelivery comes later: a row of its own time would outrank the first
    later = ConsentRow("p-1", Purpose.PERSONALIZATION, False, clock.wall(), "kiosk")
    await ledger.set_consent(later, claim=("jti-1", until))
    assert await _kinds(ledger) == ["consent"]
    (stored,) = await ledger.load_consents()
    assert stored.at_wall == row.at_wall
    assert not await ledger.claim_jti("jti-1", until)  # spent


async def test_a_claimed_erasure_is_done_once(ledger: Ledger, clock: ManualClock) -> None:
    until = clock.wall() + 300
    await ledger.set_consent(ConsentRow("p-2", Purpose.MEASUREMENT, True, clock.wall() - 10, "cloud"))
    assert await ledger.forget_shopper("p-2", claim=("jti-2", until)) is True
    clock.advance(2)
    assert await ledger.forget_shopper("p-2", claim=("jti-2", until)) is False  # done before: nothing now
    assert await _kinds(ledger) == ["erasure"]
    tombstone = ledger.replica.tombstone("p-2")
    assert tombstone is not None and tombstone < clock.wall()  # the first erasure's time, not the replay's
