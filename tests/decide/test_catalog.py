from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.config.decisions import PolicySettings
from edge.decide.catalog import CATEGORIES, CatalogError, Offer, load_catalog, parse_catalog
from tests.decide.conftest import REPO

GOOD = """
[[offers]]
id = "a"
title = "A"
category = "coffee"
value = 1.0
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "offers.toml"
    path.write_text(text, encoding="utf-8")
    return path


def offers_toml(*bodies: str) -> str:
    return "".join(
        f'\n[[offers]]\nid = "o{i}"\ntitle = "t"\ncategory = "coffee"\n{body}\n'
        for i, body in enumerate(bodies)
    )


def errors_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        load_catalog(write(tmp_path, text))
    return caught.value.errors


def test_example_catalog_loads_and_covers_the_zones() -> None:
    catalog = load_catalog(REPO / "config" / "offers.example.toml")
    zones = {zone for offer in catalog.offers for zone in offer.zones}
    assert {"entrance", "fitting-rooms", "cafe", "electronics"} <= zones
    assert any(not offer.zones for offer in catalog.offers)
    assert any(offer.personal for offer in catalog.offers)
    assert any(not offer.active for offer in catalog.offers)
    assert {offer.category for offer in catalog.offers} <= set(CATEGORIES)
    assert len(catalog.offers) >= 12


def test_defaults(tmp_path: Path) -> None:
    (only,) = load_catalog(write(tmp_path, GOOD)).offers
    assert only.template == "offer"
    assert only.zones == ()
    assert only.windows == ()
    assert only.daily_cap_per_shopper == 3
    assert only.display_cooldown_s == 300.0
    assert only.active
    assert not only.personal


def test_error_has_the_key_path_with_the_list_index(tmp_path: Path) -> None:
    text = offers_toml("value = 1", "value = 1", "value = 1", "value = -1")
    assert errors_of(tmp_path, text) == ["offers.3.value: Input should be greater than or equal to 0"]


def test_every_problem_is_reported(tmp_path: Path) -> None:
    text = offers_toml("value = 1\ncolour = 'red'", "value = 1\ndiscount = 1.5", "value = 1").replace(
        'id = "o2"\ntitle = "t"\ncategory = "coffee"', 'id = "o2"\ntitle = "t"\ncategory = "cars"'
    )
    errors = errors_of(tmp_path, text)
    assert "offers.0.colour: Extra inputs are not permitted" in errors
    assert "offers.1.discount: Input should be less than or equal to 1" in errors
    assert any(line.startswith("offers.2.category: Input should be 'apparel'") for line in errors)
    assert len(errors) == 3


def test_duplicate_ids_and_empty_catalog(tmp_path: Path) -> None:
    duplicated = GOOD + GOOD
    assert errors_of(tmp_path, duplicated) == ["offers: Value error, duplicate offer ids: a"]
    assert errors_of(tmp_path, "offers = []") == ["offers: Value error, a catalog needs at least one offer"]
    assert errors_of(tmp_path, "")[0] == "offers: Field required"


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (
            '{ start = "25:00", end = "09:00" }',
            "offers.0.windows.0.start: Value error, '25:00' is not a time of day",
        ),
        ('{ start = "7:00", end = "09:00" }', "offers.0.windows.0.start: Value error, '7:00' is not HH:MM"),
        (
            '{ start = "24:00", end = "09:00" }',
            "offers.0.windows.0.start: Value error, '24:00' is not a time of day",
        ),
        ('{ days = [7], start = "07:00", end = "09:00" }', "offers.0.windows.0.days.0: Input should be less"),
        (
            '{ days = [], start = "07:00", end = "09:00" }',
            "offers.0.windows.0.days: Value error, a window needs at least one day",
        ),
        ('{ start = "07:00" }', "offers.0.windows.0.end: Field required"),
    ],
)
def test_bad_windows(tmp_path: Path, window: str, message: str) -> None:
    errors = errors_of(tmp_path, offers_toml(f"value = 1\nwindows = [{window}]"))
    assert len(errors) == 1
    assert errors[0].startswith(message)


def test_window_until_midnight_is_allowed(tmp_path: Path) -> None:
    catalog = load_catalog(
        write(tmp_path, offers_toml('value = 1\nwindows = [{ start = "18:00", end = "24:00" }]'))
    )
    (window,) = catalog.offers[0].windows
    assert (window.start_minute, window.end_minute) == (18 * 60, 24 * 60)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "missing.toml")
    assert errors_of(tmp_path, "[[offers]\nid=")[0].startswith("not valid TOML")


def test_message_names_the_file_and_lines(tmp_path: Path) -> None:
    path = write(tmp_path, offers_toml("value = -2"))
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert str(path) in str(caught.value)
    assert "offers.0.value" in str(caught.value)


def test_parse_catalog_from_data() -> None:
    catalog = parse_catalog({"offers": [{"id": "x", "title": "X", "category": "home", "value": 0}]})
    assert catalog.get("x") is not None
    assert catalog.get("y") is None
    with pytest.raises(CatalogError, match=r"offers\.0\.value"):
        parse_catalog({"offers": [{"id": "x", "title": "X", "category": "home"}]}, "cloud push")


def test_offers_are_frozen() -> None:
    item = Offer(id="x", title="X", category="home", value=1)
    with pytest.raises(ValidationError):
        item.value = 3  # type: ignore[misc]


def test_policy_settings_validate_the_time_zone() -> None:
    assert PolicySettings(tz="Europe/Berlin").tz == "Europe/Berlin"
    with pytest.raises(ValidationError, match="unknown time zone"):
        PolicySettings(tz="Mars/Olympus")
    with pytest.raises(ValidationError):
        PolicySettings(epsilon=1.5)
    with pytest.raises(ValidationError):
        PolicySettings(holdout_percent=60)
    with pytest.raises(ValidationError):
        PolicySettings(surprise=1)  # type: ignore[call-arg]
