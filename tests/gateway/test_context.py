"""The decision's context through the real parts (docs/context.md): the reference cloud sets the store's weather,
the gateway pulls it and decides with it until it is stale; a local sensor's newer reading on mosquitto wins;
an app's cart and an earlier POS sale are the shopper's basket in their decisions, and no one else's, until
they leave."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.clock import ManualClock, iso_utc
from edge.control.health_json import health_json
from edge.daemon import Gateway
from edge.decide.logged import decode_context
from edge.events import Decision, DecisionContext
from edge.ledger.context import StoredContext
from tests.support.broker import Mosquitto
from tests.support.clock import now
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.profilestore import running_profile_store
from tests.support.store import ROOT, STORE, StoreKit, make_store, synced_store
from tests.support.wait import until

HOUR = 3_600.0
SENSOR = f"{ROOT}/context/weather"
CHECKIN = f"{ROOT}/checkin"


def seen(decision: Decision) -> DecisionContext:
    """What the model saw, as the decision logged it (edge/decide/logged.py)."""
    assert decision.context is not None
    return decode_context(
        decision.context, display_id=decision.display_id, zone=decision.zone, at_wall=decision.at_wall
    ).context


async def decide(gateway: Gateway) -> DecisionContext:
    """An anonymous decision for the cafe's screen: the weather is the store's, for everyone."""
    return seen(await gateway.generation.decider.decide("screen-cafe", "cafe", None))


async def test_the_clouds_weather_is_decided_with_until_stale_and_a_newer_sensor_reading_wins(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    start = float(int(now()))  # whole seconds: observed_at is written in milliseconds
    clock = ManualClock(wall=start)
    async with running_profile_store(tmp_path) as cloud:
        token = await cloud.add_store(STORE)
        await cloud.add_store("s2")
        # Another store's weather, newer than ours: pulled by that store only.
        await cloud.put_weather("s2", temp_c=5.0, precipitation=True, observed_at=iso_utc(start - 10))
        await cloud.put_weather(
            STORE, temp_c=31.5, precipitation=False, forecast_max_c=34.0, observed_at=iso_utc(start - 600)
        )
        store = synced_store(tmp_path, mosquitto.port, cloud.base_url, token)
        async with running_gateway(store.settings(), clock=clock) as gateway, Probe(mosquitto.port) as sensor:
            context = gateway.generation.context
            await until(lambda: context.weather.stats().readings == {"cloud": 1, "sensor": 0})
            weather = (await decide(gateway)).weather
            assert weather is not None
            assert (weather.temp_c, weather.precipitation, weather.forecast_max_c) == (31.5, False, 34.0)

            # The sensor's reading is newer than the cloud's: it wins, and is kept in the ledger.
            bad = {"v": 1, "temp_c": 70, "precipitation": False, "observed_at": iso_utc(start - 60)}
            await sensor.publish(SENSOR, bad)  # Fahrenheit: refused, counted
            reading = {**bad, "temp_c": 12.0, "precipitation": True}
            await sensor.publish(SENSOR, reading, retain=True)
            await until(lambda: context.weather.stats().source == "sensor")
            assert gateway.generation.rejects.counts[("weather", "bad_temp")] == 1
            weather = (await decide(gateway)).weather
            assert weather is not None
            assert (weather.temp_c, weather.precipitation, weather.forecast_max_c) == (12.0, True, None)
            assert gateway.ledger is not None
            assert await gateway.ledger.context.weather() == StoredContext(
                "sensor", start - 60, {"temp_c": 12.0, "precipitation": True, "forecast_max_c": None}
            )

            # Three hours after the sensor's reading (the default weather_stale_s): unknown, not old.
            clock.advance(3 * HOUR - 60)
            assert (await decide(gateway)).weather is not None
            clock.advance(1)
            assert (await decide(gateway)).weather is None
            health = health_json(gateway.health())["context"]
            assert health["weather"]["known"] is False
            assert health["weather"]["source"] == "sensor"


def cart_checkin(store: StoreKit, shopper: str, clock: ManualClock, cart: list[str] | None = None) -> bytes:
    """An app check-in signed on the gateway's manual clock, with a scan-and-go ``cart``."""
    wall = int(clock.wall())
    body: dict[str, Any] = json.loads(store.checkin(shopper, iat=wall, exp=wall + 300))
    body["ts"] = iso_utc(clock.wall())
    if cart is not None:
        body["cart"] = cart
    return json.dumps(body).encode()


def sale(store: StoreKit, shopper: str, clock: ManualClock, *skus: str) -> dict[str, Any]:
    wall = int(clock.wall())
    return {
        "v": 1,
        "txn_id": f"t-{shopper}",
        "token": store.token(shopper, iat=wall, exp=wall + 300),
        "items": [{"sku": sku, "qty": 1, "price": 9.5} for sku in skus],
    }


async def test_a_cart_and_an_earlier_sale_are_the_shoppers_basket_until_they_leave(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    clock = ManualClock(wall=now())
    decisions: list[Decision] = []
    # Seeded shoppers (tests/support/store.py): p-full and p-nomeasure have personalization, p-anon has not.
    store = make_store(tmp_path / "store", mosquitto.port)
    async with (
        running_gateway(store.settings(), clock=clock, observers=[decisions.append]) as gateway,
        Probe(mosquitto.port) as app,
    ):

        async def checked_in(shopper: str, cart: list[str] | None = None) -> DecisionContext:
            before = len(decisions)
            await app.publish(CHECKIN, cart_checkin(store, shopper, clock, cart))
            await until(lambda: any(d.shopper_id == shopper for d in decisions[before:]))
            return seen(next(d for d in decisions[before:] if d.shopper_id == shopper))

        baskets = gateway.generation.context.baskets
        assert (await checked_in("p-full", ["RUN-SHOE-42", "SOCKS-3"])).basket == ("RUN-SHOE-42", "SOCKS-3")
        # Another shopper's decision does not see it; a shopper without personalization gets none held.
        assert (await checked_in("p-nomeasure")).basket == ()
        assert (await checked_in("p-anon", ["LIPSTICK-1"])).basket == ()
        assert baskets.stats().refused == 1

        # A POS sale with the shopper's token (no measurement consent needed), then a check-in: its SKUs.
        await app.publish(
            f"{ROOT}/pos/lane-1/transaction", sale(store, "p-nomeasure", clock, "MUG-7", "BEANS-1")
        )
        await until(lambda: baskets.get("p-nomeasure") == ("MUG-7", "BEANS-1"))
        assert (await checked_in("p-nomeasure", ["BEANS-1"])).basket == ("MUG-7", "BEANS-1")

        # A personalization withdrawal at a kiosk empties the shopper's basket at once.
        wall = int(clock.wall())
        withdrawal = {
            "v": 1,
            "token": store.token("p-full", iat=wall, exp=wall + 300),
            "source": "kiosk",
            "action": "consent",
            "purpose": "personalization",
            "granted": False,
        }
        assert baskets.get("p-full") == ("RUN-SHOE-42", "SOCKS-3")
        await app.publish(f"{ROOT}/privacy/action", withdrawal)
        await until(lambda: baskets.get("p-full") == ())

        # They leave every zone (check-in presence times out): the basket goes with the visit.
        clock.advance(gateway.settings.presence.checkin_timeout_s + 1)
        await until(lambda: baskets.stats().shoppers == 0)
        assert (await checked_in("p-full", ["RUN-SHOE-42"])).basket == ()  # withdrawn: nothing held
        assert (await checked_in("p-nomeasure")).basket == ()
        assert health_json(gateway.health())["context"]["basket"]["left"] == 2
