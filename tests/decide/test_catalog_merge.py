"""Cloud offers over the file catalog: same id replaced, new ones added, unavailable ones switched off."""

from __future__ import annotations

from edge.decide.catalog import load_catalog, merged_catalog
from tests.support.store import REPO

BASE = load_catalog(REPO / "config/offers.example.toml")


def test_merge_replaces_adds_and_switches_off() -> None:
    first = BASE.offers[0]
    replaced = {**first.model_dump(mode="json"), "title": "from the cloud"}
    added = {"id": "cloud-only", "title": "new", "category": "coffee", "value": 1.0}
    merged = merged_catalog(
        BASE,
        {first.id: replaced, "cloud-only": added, "broken": {"id": "broken", "category": "cars"}},
        unavailable=[BASE.offers[1].id, "not-an-offer"],
    )
    by_id = {offer.id: offer for offer in merged.offers}
    assert by_id[first.id].title == "from the cloud"
    assert by_id["cloud-only"].value == 1.0
    assert "broken" not in by_id
    assert by_id[BASE.offers[1].id].active is False
    assert len(merged.offers) == len(BASE.offers) + 1
    # the file's own offers are untouched when the cloud says nothing
    assert merged_catalog(BASE, {}, []) == BASE
