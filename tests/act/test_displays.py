import asyncio

import pytest

from edge.events import Decision
from tests.act.harness import Harness


async def test_idle_then_offer_manifest_fields() -> None:
    h = Harness()
    h.board.publish_idle()
    idle = h.last()
    assert idle["fallback"] is True
    assert idle["template"] == "loop"
    assert idle["data"] == {"p": 1}
    assert idle["decision_id"] is None
    assert idle["expires_at"] is None
    h.where["s1"] = "z"
    made = await h.board.request("z", "s1", h.commit)
    assert len(made) == 1
    shown = h.last()
    assert shown["offer_id"] == "offer-for-s1"
    assert shown["decision_id"] == made[0].decision_id
    assert shown["version"] > idle["version"]
    assert shown["fallback"] is False
    assert shown["expires_at"] is not None
    assert set(shown) >= {
        "v",
        "ts",
        "display",
        "version",
        "decision_id",
        "offer_id",
        "template",
        "data",
        "issued_at",
        "expires_at",
        "fallback",
    }


async def test_min_display_time_then_newest_pending_wins() -> None:
    h = Harness(min_display_s=8)
    h.where.update(s1="z", s2="z", s3="z")
    await h.board.request("z", "s1", h.commit)
    h.clock.advance(2)
    assert await h.board.request("z", "s2", h.commit) == []  # no flicker: s1's content stays
    h.clock.advance(1)
    assert await h.board.request("z", "s3", h.commit) == []
    assert h.board.counters["superseded"] == 1
    h.clock.advance(4.9)
    assert await h.board.tick(h.commit) == []
    assert h.last()["offer_id"] == "offer-for-s1"
    h.clock.advance(0.1)
    made = await h.board.tick(h.commit)
    assert [d.shopper_id for d in made] == ["s3"]
    assert h.last()["offer_id"] == "offer-for-s3"


async def test_pending_shopper_who_left_is_not_served() -> None:
    h = Harness(min_display_s=8)
    h.where.update(s1="z", s2="z")
    await h.board.request("z", "s1", h.commit)
    await h.board.request("z", "s2", h.commit)
    del h.where["s2"]
    h.board.shopper_left("z", "s2")
    h.clock.advance(10)
    assert await h.board.tick(h.commit) == []
    assert h.last()["offer_id"] == "offer-for-s1"


async def test_expiry_and_release_to_fallback() -> None:
    h = Harness(min_display_s=8, ttl_s=30)
    h.where["s1"] = "z"
    await h.board.request("z", "s1", h.commit)
    del h.where["s1"]  # walked off, their leave not known yet: the content expires (test_renewal.py: stays)
    h.clock.advance(29.9)
    await h.board.tick(h.commit)
    assert h.last()["fallback"] is False
    h.clock.advance(0.1)
    await h.board.tick(h.commit)
    assert h.last()["fallback"] is True
    assert h.board.counters["expired"] == 1
    # leaving releases the screen, but only after the minimum display time
    await h.board.request("z", "s1", h.commit)
    h.clock.advance(3)
    h.board.shopper_left("z", "s1")
    await h.board.tick(h.commit)
    assert h.last()["fallback"] is False
    h.clock.advance(5)
    await h.board.tick(h.commit)
    assert h.last()["fallback"] is True
    assert h.board.counters["released"] == 1


async def test_forget_clears_at_once_and_versions_are_monotonic() -> None:
    h = Harness()
    h.where["s1"] = "z"
    await h.board.request("z", "s1", h.commit)
    before = h.last()["version"]
    h.board.forget_shopper("s1")
    assert h.last()["fallback"] is True
    assert h.last()["version"] > before


async def test_offline_display_is_skipped_and_acks_are_matched() -> None:
    h = Harness()
    h.where["s1"] = "z"
    h.board.set_online("d1", False)
    assert await h.board.request("z", "s1", h.commit) == []
    assert h.board.counters["skipped_offline"] == 1
    h.board.set_online("d1", True)
    made = await h.board.request("z", "s1", h.commit)
    found = h.board.lookup_ack("d1", made[0].decision_id)
    assert found is not None
    assert found[0] == h.last()["version"]
    assert h.board.lookup_ack("d2", made[0].decision_id) is None
    assert h.board.lookup_ack("nope", made[0].decision_id) is None


async def test_a_decision_is_committed_before_its_manifest_is_published() -> None:
    h = Harness()
    h.board.publish_idle()
    h.where["s1"] = "z"
    seen_at_commit: list[list[str | None]] = []

    async def commit(decisions: list[Decision]) -> bool:
        seen_at_commit.append([body.get("decision_id") for _, body in h.published])
        return True

    made = await h.board.request("z", "s1", commit)
    assert len(made) == 1
    assert seen_at_commit == [[None, None]]  # only the two idle fallbacks were out while committing
    assert h.last()["decision_id"] == made[0].decision_id


async def test_a_failed_or_refused_commit_shows_nothing_and_frees_the_screen() -> None:
    h = Harness()
    h.board.publish_idle()
    h.where.update(s1="z", s2="z")

    async def failing(decisions: list[Decision]) -> bool:
        raise OSError("disk gone")

    async def refusing(decisions: list[Decision]) -> bool:
        return False

    with pytest.raises(OSError, match="disk gone"):
        await h.board.request("z", "s1", failing)
    assert await h.board.request("z", "s1", refusing) == []
    assert h.last()["fallback"] is True
    assert len(h.published) == 2  # nothing but the idle manifests
    # The screen was not left reserved: the next request is served at once.
    made = await h.board.request("z", "s2", h.commit)
    assert [d.shopper_id for d in made] == ["s2"]
    assert h.last()["offer_id"] == "offer-for-s2"


async def test_a_request_during_a_commit_waits_for_it_then_is_arbitrated_as_usual() -> None:
    h = Harness(min_display_s=8)
    h.where.update(s1="z", s2="z")
    release = asyncio.Event()

    async def slow(decisions: list[Decision]) -> bool:
        await release.wait()
        return True

    first = asyncio.create_task(h.board.request("z", "s1", slow))
    await asyncio.sleep(0)
    second = asyncio.create_task(h.board.request("z", "s2", h.commit))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not second.done()  # the screen is being served: s2 waits, it does not race s1 for it
    release.set()
    assert [d.shopper_id for d in await first] == ["s1"]
    assert await second == []  # then the usual rule: s1's minimum time holds, s2 is pending
    h.clock.advance(8)
    assert [d.shopper_id for d in await h.board.tick(h.commit)] == ["s2"]


async def test_with_no_minimum_time_requests_during_a_commit_are_all_shown_in_order() -> None:
    h = Harness(min_display_s=0)
    h.where.update(s1="z", s2="z", s3="z")
    release = asyncio.Event()

    async def slow(decisions: list[Decision]) -> bool:
        await release.wait()
        return True

    tasks = [asyncio.create_task(h.board.request("z", "s1", slow))]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(h.board.request("z", shopper, h.commit)) for shopper in ("s2", "s3")]
    for _ in range(5):
        await asyncio.sleep(0)
    release.set()
    made = [await task for task in tasks]
    assert [[d.shopper_id for d in decisions] for decisions in made] == [["s1"], ["s2"], ["s3"]]
    assert h.board.counters["superseded"] == 0
    assert h.last()["offer_id"] == "offer-for-s3"


async def test_an_erasure_during_the_commit_keeps_the_decision_off_the_screen() -> None:
    h = Harness()
    h.board.publish_idle()
    h.where["s1"] = "z"

    async def commit_then_erased(decisions: list[Decision]) -> bool:
        h.board.forget_shopper("s1")
        return True

    assert await h.board.request("z", "s1", commit_then_erased) == []
    assert h.last()["fallback"] is True
