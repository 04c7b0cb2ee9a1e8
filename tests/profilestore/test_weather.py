"""A store's weather on the reference cloud: `PUT /admin/v1/stores/{id}/weather` is a `weather` change only that
store pulls, each replacing the one before; bad readings and unknown stores are refused (docs/context.md)."""

from __future__ import annotations

from pathlib import Path

from edge.clock import iso_utc
from tests.support.clock import now
from tests.support.profilestore import running_profile_store


async def test_a_stores_weather_is_its_own_and_replaces_the_last_one(tmp_path: Path) -> None:
    async with running_profile_store(tmp_path) as cloud:
        mine, theirs = await cloud.add_store("s1"), await cloud.add_store("s2")
        observed = iso_utc(now() - 600)
        await cloud.put_weather("s1", temp_c=18, precipitation=True, observed_at=observed)
        await cloud.put_weather(
            "s1", temp_c=31.5, precipitation=False, forecast_max_c=34, observed_at=observed
        )
        await cloud.put_weather("s2", temp_c=5.0, precipitation=True)  # observed_at: now
        changes, _ = await cloud.pull_all("s1", mine)
        weather = [change for change in changes if change["kind"] == "weather"]
        assert [(c["id"], c["op"]) for c in weather] == [("s1", "upsert")]  # one entry: the newest
        assert weather[0]["data"] == {
            "temp_c": 31.5,
            "precipitation": False,
            "forecast_max_c": 34.0,
            "observed_at": weather[0]["data"]["observed_at"],
        }
        assert weather[0]["data"]["observed_at"].startswith(observed[:19])
        others, _ = await cloud.pull_all("s2", theirs)
        assert [(c["id"], c["data"]["temp_c"]) for c in others if c["kind"] == "weather"] == [("s2", 5.0)]


async def test_a_bad_reading_or_an_unknown_store_is_refused(tmp_path: Path) -> None:
    async with running_profile_store(tmp_path) as cloud:
        await cloud.add_store("s1")
        good = {"temp_c": 20.0, "precipitation": False}
        await cloud.admin("PUT", "/admin/v1/stores/s-none/weather", good, expect=404)
        for bad in (
            {**good, "temp_c": 70.0},  # Fahrenheit
            {**good, "temp_c": "20"},
            {**good, "temp_c": True},
            {**good, "precipitation": "no"},
            {**good, "forecast_max_c": -100},
            {**good, "observed_at": iso_utc(now() + 301)},
            {**good, "wind": 3},
            {"temp_c": 20.0},
        ):
            await cloud.admin("PUT", "/admin/v1/stores/s1/weather", bad, expect=400)
        assert (await cloud.admin("PUT", "/admin/v1/stores/s1/weather", good))["seq"] > 0
        assert cloud.stores == ["s1"]  # the weather's path is not a store's registration
