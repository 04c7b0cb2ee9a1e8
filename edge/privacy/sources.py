"""Where an export's context comes from, for the tool and the running gateway alike: the retention in force,
the models that explain decisions, and the offers' titles."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping

from edge.config import GatewaySettings
from edge.decide.catalog import load_catalog
from edge.decide.lifecycle import ModelStore
from edge.decide.manifest import ModelError
from edge.privacy.explain import Explainer, ScoreFn
from edge.privacy.export import Retention

log = logging.getLogger(__name__)

_DAY = 86_400.0


def retention_of(settings: GatewaySettings) -> Retention:
    """The retention the ledger's purge applies (edge/config/model.py ``[ledger]``), in seconds."""
    days = float(settings.ledger.retention_days) * _DAY
    return Retention(decisions_s=days, exposures_s=days, device_settings_s=days, staff_interactions_s=days)


def model_loader(
    settings: GatewaySettings, current: ScoreFn | None = None, current_version: str | None = None
) -> Callable[[str], ScoreFn | None]:
    """Load a decision's model version: the running one, else the model store's copy (the last 3 kept)."""

    def load(version: str) -> ScoreFn | None:
        if current is not None and version == current_version:
            return current
        try:
            return ModelStore.at(settings.control.state_dir).load(version).score
        except (ModelError, OSError) as exc:
            log.info(
                "model %s is no longer installed; its decisions are listed without contributions (%s)",
                version,
                exc,
            )
            return None

    return load


def explainer_for(
    settings: GatewaySettings, current: ScoreFn | None = None, version: str | None = None
) -> Explainer:
    return Explainer(model_loader(settings, current, version))


def offer_titles(settings: GatewaySettings, cloud_offers: Mapping[str, str] | None = None) -> dict[str, str]:
    """Offer id -> title: the store's offers file, the cloud's offers over it."""
    titles: dict[str, str] = {}
    try:
        titles.update(
            {offer.id: offer.title for offer in load_catalog(settings.decisions.offers_file).offers}
        )
    except (OSError, ValueError) as exc:
        log.info("offers file unreadable for titles (%s); offers are listed by id", exc)
    titles.update(cloud_offers or {})
    return titles


def titles_from_bodies(rows: list[tuple[str, str]]) -> dict[str, str]:
    """The replica's offer bodies (JSON) -> id -> title; bodies without a title are skipped."""
    titles: dict[str, str] = {}
    for offer_id, body in rows:
        try:
            title = json.loads(body).get("title")
        except (ValueError, AttributeError):
            continue
        if isinstance(title, str):
            titles[offer_id] = title
    return titles
