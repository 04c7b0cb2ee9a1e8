"""Where an export's context comes from, for the tool and the running gateway alike: the retention in force,
the models that explain decisions, and the offers' titles."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from edge.clock import Clock
from edge.config import GatewaySettings
from edge.decide.catalog import load_catalog
from edge.decide.lifecycle import ModelStore
from edge.decide.manifest import ModelError
from edge.decide.policy import DecisionEngine
from edge.ledger import Ledger
from edge.privacy.explain import Explainer, ScoreFn
from edge.privacy.export import ExportContext, Presence, Retention, build_export

log = logging.getLogger(__name__)

_DAY = 86_400.0


def retention_of(settings: GatewaySettings) -> Retention:
    """The retention the ledger's purge applies (``[ledger.retention]``), in seconds."""
    kept = settings.ledger.retention
    return Retention(
        decisions_s=kept.decisions_days * _DAY,
        exposures_s=kept.exposures_days * _DAY,
        device_settings_s=kept.device_settings_days * _DAY,
        staff_interactions_s=kept.staff_interactions_days * _DAY,
        profile_unseen_s=kept.profiles_unseen_days * _DAY,
        conversions_s=kept.conversions_days * _DAY,
        campaign_exposures_s=kept.campaign_exposures_days * _DAY,
    )


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


class LiveExport:
    """The running gateway's export of one shopper: the ledger's rows, where they are now (memory), the
    running model and the store's offers; the explanation runs off the event loop."""

    def __init__(
        self,
        settings: GatewaySettings,
        ledger: Ledger,
        clock: Clock,
        zone_of: Callable[[str], str | None],
        engine: Callable[[], DecisionEngine],
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._clock = clock
        self._zone_of = zone_of
        self._engine = engine

    async def __call__(self, shopper_id: str, *, explain: bool = True) -> dict[str, Any]:
        """The export; ``explain`` False (a kiosk's summary, which shows counts): no model runs, no offer titles."""
        rows = await self._ledger.privacy_rows(shopper_id)
        zone = self._zone_of(shopper_id)
        if not explain:
            plain = ExportContext(
                store_id=self._settings.store.id,
                generated_wall=self._clock.wall(),
                retention=retention_of(self._settings),
            )
            return build_export(rows, plain, None)
        bodies = await self._ledger.cloud_offer_bodies()
        ctx = ExportContext(
            store_id=self._settings.store.id,
            generated_wall=self._clock.wall(),
            retention=retention_of(self._settings),
            offer_titles=offer_titles(self._settings, titles_from_bodies(bodies)),
            presence=[] if zone is None else [Presence(zone, "check-in")],
            presence_timeout_s=self._settings.presence.checkin_timeout_s,
        )
        engine = self._engine()
        explainer = explainer_for(self._settings, engine.scorer.score, engine.model_version)
        return await asyncio.to_thread(build_export, rows, ctx, explainer)
