"""One configuration's parts, built in flow order: ``build(settings, ledger, carry) -> Generation``.

Every dependency is handed to a constructor; nothing is attached to a part after it is built. A rebuild for
new settings (a config push) builds a new generation over the same ledger and ``Carry`` and lets it take
over the previous one's screens and check-in presence; the supervisor (edge/daemon.py) runs one generation
at a time.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from edge import __version__
from edge.act.displays import DisplayBoard
from edge.act.pickup import OrderBook
from edge.clock import Clock
from edge.config import GatewaySettings, read_mqtt_password, read_sync_token
from edge.context.service import StoreContext
from edge.decide.catalog import load_catalog
from edge.decide.devices.resolve import ui_preferences
from edge.decide.lifecycle import ModelStore
from edge.decide.policy import DecisionEngine
from edge.decide.scorer import Scorer, load_model
from edge.events import Decision, Purpose
from edge.flow.acks import AckFlow
from edge.flow.ble import BleFlow
from edge.flow.checkin import CheckinFlow
from edge.flow.decider import Decider
from edge.flow.devices import DeviceFlow
from edge.flow.floor import Floor, Recorder
from edge.flow.pairing import KioskPairing
from edge.flow.parts import FloorParts
from edge.flow.pickup import PickupFlow
from edge.flow.pos import PosFlow
from edge.flow.privacy import PrivacyFlow
from edge.flow.staff import StaffFlow
from edge.flow.stats import FlowStats
from edge.flow.zones import ZoneCounts
from edge.identity import ConsentStore, ProfileCache, ReplayGuard, TokenVerifier, load_public_keys
from edge.identity.eid import EidResolver, load_eid_keys
from edge.identity.wallclock import WallClockWatch
from edge.ledger import Ledger
from edge.presence.beacons import BeaconRegistry
from edge.presence.ble import BlePresence
from edge.presence.ingest import BleIngest
from edge.presence.zones import ZonePresence
from edge.privacy.sources import LiveExport
from edge.sources.payloads import RejectCounter
from edge.transport.mqtt import MqttLink
from edge.transport.topics import Topics

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from edge.control.metrics import Metrics
    from edge.flow.camera import CameraFlow
    from edge.sources.ble.scanner import BleScanner
    from edge.sync.service import SyncService

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class Carry:
    """What outlives a generation: the clock, the metrics, the model store, the wall clock's mark, the
    decision observers, and the hooks back to the supervisor (the health it publishes on every connect)."""

    clock: Clock
    topics: Topics
    rng: random.Random
    metrics: Metrics
    started_wall: float
    wall_watch: WallClockWatch
    models: ModelStore | None
    on_connect: Callable[[], None]
    observers: Sequence[Callable[[Decision], None]] = ()


@dataclass(slots=True, frozen=True)
class Generation:
    """Every part of one configuration, as built; the supervisor runs its loops in one TaskGroup."""

    settings: GatewaySettings
    ledger: Ledger
    link: MqttLink
    verifier: TokenVerifier
    replay: ReplayGuard
    consents: ConsentStore
    profiles: ProfileCache
    decider: Decider
    floor: Floor
    rejects: RejectCounter
    stats: FlowStats
    checkins: CheckinFlow
    acks: AckFlow
    pos: PosFlow
    ble: BleFlow | None
    scanner: BleScanner | None
    cameras: tuple[CameraFlow, ...]
    sync: SyncService | None
    devices: DeviceFlow | None
    staff: StaffFlow | None
    pickup: PickupFlow
    privacy: PrivacyFlow
    context: StoreContext

    @property
    def board(self) -> DisplayBoard:
        return self.floor.board

    @property
    def presence(self) -> ZonePresence:
        return self.floor.presence

    def close(self) -> None:
        self.decider.close()


def local_midnight(settings: GatewaySettings, clock: Clock) -> float:
    """Today's start in the policy's time zone: the day's caps count from there."""
    zone = ZoneInfo(settings.decisions.policy.tz)
    now = datetime.fromtimestamp(clock.wall(), tz=zone)
    return now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


async def build(
    settings: GatewaySettings, ledger: Ledger, carry: Carry, previous: Generation | None = None
) -> Generation:
    """Build every part for ``settings`` over the open ``ledger``; ``previous``: the generation it replaces."""
    clock, topics, metrics = carry.clock, carry.topics, carry.metrics
    keys = await token_keys(settings, ledger)
    verifier = TokenVerifier(
        keys,
        settings.store.id,
        clock,
        leeway_s=settings.identity.leeway_s,
        max_lifetime_s=settings.identity.max_token_lifetime_s,
    )
    replay = await _replay_guard(ledger, carry)
    consents = ConsentStore(ledger, clock)
    await consents.load()
    profiles = ProfileCache()
    if settings.identity.consents_file is not None:
        await consents.seed_from_file(settings.identity.consents_file, profiles)
    catalog = load_catalog(settings.decisions.offers_file)
    scorer = await _start_model(settings, carry.models)
    engine = DecisionEngine(catalog, scorer, settings.decisions.policy, clock, carry.rng)
    engine.seed_counts(await ledger.offer_counts_since(local_midnight(settings, clock)))

    link = MqttLink(
        settings.mqtt,
        client_id=settings.client_id,
        topics=topics,
        password=read_mqtt_password(settings),
        clock=clock,
        version=__version__,
        started_wall=carry.started_wall,
        rng=carry.rng,
        on_connect=carry.on_connect,
    )
    zones = [zone.id for zone in settings.zones]
    presence = ZonePresence(zones, timeout_s=settings.presence.checkin_timeout_s, clock=clock)
    resolver = ble_ingest = None
    if settings.ble.active:
        resolver = EidResolver(clock, neighbours=settings.ble.eid_neighbours, consents=consents)
        if settings.ble.eid_keys_file is not None:
            resolver.load(load_eid_keys(settings.ble.eid_keys_file))
        # ESPresense nodes report about once a second: their own filter and timers (docs/ble-presence.md).
        ble_presence = BlePresence(
            {}, settings.ble.presence, clock, sources={"espresense": settings.ble.espresense.presence}
        )
        ble_ingest = BleIngest(resolver, BeaconRegistry(settings.ble.beacons, clock), ble_presence)
    counts = ZoneCounts(
        zones,
        presence=presence,
        others=[ble_ingest.presence] if ble_ingest is not None else [],
        link=link,
        topics=topics,
        clock=clock,
    )
    rejects = RejectCounter()
    context = StoreContext(
        settings.context,
        ledger=ledger,
        clock=clock,
        topics=topics,
        rejects=rejects,
        consents=consents,
        in_store=lambda shopper: (
            presence.zone_of(shopper) is not None
            or (ble_ingest is not None and ble_ingest.presence.zone_of(shopper) is not None)
        ),
        # A sale line without the POS's category takes the category of the offer that lists its SKU.
        sku_categories=lambda: {
            sku: offer.category for offer in decider.engine.catalog.offers for sku in offer.skus
        },
    )
    await context.load()
    decider = Decider(
        engine,
        consents=consents,
        profiles=profiles,
        audience=counts.people,
        clock=clock,
        fallbacks={display.id: display.fallback for display in settings.displays},
        metrics=metrics,
        observers=carry.observers,
        context=context,
    )
    watch = carry.wall_watch
    board = DisplayBoard(
        settings.displays,
        topics=topics,
        publish=lambda topic, payload, retain: link.publish(topic, payload, retain=retain),
        decide=decider.decide,
        # Check-ins and BLE alike: who is still there is served when a screen frees up or renews.
        is_present=lambda shopper, zone: (
            presence.zone_of(shopper) == zone
            or (ble_ingest is not None and ble_ingest.presence.zone_of(shopper) == zone)
        ),
        clock=clock,
        version_floor_wall=lambda: watch.high_water_wall,
        ui_for=lambda shopper: (
            ui_preferences(profiles.get(shopper) or {})
            if consents.has(shopper, Purpose.DEVICE_PREFERENCES)
            else {}
        ),
    )
    stats = FlowStats()
    floor = Floor(
        presence=presence,
        counts=counts,
        board=board,
        decider=decider,
        recorder=Recorder(ledger, consents),
        consents=consents,
        link=link,
        topics=topics,
        stats=stats,
    )
    pickup = PickupFlow(board=board, orders=OrderBook(), ledger=ledger, clock=clock)

    privacy: PrivacyFlow | None = None

    def forget_shopper(shopper_id: str) -> None:
        floor.forget_shopper(shopper_id)
        context.baskets.forget(shopper_id)
        pickup.forget_shopper(shopper_id)
        if privacy is not None:
            privacy.forget_shopper(shopper_id)

    def erase_in_memory(shopper_id: str) -> None:
        """A store-side erasure (privacy/action), after the ledger's: what a pulled erasure does to memory."""
        consents.forget_shopper(shopper_id)
        profiles.forget(shopper_id)
        if resolver is not None:
            resolver.remove_shopper(shopper_id)
        forget_shopper(shopper_id)

    sync = None
    if settings.sync.enabled:
        # aiohttp and the sync parts are loaded only by gateways that sync (~9 MB not paid otherwise).
        from edge.sync.service import build_sync  # noqa: PLC0415

        sync = await build_sync(
            settings.sync,
            store_id=settings.store.id,
            token=read_sync_token(settings) or "",
            ledger=ledger,
            consents=consents,
            profiles=profiles,
            verifier=verifier,
            eid=resolver,
            catalogs=decider,
            base_catalog=catalog,
            forget_shopper=forget_shopper,
            clock=clock,
            day_start=lambda: local_midnight(settings, clock),
            file_keys=keys,
            metrics=metrics,
            orders=pickup.orders,
            order_listener=pickup.order_changed,
            weather_listener=context.cloud_weather,
        )
    ensure_profile = sync.fetcher.ensure if sync is not None else None
    checkins = CheckinFlow(
        topics=topics,
        link=link,
        clock=clock,
        verifier=verifier,
        replay=replay,
        consents=consents,
        floor=floor,
        rejects=rejects,
        stats=stats,
        metrics=metrics,
        ensure_profile=ensure_profile,
        erased_at=ledger.replica.tombstone,
        on_cart=context.cart,
    )
    checkins.pairing = KioskPairing(
        {d.id: (d.zone, d.pairing_rotate_s) for d in settings.displays if d.ui and not d.pickup},
        store_id=settings.store.id,
        topics=topics,
        publish=lambda topic, payload, retain: link.publish(topic, payload, retain=retain),
        clock=clock,
    )
    checkins.pairing.publish_all()
    checkins.committed_listeners.append(pickup.checked_in)
    # A committed check-in is a visit: the clock of the profile eviction (edge/ledger/seen.py).
    checkins.committed_listeners.append(lambda shopper, _zone: ledger.seen.note(shopper))
    privacy = PrivacyFlow(
        topics=topics,
        link=link,
        clock=clock,
        store_id=settings.store.id,
        verifier=verifier,
        replay=replay,
        consents=consents,
        ledger=ledger,
        rejects=rejects,
        erase=erase_in_memory,
        build_export=LiveExport(settings, ledger, clock, presence.zone_of, lambda: decider.engine),
        board=board,
    )
    checkins.my_data = privacy.show_my_data
    floor.leave_listeners.append(privacy.left)
    floor.leave_listeners.append(context.left)
    acks = AckFlow(topics=topics, board=board, ledger=ledger, clock=clock, rejects=rejects, stats=stats)
    pos = PosFlow(
        topics=topics,
        clock=clock,
        verifier=verifier,
        replay=replay,
        consents=consents,
        ledger=ledger,
        rejects=rejects,
        ensure_profile=ensure_profile,
        collect=pickup.collect,
        on_sale=context.baskets.sale,
    )
    ble, scanner = _ble(settings, ble_ingest, floor, consents, rejects, link, metrics, clock, ledger)
    parts = FloorParts(counts, consents, profiles, ledger, link, topics, rejects, clock)
    devices = DeviceFlow(settings.devices, parts) if settings.devices else None
    staff = StaffFlow(settings.staff, parts, pickup) if settings.staff.teams else None
    for touchpoint in (devices, staff):
        if touchpoint is not None:
            touchpoint.register()
    cameras = _cameras(settings, checkins, counts, clock)

    checkins.register()
    privacy.register()
    acks.register(link)
    pos.register(link)
    context.register(link)
    # A rebuild (new configuration): the screens and check-ins of the previous parts carry over.
    kept = floor.adopt(previous.floor) if previous is not None else frozenset()
    floor.publish_initial_state(keep=kept)
    if ledger.corrupted_moved_to is not None:
        log.error("ledger was corrupt and has been moved aside to %s", ledger.corrupted_moved_to)
    return Generation(
        settings=settings,
        ledger=ledger,
        link=link,
        verifier=verifier,
        replay=replay,
        consents=consents,
        profiles=profiles,
        decider=decider,
        floor=floor,
        rejects=rejects,
        stats=stats,
        checkins=checkins,
        acks=acks,
        pos=pos,
        ble=ble,
        scanner=scanner,
        cameras=cameras,
        sync=sync,
        devices=devices,
        staff=staff,
        pickup=pickup,
        privacy=privacy,
        context=context,
    )


async def token_keys(settings: GatewaySettings, ledger: Ledger) -> dict[str, Ed25519PublicKey]:
    """The key files' token keys, less every kid the cloud revoked (durable in the ledger): a revocation
    wins over the files at every start and rebuild, until the cloud trusts the kid again."""
    identity = settings.identity
    keys = load_public_keys(identity.public_key_files, identity.public_key_env)
    revoked = await ledger.replica.revoked_keys()
    for kid in sorted(revoked & keys.keys()):
        log.warning("token key %s of the key files is revoked by the cloud; its tokens are refused", kid)
    return {kid: key for kid, key in keys.items() if kid not in revoked}


async def _replay_guard(ledger: Ledger, carry: Carry) -> ReplayGuard:
    """The replay guard from the ledger's claims and clock marks; says so if the clock is behind them."""
    marks = await ledger.clock_marks()
    replay = ReplayGuard(floor_wall=marks.jti_forgotten_through_wall)
    replay.load(await ledger.active_jtis(carry.clock.wall()))
    watch = carry.wall_watch
    watch.raise_to(marks.high_water_wall)
    if watch.is_behind():
        log.error(
            "the wall clock is %.0f s behind the latest time this gateway has seen; tokens that may have "
            "been used already are refused until it catches up (clock_behind)",
            watch.behind_s(),
        )
    return replay


async def _start_model(settings: GatewaySettings, models: ModelStore | None) -> Scorer:
    decisions = settings.decisions
    if models is None:
        return load_model(decisions.model, decisions.manifest_path)
    # The store's pointer wins over the file unless the configured model is new (docs/models.md).
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, models.start, decisions.model, decisions.manifest_path)


def _ble(
    settings: GatewaySettings,
    ingest: BleIngest | None,
    floor: Floor,
    consents: ConsentStore,
    rejects: RejectCounter,
    link: MqttLink,
    metrics: Metrics,
    clock: Clock,
    ledger: Ledger,
) -> tuple[BleFlow | None, BleScanner | None]:
    if ingest is None:
        return None, None
    ble = settings.ble
    ble_flow = BleFlow(
        ingest,
        floor=floor,
        consents=consents,
        rejects=rejects,
        espresense_prefix=ble.espresense.topic_prefix,
        espresense_rooms=ble.espresense.rooms if ble.espresense.enabled else {},
        metrics=metrics,
        seen=ledger.seen.note,
    )
    scanner, local = None, None
    if ble.enabled:
        # bleak and dbus-fast are loaded only by gateways that scan (~15 MB not paid otherwise).
        from edge.sources.ble.scanner import BleScanner  # noqa: PLC0415

        scanner = BleScanner(ble.scanner, clock)
        local = f"local:{ble.scanner.adapter}"
    ingest.presence.set_scanner_zones(ble_flow.scanner_zones(local, ble.zone))
    if ble.espresense.enabled:
        ble_flow.register_espresense(link)
    return ble_flow, scanner


def _cameras(
    settings: GatewaySettings, checkins: CheckinFlow, counts: ZoneCounts, clock: Clock
) -> tuple[CameraFlow, ...]:
    if not settings.cameras:
        return ()
    # OpenCV is loaded only by gateways with a camera (~40 MB not paid otherwise).
    from edge.flow.camera import CameraFlow  # noqa: PLC0415
    from edge.sources.camera.capture import CameraCapture  # noqa: PLC0415

    return tuple(
        CameraFlow(camera, clock, CameraCapture(camera, clock), checkin=checkins.checkin, counts=counts)
        for camera in settings.cameras
    )
