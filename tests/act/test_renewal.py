"""Renewal: content whose shopper is still in the zone after ``content_ttl_s`` is decided for them again."""

from __future__ import annotations

from tests.act.harness import Harness


async def test_a_present_shopper_is_decided_again_when_the_ttl_runs_out() -> None:
    h = Harness(min_display_s=8, ttl_s=30)
    h.where["s1"] = "z"
    await h.board.request("z", "s1", h.commit)
    first = h.last()
    h.clock.advance(29.9)
    assert await h.board.tick(h.commit) == []
    h.clock.advance(0.1)
    renewed = await h.board.tick(h.commit)
    assert [d.shopper_id for d in renewed] == ["s1"]
    assert h.last()["decision_id"] != first["decision_id"]
    assert h.last()["fallback"] is False
    assert h.last()["version"] > first["version"]
    assert [d.decision_id for d in h.committed][-1] == h.last()["decision_id"]  # recorded before shown
    assert (h.board.counters["renewed"], h.board.counters["expired"]) == (1, 0)
    # ... and again 30 s later, for as long as they stay
    h.clock.advance(30)
    assert [d.shopper_id for d in await h.board.tick(h.commit)] == ["s1"]
    assert h.board.counters["renewed"] == 2


async def test_an_offline_screen_is_not_renewed_but_falls_back() -> None:
    h = Harness(min_display_s=8, ttl_s=30)
    h.where["s1"] = "z"
    await h.board.request("z", "s1", h.commit)
    h.board.set_online("d1", False)
    h.clock.advance(30)
    assert await h.board.tick(h.commit) == []
    assert h.last()["fallback"] is True
    assert (h.board.counters["renewed"], h.board.counters["expired"]) == (0, 1)
