import pytest
from pydantic import ValidationError

from edge.clock import ManualClock
from edge.config.ble import BeaconSettings
from edge.presence.beacons import BeaconRegistry

UUID = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"


def settings() -> list[BeaconSettings]:
    return [
        BeaconSettings(
            name="cafe-ceiling", kind="ibeacon", zone="cafe", uuid=UUID, major=1, minor=2, missing_after_s=60
        ),
        BeaconSettings(
            name="door",
            kind="eddystone-uid",
            zone="entrance",
            namespace="edd1ebeac04e5defa017",
            instance="0123456789ab",
        ),
    ]


def test_keys_zones_and_unknown_beacons_are_not_kept() -> None:
    clock = ManualClock()
    registry = BeaconRegistry(settings(), clock)
    assert f"ibeacon:{UUID}:1:2" in registry
    assert registry.zone_of("eddystone-uid:edd1ebeac04e5defa017:0123456789ab") == "entrance"
    assert not registry.seen(f"ibeacon:{UUID}:9:9", "AA:AA", "local:hci0", -60, clock.monotonic())
    assert not registry.telemetry("AA:AA", 3000, 21.5)  # the address was not remembered


def test_health_missing_and_telemetry() -> None:
    clock = ManualClock()
    registry = BeaconRegistry(settings(), clock)
    assert registry.missing() == ["cafe-ceiling", "door"]
    registry.seen(f"ibeacon:{UUID}:1:2", "C0:FF:EE:00:00:01", "local:hci0", -61, clock.monotonic())
    assert registry.telemetry("C0:FF:EE:00:00:01", 2950, -3.5)
    assert registry.missing() == ["door"]
    clock.advance(61)
    assert registry.missing() == ["cafe-ceiling", "door"]
    cafe = registry.stats()[0]
    assert cafe.battery_mv == 2950
    assert cafe.temperature_c == -3.5
    assert cafe.missing is True
    assert cafe.last_seen_age_s == 61.0


def test_settings_validation() -> None:
    with pytest.raises(ValidationError, match="needs uuid"):
        BeaconSettings(name="x", kind="ibeacon", zone="z", uuid="not-a-uuid", major=1, minor=1)
    with pytest.raises(ValidationError, match="needs namespace"):
        BeaconSettings(name="x", kind="eddystone-uid", zone="z", namespace="00", instance="01")
