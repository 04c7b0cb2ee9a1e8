"""The health JSON and the metric families of a fully equipped gateway keep their reference shapes.

``gateway/health`` (as published on MQTT) must have exactly the key paths, order and value types of
``health_shape.json``, and ``/metrics`` (parsed by prometheus_client) exactly the families, types and label
names of ``metric_families.json``: dashboards and display makers read both (docs/mqtt.md, docs/metrics.md).
How the references are made and regenerated: tests/control/reference.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.control.reference import (
    HEALTH_SHAPE,
    METRIC_FAMILIES,
    equipped_gateway,
    json_shape,
    metric_families,
    write_or_compare,
)
from tests.support.broker import Mosquitto


async def test_health_and_metrics_keep_their_reference_shapes(
    tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with equipped_gateway(tmp_path, mosquitto, monkeypatch) as kit:
        health = kit.last_health()
        exposition = await kit.scrape()
    shape = json_shape(health)
    assert shape == write_or_compare(HEALTH_SHAPE, shape)
    families = metric_families(exposition)
    assert families == write_or_compare(METRIC_FAMILIES, families)


def test_the_shape_sees_a_changed_type_a_moved_key_and_a_new_key() -> None:
    reference = json_shape({"v": 1, "mqtt": {"state": "connected", "outbox": 0, "received": 3}, "alerts": []})
    assert reference == [
        ".: object",
        "v: int",
        "mqtt: object",
        "mqtt.state: str",
        "mqtt.outbox: int",
        "mqtt.*: int",
        "alerts: list",
    ]
    assert json_shape({"v": 1.0, "mqtt": {"state": "connected", "outbox": 0}, "alerts": []}) != reference
    assert json_shape({"mqtt": {"state": "connected", "outbox": 0}, "v": 1, "alerts": []}) != reference
    assert (
        json_shape({"v": 1, "w": 2, "mqtt": {"state": "connected", "outbox": 0}, "alerts": []}) != reference
    )
    # a counter's keys are data: another reason counted is the same shape
    assert (
        json_shape({"v": 1, "mqtt": {"state": "backoff", "outbox": 2, "disconnects": 1}, "alerts": []})
        == reference
    )
