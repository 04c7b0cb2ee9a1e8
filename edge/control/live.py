"""Applying a configuration to the running generation where the change allows it, without a rebuild.

Decisions (model, catalog, policy), presence timeouts, the log level and the health interval change live;
anything else is a rebuild (docs/remote-config.md). Whatever can fail is loaded before anything is swapped.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Final

from edge.clock import Clock
from edge.config import GatewaySettings
from edge.config.decisions import DecisionSettings
from edge.control.logs import set_level
from edge.control.remote import ApplyError
from edge.decide.catalog import load_catalog
from edge.decide.lifecycle import ModelStore
from edge.decide.manifest import ModelError
from edge.decide.policy import DecisionEngine
from edge.decide.scorer import load_model
from edge.generation import Generation, local_midnight

log = logging.getLogger(__name__)

# Sections a configuration change can take without rebuilding the gateway's parts (docs/remote-config.md).
LIVE_SECTIONS: Final = frozenset({"logging", "presence", "decisions", "health"})
# Rebuilding keeps the ledger open unless one of these changed (then it is closed and opened again).
LEDGER_SECTIONS: Final = ("ledger", "sync")


def sections(settings: GatewaySettings, names: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(getattr(settings, name) for name in names)


def changed_sections(old: GatewaySettings, new: GatewaySettings) -> set[str]:
    return {name for name in type(old).model_fields if getattr(old, name) != getattr(new, name)}


def live_possible(old: GatewaySettings, new: GatewaySettings, *, syncing: bool) -> bool:
    """Whether the sections that changed can change live (else: a rebuild)."""
    if not changed_sections(old, new) <= LIVE_SECTIONS:
        return False
    # The metrics endpoint is a socket: a new address is a rebuild. Cloud offers are merged over the
    # file's catalog by the sync side, which holds the file's catalog: a new file is a rebuild there.
    same_metrics = (old.health.metrics_host, old.health.metrics_port) == (
        new.health.metrics_host,
        new.health.metrics_port,
    )
    offers_moved = old.decisions.offers_file != new.decisions.offers_file
    return same_metrics and not (offers_moved and syncing)


class LiveApplier:
    """Applies live changes to a running generation (the supervisor owns one)."""

    def __init__(self, *, models: ModelStore | None, clock: Clock, rng: random.Random) -> None:
        self._models = models
        self._clock = clock
        self._rng = rng

    async def apply(self, generation: Generation, old: GatewaySettings, new: GatewaySettings) -> None:
        """Raises ApplyError if a part refuses ``new``; nothing changed then."""
        if old.decisions != new.decisions:
            await self._decisions(generation, old.decisions, new.decisions, new)
        if old.presence != new.presence:
            generation.presence.set_timeout(new.presence.checkin_timeout_s)
        if old.logging != new.logging:
            set_level(new.logging.level)
        log.info("configuration applied live: %s", ", ".join(sorted(changed_sections(old, new))))

    async def _decisions(
        self, generation: Generation, old: DecisionSettings, new: DecisionSettings, settings: GatewaySettings
    ) -> None:
        """A new model, catalog or policy, all or nothing: whatever can fail is loaded before any swap."""
        loop = asyncio.get_running_loop()
        model_moved = (old.model, old.manifest_path, old.model_sha256) != (
            new.model,
            new.manifest_path,
            new.model_sha256,
        )
        engine_moved = (old.offers_file, old.policy) != (new.offers_file, new.policy)
        try:
            catalog = (
                await loop.run_in_executor(None, load_catalog, new.offers_file) if engine_moved else None
            )
            if model_moved:
                await self.activate_model(generation, new)
        except Exception as exc:  # any refusal of a part is an ApplyError; nothing has changed
            raise ApplyError(f"decisions: {exc}") from exc
        if catalog is not None:
            decider = generation.decider
            counts = await generation.ledger.offer_counts_since(local_midnight(settings, self._clock))
            engine = DecisionEngine(catalog, decider.engine.scorer, new.policy, self._clock, self._rng)
            await decider.replace_engine(engine, counts)

    async def activate_model(self, generation: Generation, decisions: DecisionSettings) -> None:
        """Verify (sha256, pin), load, shadow-score and swap the configured model; raises if refused."""
        loop = asyncio.get_running_loop()
        engine = generation.decider.engine
        if self._models is not None:
            await loop.run_in_executor(
                None,
                self._models.install_and_activate,
                engine,
                decisions.model,
                decisions.manifest_path,
                decisions.model_sha256,
            )
            return
        scorer = await loop.run_in_executor(None, load_model, decisions.model, decisions.manifest_path)
        if decisions.model_sha256 is not None and scorer.manifest.sha256 != decisions.model_sha256:
            msg = f"model sha256 {scorer.manifest.sha256[:12]}… is not the pinned {decisions.model_sha256[:12]}…"
            raise ModelError(msg)
        engine.swap_scorer(scorer)

    async def reload_pointer(self, generation: Generation) -> None:
        """SIGHUP (``systemctl reload``): run the model the store's pointer names (after ``model rollback``)."""
        if self._models is None:
            log.warning("model reload asked for, but there is no model store")
            return
        engine = generation.decider.engine
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                None, self._models.reload_pointer, engine
            )
        except ModelError:
            log.exception("model reload refused; the running model stays")
            return
        except Exception:
            # It runs in the gateway's TaskGroup: a reload that fails in an unforeseen way must not end it.
            log.exception("model reload failed; the running model stays")
            return
        if result is None:
            log.info("model reload: %s is already running", engine.model_version)
