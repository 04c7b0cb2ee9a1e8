"""``edge-gateway demo``: the whole gateway on embedded defaults with simulated shoppers and screens.

Everything but the shoppers is real: the broker (embedded amqtt, or one given), MQTT round trips,
token signatures, the SQLite ledger (a temporary file), the ONNX model, the display acks, and the
reference cloud (``profile-store``, a child process) the shoppers are pulled from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

import aiomqtt

from edge.clock import SystemClock, iso_utc
from edge.config import GatewaySettings, parse_settings
from edge.daemon import Gateway
from edge.decide.catalog import CatalogError, Offer, load_catalog
from edge.demo.broker import EmbeddedBroker
from edge.demo.cloud import DemoCloud, reference_cloud
from edge.demo.pages import serve_pages
from edge.events import Decision, Purpose
from edge.identity import ConsentStore, generate_keypair, sign_token
from edge.ledger.readonly import READ_ERRORS
from edge.tools.report import Period, write_report

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
DEMO_STORE: Final = "demo-store"
ZONES: Final = ("entrance", "fitting-rooms", "cafe", "electronics")
CATEGORIES: Final = ("apparel", "beauty", "coffee", "electronics", "grocery", "home", "kids", "sports")
# One check-in in this many is a replay of an earlier token, to show that replays are refused.
REPLAY_EVERY: Final = 9
# One shopper in this many buys something at a till a moment after their check-in (a sale the report
# attributes to the offer they were shown, when it is of that offer's category).
BUY_EVERY: Final = 3
BUY_AFTER_S: Final = 0.5


# The fitting room's couple (issue 14): Ana asked for personal service and shares a name with staff; both let
# the room follow their preferences. They are not part of the random traffic: they walk in, then out.
COUPLE: Final = (
    {
        "id": "p-demo-ana",
        "at": "2026-11-01T09:00:00Z",
        "consents": {
            "personalization": True,
            "measurement": True,
            "device_preferences": True,
            "clienteling": True,
        },
        "profile": {
            "affinity": {"apparel": 0.9},
            "visits": 12,
            "device_preferences": {"temperature": 20, "color_temp": 2700},
            "staff_display_name": "Ana",
            "language": "pt",
            "sizes": {"tops": "S", "shoes": "38"},
            "interests": ["linen", "running"],
        },
    },
    {
        "id": "p-demo-ben",
        "at": "2026-11-01T09:00:00Z",
        "consents": {"personalization": True, "measurement": False, "device_preferences": True},
        "profile": {
            "affinity": {"sports": 0.8},
            "device_preferences": {"temperature": 24, "color_temp": 4000},
        },
    },
)
FITTING: Final = "fitting-rooms"
# Ana ordered online; the order waits at the collection desk by the entrance (docs/pickup.md).
ANA_ORDER: Final = ("o-demo-ana", "A-1042", "Click & collect desk, entrance")
PICKUP_SCREEN: Final = "screen-pickup"
# The cafe's kiosk (docs/player.md "Kiosk"): for a browser page, so the simulated screens leave it alone.
KIOSK: Final = "kiosk-cafe"
DEVICES: Final = (
    {
        "id": "fitting-climate",
        "zone": FITTING,
        "kind": "climate",
        "adapter": "zigbee2mqtt",
        "address": "fitting room trv",
        "min_interval_s": 1.0,
        "revert_after_s": 1.0,
        "capabilities": {"temperature": {"default": 21, "min": 18, "max": 25, "step": 0.5}},
    },
    {
        "id": "fitting-light",
        "zone": FITTING,
        "kind": "light",
        "adapter": "zigbee2mqtt",
        "address": "fitting room light",
        "min_interval_s": 1.0,
        "revert_after_s": 1.0,
        "capabilities": {
            "color_temp": {"default": 4000, "min": 2700, "max": 6500, "step": 100},
            "brightness": {"default": 80, "min": 10, "max": 100, "step": 5},
        },
    },
)


@dataclass(slots=True)
class DemoSummary:
    checkins_sent: int = 0
    replays_sent: int = 0
    checkins_accepted: int = 0
    decisions: int = 0
    personalized: int = 0
    holdout: int = 0
    exposures_acked: int = 0
    exposure_rows: int = 0
    rejected: int = 0
    cloud_events: int = 0
    cloud_changes: int = 0
    device_commands: int = 0
    staff_notices: int = 0
    staff_answers: int = 0
    pickup_listed: int = 0  # manifests of the collection-point screen that listed an order
    pickup_collected: int = 0
    privacy_exports: int = 0  # the cloud's export requests answered through the outbox
    privacy_erasures: int = 0  # erasures asked for at a touchpoint
    sales_sent: int = 0  # POS sales at the till, with the shopper's token
    report: Path | None = None  # the run's report.html (summary.json beside it)


def _shoppers(rng: random.Random, count: int) -> list[dict[str, Any]]:
    shoppers = []
    for index in range(count):
        favourite = rng.sample(CATEGORIES, 2)
        shoppers.append(
            {
                "id": f"p-demo{index:04d}",
                "at": "2026-11-01T09:00:00Z",
                "consents": {
                    "personalization": index % 4 != 3,
                    "measurement": index % 3 != 2,
                    "camera_checkin": True,
                },
                "profile": {
                    "affinity": {favourite[0]: round(rng.uniform(0.6, 1.0), 2), favourite[1]: 0.3},
                    "visits": rng.randint(0, 40),
                },
            }
        )
    return shoppers


def demo_settings(
    workdir: Path,
    public_pem: bytes,
    shoppers: list[dict[str, Any]],
    host: str,
    port: int,
    *,
    cloud: tuple[str, str] | None = None,
) -> GatewaySettings:
    """The demo store's settings; with ``cloud`` (url, store token) shoppers come from the cloud, not a seed."""
    (workdir / "token-public.pem").write_bytes(public_pem)
    (workdir / "shoppers.json").write_text(json.dumps({"shoppers": shoppers}))
    sync: dict[str, Any] = {"enabled": False}
    if cloud is not None:
        (workdir / "cloud-token").write_text(cloud[1])
        sync = {
            "enabled": True,
            "url": cloud[0],
            "token_file": str(workdir / "cloud-token"),
            "pull_interval_s": 1.0,
            "push_interval_s": 0.5,
        }
    document: dict[str, Any] = {
        "store": {"id": DEMO_STORE},
        "mqtt": {"host": host, "port": port, "reconnect_max_s": 2},
        "identity": {
            "public_key_files": [str(workdir / "token-public.pem")],
            **({"consents_file": str(workdir / "shoppers.json")} if cloud is None else {}),
        },
        "decisions": {
            "model": str(REPO_ROOT / "models" / "offers.onnx"),
            "offers_file": str(REPO_ROOT / "config" / "offers.example.toml"),
            "policy": {"epsilon": 0.1, "holdout_percent": 10},
        },
        "zones": [{"id": zone} for zone in ZONES],
        "displays": [
            *(
                {"id": f"screen-{zone}-1", "zone": zone, "min_display_s": 1.0, "content_ttl_s": 4.0}
                for zone in ZONES
            ),
            {"id": PICKUP_SCREEN, "zone": "entrance", "pickup": True, "content_ttl_s": 60.0},
            {"id": KIOSK, "zone": "cafe", "ui": True, "min_display_s": 5.0, "content_ttl_s": 30.0},
        ],
        "devices": list(DEVICES),
        "staff": {"teams": {"fitting": [FITTING]}},
        "ledger": {"path": str(workdir / "ledger.sqlite")},
        "control": {"state_dir": str(workdir / "state")},  # the demo's model store, in its own folder
        "sync": sync,
        "health": {"interval_s": 5},
        # The store dashboard on this machine only (no password): a free port, printed at start.
        "dashboard": {"enabled": True, "bind": "127.0.0.1", "port": 0},
    }
    return parse_settings(document, base_dir=REPO_ROOT, source="demo defaults")


def catalog_pictures(offers: Iterable[Offer]) -> dict[str, str]:
    """Every picture the catalog names (its ``image``), captioned with the offer's headline or title."""
    named: dict[str, str] = {}
    for offer in offers:
        image = offer.data.get("image")
        if isinstance(image, str) and image:
            named.setdefault(image, str(offer.data.get("headline") or offer.title))
    return named


def _overridable() -> list[tuple[str, str]]:
    """The fitting team's devices and the first capability of each: what its tablet offers to override."""
    pairs = []
    for device in DEVICES:
        capabilities = device["capabilities"]
        assert isinstance(capabilities, dict)
        pairs.append((str(device["id"]), str(next(iter(capabilities)))))
    return pairs


async def _display_players(
    client: aiomqtt.Client, root: str, out: TextIO, summary: DemoSummary, ready: asyncio.Event
) -> None:
    """Screens that render whatever they are told and ack it, as a signage player would; ``ready`` once they
    are online and listening (a manifest sent before would arrive retained, as if shown before)."""
    for display in [*(f"screen-{zone}-1" for zone in ZONES), PICKUP_SCREEN]:
        await client.publish(f"{root}/display/{display}/availability", b"online", qos=1, retain=True)
    await client.subscribe(f"{root}/display/+/content", qos=1)
    ready.set()
    async for message in client.messages:
        if not isinstance(message.payload, bytes | bytearray) or not message.payload or message.retain:
            continue  # a retained manifest is one already shown before we subscribed
        manifest = json.loads(message.payload)
        if manifest["display"] == KIOSK:
            continue  # the kiosk page acks for itself when a browser shows it
        if manifest["display"] == PICKUP_SCREEN:
            listed = [f"{o['reference']} at {o['counter']}" for o in manifest["data"].get("orders", [])]
            print(f"pickup screen: {', '.join(listed) or 'idle'}", file=out, flush=True)
            summary.pickup_listed += bool(listed)
        if manifest.get("decision_id") is None:
            continue
        ack = {
            "v": 1,
            "ts": iso_utc(SystemClock().wall()),
            "version": manifest["version"],
            "decision_id": manifest["decision_id"],
            "status": "shown",
            "shown_at": iso_utc(SystemClock().wall()),
        }
        await client.publish(f"{root}/display/{manifest['display']}/ack", json.dumps(ack).encode(), qos=1)
        summary.exposures_acked += 1


async def _shopper_traffic(
    client: aiomqtt.Client,
    root: str,
    private_pem: bytes,
    shoppers: list[dict[str, Any]],
    rate_per_s: float,
    rng: random.Random,
    summary: DemoSummary,
    shown: tuple[dict[str, str], Mapping[str, Offer]],
) -> None:
    sent: list[bytes] = []
    buyers: list[tuple[float, dict[str, Any]]] = []  # (when, shopper): a sale due a moment after a check-in
    loop = asyncio.get_running_loop()
    while True:
        if sent and summary.checkins_sent % REPLAY_EVERY == REPLAY_EVERY - 1:
            payload = rng.choice(sent)
            summary.replays_sent += 1
        else:
            shopper = rng.choice(shoppers)
            payload = _checkin(private_pem, shopper["id"], rng.choice(ZONES))
            sent.append(payload)
            if not summary.checkins_sent or rng.randrange(BUY_EVERY) == 0:  # the first shopper buys
                buyers.append((loop.time() + BUY_AFTER_S, shopper))
        await client.publish(f"{root}/checkin", payload, qos=1)
        summary.checkins_sent += 1
        await asyncio.sleep(rng.expovariate(rate_per_s))
        while buyers and buyers[0][0] <= loop.time():
            _, buyer = buyers.pop(0)
            offer = shown[1].get(shown[0].get(buyer["id"], ""))
            await client.publish(
                f"{root}/pos/lane-1/transaction", _sale(private_pem, buyer, rng, offer), qos=1
            )
            summary.sales_sent += 1


async def _fitting_room_devices(client: aiomqtt.Client, out: TextIO, summary: DemoSummary) -> None:
    """The fitting room's Zigbee2MQTT thermostat and light: they print what they are told and report it."""
    await client.subscribe("zigbee2mqtt/+/set", qos=1)
    async for message in client.messages:
        if not isinstance(message.payload, bytes | bytearray) or not message.payload:
            continue
        name = message.topic.value.split("/")[1]
        print(f"device {name:<19} <- {message.payload.decode()}", file=out, flush=True)
        summary.device_commands += 1
        await client.publish(f"zigbee2mqtt/{name}", message.payload, qos=1)


async def _staff_tablet(client: aiomqtt.Client, root: str, out: TextIO, summary: DemoSummary) -> None:
    """The fitting team's tablet: it shows each notice and answers the open ones with "assisting"; a
    shopper's ready online order is handed over there and then ("collected")."""
    await client.subscribe(f"{root}/staff/notice/+", qos=1)
    async for message in client.messages:
        if not isinstance(message.payload, bytes | bytearray) or not message.payload:
            continue
        notice = json.loads(message.payload)
        team = message.topic.value.rsplit("/", 1)[1]
        about = {k: v for k, v in notice.items() if k not in ("v", "ts", "notice_id", "status", "zone")}
        print(f"staff {team}: {notice['status']} notice in {notice['zone']} {about}", file=out, flush=True)
        summary.staff_notices += notice["status"] == "open"
        if notice["status"] == "open":
            answer = {"v": 1, "notice_id": notice["notice_id"], "action": "assisting"}
            await client.publish(f"{root}/staff/{team}/ack", json.dumps(answer).encode(), qos=1)
            summary.staff_answers += 1
        if notice["status"] == "open" and notice.get("pickup"):
            await asyncio.sleep(0.5)  # long enough to see it on the collection-point screen
            answer = {"v": 1, "notice_id": notice["notice_id"], "action": "collected"}
            await client.publish(f"{root}/staff/{team}/ack", json.dumps(answer).encode(), qos=1)
            summary.pickup_collected += len(notice["pickup"])


async def _couple(
    client: aiomqtt.Client, root: str, private_pem: bytes, stay_s: float, screens: asyncio.Event
) -> None:
    """Once the screens are on, Ana walks into the fitting room, Ben joins her; after ``stay_s`` both go to
    the café. (Ana's check-in lists her order on the collection-point screen: it must be listening.)"""
    await screens.wait()
    for shopper, zone in ((COUPLE[0], FITTING), (COUPLE[1], FITTING)):
        await client.publish(f"{root}/checkin", _checkin(private_pem, str(shopper["id"]), zone), qos=1)
        await asyncio.sleep(0.3)
    await asyncio.sleep(stay_s)
    for shopper in COUPLE:
        await client.publish(f"{root}/checkin", _checkin(private_pem, str(shopper["id"]), "cafe"), qos=1)


async def _privacy_scene(
    client: aiomqtt.Client, root: str, private_pem: bytes, parts: Any, erased: str, out: TextIO
) -> None:
    """The retailer's app asks for Ana's data (a request the cloud signs); a shopper is forgotten at the till."""
    ana = str(COUPLE[0]["id"])
    now = int(SystemClock().wall())
    request = {"aud": DEMO_STORE, "kind": "export", "request_id": "demo-export-1", "sub": ana, "iat": now}
    await client.publish(
        f"{root}/privacy/request", sign_token(private_pem, {**request, "exp": now + 600}).encode(), qos=1
    )
    token = json.loads(_checkin(private_pem, erased, "entrance"))["token"]
    action = {"v": 1, "token": token, "action": "erase", "source": "till"}
    await client.publish(f"{root}/privacy/action", json.dumps(action).encode(), qos=1)
    doc = await parts.privacy.build_export(ana)
    explained = next((d for d in doc["decisions"] if d["why"]), None)
    why = "none kept"
    if explained is not None:
        top = explained["why"][0]
        why = f"{explained['offer'] or explained['offer_id']}: mostly {top['label']} ({top['logit']:+.2f})"
    granted = sum(c["granted"] for c in doc["consents"])
    print(
        f"privacy: {ana}'s export: {granted} consents granted, {len(doc['decisions'])} decisions kept, "
        f"{len(doc['device_settings'])} device settings, {len(doc['staff_interactions'])} staff answers; "
        f"why the latest offer: {why}",
        file=out,
        flush=True,
    )
    print(f"privacy: {erased} asked to be forgotten at the till", file=out, flush=True)


def _sale(private_pem: bytes, shopper: dict[str, Any], rng: random.Random, offer: Offer | None) -> bytes:
    """A till's sale for ``shopper`` (their token scanned): one or two lines of the categories they like, and
    two times in three what the offer they were shown promotes."""
    now = int(SystemClock().wall())
    claims = {"sub": shopper["id"], "aud": DEMO_STORE, "iat": now, "exp": now + 120, "jti": uuid.uuid4().hex}
    liked = list(shopper["profile"]["affinity"])
    items = [
        {
            "sku": f"demo-{category}-{rng.randrange(20)}",
            "qty": 1,
            "price": round(rng.uniform(3, 60), 2),
            "category": category,
        }
        for category in rng.sample(liked, rng.randint(1, len(liked)))
    ]
    if offer is not None and rng.randrange(3) != 0:
        sku = offer.skus[0] if offer.skus else f"demo-{offer.category}-offer"
        items.append(
            {"sku": sku, "qty": 1, "price": round(rng.uniform(3, 30), 2), "category": offer.category}
        )
    body = {
        "v": 1,
        "ts": iso_utc(now),
        "txn_id": uuid.uuid4().hex[:16],
        "token": sign_token(private_pem, claims),
        "items": items,
        "currency": "EUR",
    }
    return json.dumps(body).encode()


def _checkin(private_pem: bytes, shopper_id: str, zone: str) -> bytes:
    now = int(SystemClock().wall())
    claims = {"sub": shopper_id, "aud": DEMO_STORE, "iat": now, "exp": now + 120, "jti": uuid.uuid4().hex}
    token = sign_token(private_pem, claims)
    return json.dumps({"v": 1, "ts": iso_utc(now), "token": token, "zone": zone, "source": "app"}).encode()


async def _couple_known(consents: ConsentStore) -> None:
    """The couple's consents come with the first pull from the cloud: the scene waits for them."""
    ana, purpose = str(COUPLE[0]["id"]), Purpose.DEVICE_PREFERENCES
    known = asyncio.Event()
    unsubscribe = consents.subscribe(
        lambda shopper, changed, granted: (
            known.set() if (shopper, changed, granted) == (ana, purpose, True) else None
        )
    )
    try:
        if not consents.has(ana, purpose):
            await asyncio.wait_for(known.wait(), timeout=10)
    finally:
        unsubscribe()


def _print_decision(out: TextIO, summary: DemoSummary, shown: dict[str, str]) -> Any:
    def show(decision: Decision) -> None:
        if decision.shopper_id is not None and decision.offer_id is not None:
            shown[decision.shopper_id] = decision.offer_id
        summary.decisions += 1
        summary.personalized += decision.personalized
        summary.holdout += decision.holdout
        who = decision.shopper_id or "anonymous"
        what = decision.offer_id or ("fallback (holdout)" if decision.holdout else "fallback")
        mode = "personal" if decision.personalized else "context-only"
        print(
            f"decision {decision.decision_id[-16:-8]} {decision.display_id:<24} {who:<12} -> {what:<22} "
            f"{mode:<12} p={decision.propensity:.2f}{' explore' if decision.explored else ''}",
            file=out,
            flush=True,
        )

    return show


async def run_demo(
    duration_s: float,
    *,
    out: TextIO,
    broker: tuple[str, int] | None = None,
    rate_per_s: float = 3.0,
    seed: int = 7,
    cloud_command: Sequence[str] | None = None,
    report_dir: Path | None = None,
) -> DemoSummary:
    """Run the simulated store for ``duration_s``; ``cloud_command`` starts the reference cloud (default
    ``python -m profilestore``). The run ends with its report in ``report_dir`` (default: a new folder under
    the system's temporary directory), which outlives the demo's own files."""
    rng = random.Random(seed)
    summary = DemoSummary()
    started_wall = SystemClock().wall()
    with tempfile.TemporaryDirectory(prefix="edge-demo-") as tmp:
        workdir = Path(tmp)
        private_pem, public_pem = generate_keypair()
        shoppers = _shoppers(rng, 12)
        async with contextlib.AsyncExitStack() as stack:
            if broker is None:
                embedded = await stack.enter_async_context(EmbeddedBroker())
                host, port, ws_port = "127.0.0.1", embedded.port, embedded.ws_port
            else:
                host, port = broker
                ws_port = 9001  # the shipped mosquitto's websockets listener (docs/operations.md)
            admin_token = secrets.token_urlsafe(24)
            base_url = await stack.enter_async_context(
                reference_cloud(workdir, admin_token, command=cloud_command)
            )
            cloud = await stack.enter_async_context(DemoCloud(base_url, admin_token))
            store_token = await cloud.add_store(DEMO_STORE)
            for shopper in [*shoppers, *COUPLE]:
                await cloud.put_shopper(str(shopper["id"]), shopper["profile"], DEMO_STORE)
                for purpose, granted in shopper["consents"].items():
                    await cloud.put_consent(str(shopper["id"]), purpose, granted)
            await cloud.put_order(ANA_ORDER[0], DEMO_STORE, str(COUPLE[0]["id"]), *ANA_ORDER[1:])
            held = len(shoppers) + len(COUPLE)
            print(f"demo: cloud profile store on {base_url} holds {held} shoppers", file=out)
            settings = demo_settings(workdir, public_pem, shoppers, host, port, cloud=(base_url, store_token))
            # The offer each shopper was shown last: their sale at the till often takes it (what the report
            # then attributes to it).
            shown: dict[str, str] = {}
            offers = {offer.id: offer for offer in load_catalog(settings.decisions.offers_file).offers}
            # Its exploration draws from the demo's seed too: the same seed, the same choices.
            gateway = Gateway(
                settings,
                config_version="demo",
                rng=random.Random(seed),
                observers=[_print_decision(out, summary, shown)],
            )
            gateway_task = asyncio.create_task(gateway.run(), name="gateway")
            await asyncio.wait_for(gateway.ready.wait(), timeout=10)
            parts = gateway.generation
            if parts is None:
                msg = "the gateway did not build"
                raise RuntimeError(msg)
            await asyncio.wait_for(parts.link.connected.wait(), timeout=10)
            print(
                f"demo: store {DEMO_STORE} on mqtt://{host}:{port}, {len(shoppers)} simulated shoppers",
                file=out,
            )
            if gateway.dashboard is not None:
                print(f"demo: store dashboard on {gateway.dashboard.url}", file=out, flush=True)
            pictures = catalog_pictures(offers.values())
            pages = await stack.enter_async_context(
                serve_pages(
                    REPO_ROOT / "player",
                    store=DEMO_STORE,
                    broker_ws=f"ws://{host}:{ws_port}",
                    pictures=pictures,
                )
            )
            print(
                f"demo: display player on {pages.player('screen-cafe-1')} "
                f"({len(pictures)} catalog pictures drawn for it)",
                file=out,
            )
            print(f"demo: kiosk on {pages.kiosk(KIOSK)} (pair with its QR: docs/player.md)", file=out)
            print(f"demo: staff tablet on {pages.staff('fitting', _overridable())}", file=out, flush=True)
            root = settings.topic_root
            await _couple_known(parts.consents)
            async with (
                aiomqtt.Client(host, port, identifier="demo-screens") as screens,
                aiomqtt.Client(host, port, identifier="demo-shoppers") as phones,
                aiomqtt.Client(host, port, identifier="demo-devices") as devices,
                aiomqtt.Client(host, port, identifier="demo-staff") as tablet,
            ):
                screens_on = asyncio.Event()
                tasks = [
                    asyncio.create_task(_display_players(screens, root, out, summary, screens_on)),
                    asyncio.create_task(
                        _shopper_traffic(
                            phones, root, private_pem, shoppers, rate_per_s, rng, summary, (shown, offers)
                        )
                    ),
                    asyncio.create_task(_fitting_room_devices(devices, out, summary)),
                    asyncio.create_task(_staff_tablet(tablet, root, out, summary)),
                    asyncio.create_task(_couple(phones, root, private_pem, duration_s * 0.4, screens_on)),
                ]
                await asyncio.sleep(duration_s / 2)
                # Half-way, the cloud changes its mind about two shoppers; the store follows within a pull.
                await cloud.put_consent(shoppers[0]["id"], "personalization", False)
                await cloud.erase(shoppers[1]["id"])
                print(
                    f"cloud: {shoppers[0]['id']} withdrew personalization; {shoppers[1]['id']} was erased",
                    file=out,
                    flush=True,
                )
                await asyncio.sleep(duration_s / 4)
                await _privacy_scene(phones, root, private_pem, parts, shoppers[2]["id"], out)
                await asyncio.sleep(duration_s / 4)
                tasks[1].cancel()
                await asyncio.sleep(1.0)  # let the last acks come back
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            counts = await parts.ledger.table_counts()
            summary.exposure_rows = counts.get("exposures", 0)
            summary.checkins_accepted = parts.stats.checkins
            summary.rejected = sum(parts.rejects.counts.values())
            if parts.sync is not None:
                await parts.sync.pusher.drain()
                summary.cloud_changes = parts.sync.puller.stats.changes
            summary.cloud_events = int((await cloud.stats()).get("events", 0))
            summary.privacy_exports = parts.privacy.counters.exports_answered
            summary.privacy_erasures = parts.privacy.counters.erasures
            gateway.request_stop()
            await gateway_task
            summary.report = await _report(settings, started_wall, report_dir, out)
    print(
        f"summary: check-ins sent {summary.checkins_sent} (replays {summary.replays_sent}), "
        f"accepted {summary.checkins_accepted}, rejected {summary.rejected}; decisions {summary.decisions} "
        f"(personal {summary.personalized}, holdout {summary.holdout}); "
        f"acked exposures {summary.exposure_rows}; "
        f"cloud: {summary.cloud_changes} changes pulled, {summary.cloud_events} events received; "
        f"fitting room: {summary.device_commands} device commands, {summary.staff_notices} staff notices "
        f"({summary.staff_answers} answered); pickup: {summary.pickup_listed} listings, "
        f"{summary.pickup_collected} collected; privacy: {summary.privacy_exports} export answered, "
        f"{summary.privacy_erasures} erasure at the till; till: {summary.sales_sent} sales",
        file=out,
        flush=True,
    )
    if summary.report is not None:
        print(f"report: {summary.report} (summary.json beside it)", file=out, flush=True)
    return summary


async def _report(settings: GatewaySettings, since: float, folder: Path | None, out: TextIO) -> Path | None:
    """The run's report (``edge-gateway report`` over the demo's ledger, once the gateway has stopped)."""
    folder = folder or Path(tempfile.mkdtemp(prefix="edge-demo-report-"))
    period = Period(since - 1.0, SystemClock().wall() + 1.0)
    now = SystemClock().wall()
    try:
        return await asyncio.to_thread(write_report, settings, period, folder, now=now)
    except (*READ_ERRORS, CatalogError) as exc:  # the demo's summary still stands; say why there is no report
        print(f"report: not written ({exc})", file=out, flush=True)
        return None
