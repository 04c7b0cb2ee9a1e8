import json
import uuid

from edge.act.displays import DisplayBoard
from edge.clock import ManualClock
from edge.config.model import DisplaySettings, FallbackContent
from edge.events import Decision
from edge.transport.topics import Topics


class Harness:
    """A board over a recording publisher and a decide function that gives each shopper their own offer."""

    def __init__(self, min_display_s: float = 8, ttl_s: float = 45) -> None:
        self.clock = ManualClock()
        self.published: list[tuple[str, dict]] = []
        self.where: dict[str, str] = {}
        settings = [
            DisplaySettings(
                id="d1",
                zone="z",
                min_display_s=min_display_s,
                content_ttl_s=ttl_s,
                fallback=FallbackContent(template="loop", data={"p": 1}),
            ),
            DisplaySettings(id="d2", zone="other"),
        ]
        self.board = DisplayBoard(
            settings,
            topics=Topics("store/s1"),
            publish=lambda topic, payload, retain: self.published.append((topic, json.loads(payload))),
            decide=self.decide,
            is_present=lambda shopper, zone: self.where.get(shopper) == zone,
            clock=self.clock,
        )

    async def decide(self, display_id: str, zone: str, shopper_id: str | None) -> Decision:
        return Decision(
            decision_id=uuid.uuid4().hex,
            display_id=display_id,
            zone=zone,
            at_wall=self.clock.wall(),
            shopper_id=shopper_id,
            offer_id=f"offer-for-{shopper_id}",
            template="card",
            data={"s": shopper_id},
            model_version="m",
            propensity=1.0,
            explored=False,
            holdout=False,
            personalized=True,
        )

    def last(self, display: str = "d1") -> dict:
        return [body for topic, body in self.published if topic == f"store/s1/display/{display}/content"][-1]


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
    made = await h.board.request("z", "s1")
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
    await h.board.request("z", "s1")
    h.clock.advance(2)
    assert await h.board.request("z", "s2") == []  # no flicker: s1's content stays
    h.clock.advance(1)
    assert await h.board.request("z", "s3") == []
    assert h.board.counters["superseded"] == 1
    h.clock.advance(4.9)
    assert await h.board.tick() == []
    assert h.last()["offer_id"] == "offer-for-s1"
    h.clock.advance(0.1)
    made = await h.board.tick()
    assert [d.shopper_id for d in made] == ["s3"]
    assert h.last()["offer_id"] == "offer-for-s3"


async def test_pending_shopper_who_left_is_not_served() -> None:
    h = Harness(min_display_s=8)
    h.where.update(s1="z", s2="z")
    await h.board.request("z", "s1")
    await h.board.request("z", "s2")
    del h.where["s2"]
    h.board.shopper_left("z", "s2")
    h.clock.advance(10)
    assert await h.board.tick() == []
    assert h.last()["offer_id"] == "offer-for-s1"


async def test_expiry_and_release_to_fallback() -> None:
    h = Harness(min_display_s=8, ttl_s=30)
    h.where["s1"] = "z"
    await h.board.request("z", "s1")
    h.clock.advance(29.9)
    await h.board.tick()
    assert h.last()["fallback"] is False
    h.clock.advance(0.1)
    await h.board.tick()
    assert h.last()["fallback"] is True
    assert h.board.counters["expired"] == 1
    # leaving releases the screen, but only after the minimum display time
    await h.board.request("z", "s1")
    h.clock.advance(3)
    h.board.shopper_left("z", "s1")
    await h.board.tick()
    assert h.last()["fallback"] is False
    h.clock.advance(5)
    await h.board.tick()
    assert h.last()["fallback"] is True
    assert h.board.counters["released"] == 1


async def test_forget_clears_at_once_and_versions_are_monotonic() -> None:
    h = Harness()
    h.where["s1"] = "z"
    await h.board.request("z", "s1")
    before = h.last()["version"]
    h.board.forget_shopper("s1")
    assert h.last()["fallback"] is True
    assert h.last()["version"] > before


async def test_offline_display_is_skipped_and_acks_are_matched() -> None:
    h = Harness()
    h.where["s1"] = "z"
    h.board.set_online("d1", False)
    assert await h.board.request("z", "s1") == []
    assert h.board.counters["skipped_offline"] == 1
    h.board.set_online("d1", True)
    made = await h.board.request("z", "s1")
    found = h.board.lookup_ack("d1", made[0].decision_id)
    assert found is not None
    assert found[0] == h.last()["version"]
    assert h.board.lookup_ack("d2", made[0].decision_id) is None
    assert h.board.lookup_ack("nope", made[0].decision_id) is None
