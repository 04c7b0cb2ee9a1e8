"""`edge-gateway dead-letter list|export [--parked]`: what the cloud refused, read from the store's ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge import cli
from edge.clock import ManualClock
from edge.ledger import Ledger, Refusal
from edge.sync.wire import EventClass
from tests.support.store import make_store


async def test_list_and_export_the_dead_letters_and_the_parked_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store(tmp_path / "store", 1883)
    ledger_path = store.settings().ledger.path
    clock = ManualClock()
    async with Ledger(ledger_path, clock) as ledger:
        await ledger.outbox.enqueue("decision", EventClass.TELEMETRY, {"n": 1}, shopper_id="p-1")
        await ledger.outbox.enqueue("conversion", EventClass.CONVERSION, {"n": 2})
        telemetry, conversion = await ledger.outbox.peek(10, 1 << 20)
        await ledger.dead_letters.settle(
            [],
            give_up=[Refusal(telemetry, "rejected by the cloud: kind: bad")],
            park=[Refusal(conversion, "rejected by the cloud: data: bad")],
            now_wall=clock.wall(),
            retry_in=lambda attempt: 60.0 * attempt,
        )

        config = str(store.config_path)
        assert cli.main(["dead-letter", "list", "--config", config]) == 0
        listed = capsys.readouterr().out.splitlines()
        assert listed[0].startswith("1 dead letters in ")
        assert telemetry.event_id in listed[1] and "kind: bad" in listed[1] and "p-1" not in listed[1]

        assert cli.main(["dead-letter", "export", "--config", config]) == 0
        (line,) = capsys.readouterr().out.splitlines()
        exported = json.loads(line)
        assert exported["state"] == "dead" and exported["reason"] == "rejected by the cloud: kind: bad"
        assert exported["event"] == json.loads(telemetry.body)  # as it was pushed, shopper id included

        assert cli.main(["dead-letter", "export", "--config", config, "--parked"]) == 0
        (line,) = capsys.readouterr().out.splitlines()
        parked = json.loads(line)
        assert (parked["state"], parked["id"], parked["attempts"]) == ("parked", conversion.event_id, 1)
        assert parked["next_attempt"] == clock.wall() + 60


def test_a_missing_ledger_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store(tmp_path / "store", 1883)
    assert cli.main(["dead-letter", "list", "--config", str(store.config_path)]) == 1
    assert "cannot read the ledger" in capsys.readouterr().err
