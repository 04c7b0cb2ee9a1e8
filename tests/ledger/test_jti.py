"""Token replay cache: claim, replay, expiry, purge, and durability across a restart."""

from __future__ import annotations

from edge.clock import ManualClock
from edge.ledger import Ledger
from edge.ledger.ops import FORGET_AT_MOST, FORGET_EVERY_CLAIMS


async def test_claim_then_replay_then_expiry(ledger: Ledger, clock: ManualClock) -> None:
    exp = clock.wall() + 300
    assert await ledger.claim_jti("j1", exp) is True
    assert await ledger.claim_jti("j1", exp) is False
    clock.advance(299)
    assert await ledger.claim_jti("j1", exp) is False
    assert ledger.stats().jti_replays == 2
    # At exp the token is expired, so the id may be claimed afresh (with its new expiry).
    clock.advance(1)
    assert await ledger.claim_jti("j1", clock.wall() + 300) is True
    assert await ledger.claim_jti("j1", clock.wall() + 300) is False


async def test_purge_drops_only_expired_claims(ledger: Ledger, clock: ManualClock) -> None:
    now = clock.wall()
    assert await ledger.claim_jti("short", now + 10)
    assert await ledger.claim_jti("long", now + 1000)
    assert (await ledger.purge(now + 10)).removed["jti"] == 1
    assert (await ledger.table_counts())["jti"] == 1
    clock.advance(20)
    assert await ledger.claim_jti("long", now + 1000) is False


async def test_claim_survives_restart(db_path, clock: ManualClock) -> None:
    async with Ledger(db_path, clock) as ledger:
        assert await ledger.claim_jti("j1", clock.wall() + 60)
    async with Ledger(db_path, clock) as ledger:
        assert await ledger.claim_jti("j1", clock.wall() + 60) is False


async def test_a_purge_keeps_its_floor_and_forgets_nothing_while_the_clock_is_behind_it(
    db_path, clock: ManualClock
) -> None:
    start = clock.wall()
    async with Ledger(db_path, clock) as ledger:
        assert await ledger.claim_jti("old", start + 330)
        assert (await ledger.purge(start + 3600)).removed["jti"] == 1
        marks = await ledger.clock_marks()
        assert marks.jti_forgotten_through_wall == marks.high_water_wall == start + 3600
        # The clock is now behind the purge (a restart with an old time): a claim that ended by "now"
        # is kept, because the floor, not "now", says what may have been forgotten.
        assert await ledger.claim_jti("recent", start + 100)
        assert (await ledger.purge(start + 200)).removed["jti"] == 0
        assert (await ledger.table_counts())["jti"] == 1
        assert (await ledger.clock_marks()).jti_forgotten_through_wall == start + 3600  # never lowered
    async with Ledger(db_path, clock) as ledger:  # durable across a restart
        assert (await ledger.clock_marks()).jti_forgotten_through_wall == start + 3600
        assert (await ledger.purge(start + 3700)).removed["jti"] == 1  # the clock caught up: purging again
        assert await ledger.mark_wall(start + 50) == start + 3700  # the high-water mark never goes down


async def test_claims_forget_ended_ones_as_they_go_without_waiting_for_the_hourly_purge(
    ledger: Ledger, clock: ManualClock
) -> None:
    # A busy store claims ~66 tokens a second: the table must not grow for an hour and then lose
    # 240,000 rows in one transaction (a stall of the one writer that every check-in waits on).
    start = clock.wall()
    for index in range(FORGET_EVERY_CLAIMS):
        assert await ledger.claim_jti(f"old-{index}", start + 10)
    clock.advance(11)  # every one of them has ended
    live = [f"new-{index}" for index in range(FORGET_EVERY_CLAIMS - 1)]
    for jti in live:
        assert await ledger.claim_jti(jti, clock.wall() + 300)
    assert (await ledger.table_counts())["jti"] == 2 * FORGET_EVERY_CLAIMS - 1  # not yet
    assert await ledger.claim_jti("the-next", clock.wall() + 300)
    assert (await ledger.table_counts())["jti"] == FORGET_EVERY_CLAIMS  # the ended ones went with it
    marks = await ledger.clock_marks()
    assert marks.jti_forgotten_through_wall == start + 10  # through the last forgotten claim, not "now"
    assert all([not await ledger.claim_jti(jti, clock.wall() + 300) for jti in live])  # kept


async def test_claims_forget_a_bounded_number_and_nothing_while_the_clock_is_behind(
    db_path, clock: ManualClock
) -> None:
    start = clock.wall()
    async with Ledger(db_path, clock) as ledger:
        for index in range(FORGET_AT_MOST + 2 * FORGET_EVERY_CLAIMS):
            await ledger.claim_jti(f"old-{index:05d}", start + 1 + index)
        before = (await ledger.table_counts())["jti"]
        clock.advance(10 * FORGET_AT_MOST)
        for index in range(FORGET_EVERY_CLAIMS):
            await ledger.claim_jti(f"new-{index}", clock.wall() + 300)
        # One step forgets at most FORGET_AT_MOST, the oldest first.
        assert (await ledger.table_counts())["jti"] == before + FORGET_EVERY_CLAIMS - FORGET_AT_MOST
        assert (await ledger.clock_marks()).jti_forgotten_through_wall == start + FORGET_AT_MOST
        assert (await ledger.purge(clock.wall() + 3600)).removed["jti"] > 0
    # A restart with a clock behind that purge (a Pi without a real-time clock): claims that ended by the
    # clock's own "now" are not forgotten, since the floor, not "now", says what may be forgotten.
    behind_clock = ManualClock(wall=start + 500)
    async with Ledger(db_path, behind_clock) as ledger:
        kept = (await ledger.table_counts())["jti"]
        for index in range(FORGET_EVERY_CLAIMS):
            assert await ledger.claim_jti(f"behind-{index}", start + 400)  # ended by the clock's "now"
        assert (await ledger.table_counts())["jti"] == kept + FORGET_EVERY_CLAIMS
