"""The reference player (player/) in Debian's headless Chromium: how soon a manifest is on the screen, and its
JS heap after 10,000 manifests (issue 17; docs/player.md "Benchmarks").

``player_render``: from the manifest's publish (the gateway's side: MQTT over TCP to mosquitto) until its
``shown`` ack arrives back. The player acks after two animation frames (the content painted), so this is
publish → websockets → preload → DOM → paint → ack → back: an upper bound of "publish to painted".
Manifests go one at a time (the next after the previous ack); each names an image (a cached 320x200 PNG,
decoded again for its new element) as an offer card does. ``heap_growth_mb``: the page's used JS heap
(CDP ``Runtime.getHeapUsage`` after ``HeapProfiler.collectGarbage``) after 10,000 manifests less before
them; they go in bursts of 50 (the player keeps only the newest of a burst), each burst's last one acked.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiomqtt
from PIL import Image
from playwright.async_api import Page, async_playwright

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.broker import Mosquitto  # noqa: E402
from tests.support.browser import launch_chromium, serve_static, stop_chromium  # noqa: E402

ROOT = "store/bench"
DISPLAY = "screen-bench"
CONTENT = f"{ROOT}/display/{DISPLAY}/content"
ACK = f"{ROOT}/display/{DISPLAY}/ack"
WARMUP = 30
SAMPLES = 300
HEAP_MANIFESTS = 10_000
BURST = 50
# As the gateway's own connection (docs/mqtt.md): without it Nagle's algorithm holds the next publish until
# the broker's delayed ACK, ~40 ms.
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
# The baseline: a bare page on the same vendored mqtt.js that acks each manifest the moment it arrives
# (no parsing beyond the id, no DOM, no paint): the network's and the library's share of the figure.
ECHO_PAGE = """<!doctype html><meta charset="utf-8"><script type="module">
import mqtt from "/player/vendor/mqtt/mqtt.esm.js";
const q = new URLSearchParams(location.search);
const content = `${q.get("root")}/display/${q.get("display")}/content`;
const client = mqtt.connect(q.get("broker"));
window.player = { stats: { connects: 0, rejected: {} } };
client.on("connect", () => client.subscribe(content, { qos: 1 }, () => { window.player.stats.connects += 1; }));
client.on("message", (topic, payload) => {
  const { version, decision_id } = JSON.parse(new TextDecoder().decode(payload));
  client.publish(`${q.get("root")}/display/${q.get("display")}/ack`,
    JSON.stringify({ v: 1, version, decision_id, status: "shown" }), { qos: 1 });
});
</script>"""


def _manifest(version: int) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "display": DISPLAY,
            "version": version,
            "decision_id": f"d{version}",
            "offer_id": "bench-offer",
            "template": "offer-card",
            "data": {"headline": f"Offer number {version}", "until": "11:00", "image": "offer.png"},
            "expires_at": None,
            "fallback": False,
        }
    ).encode()


class Acks:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.event = asyncio.Event()

    async def listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            body = json.loads(bytes(message.payload))
            if body.get("status") == "shown":
                self.arrived[body["decision_id"]] = time.perf_counter()
                self.event.set()

    async def wait(self, decision_id: str, timeout: float = 10.0) -> float:
        async with asyncio.timeout(timeout):
            while decision_id not in self.arrived:
                self.event.clear()
                await self.event.wait()
        return self.arrived[decision_id]


async def _heap_mb(page: Page) -> float:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("HeapProfiler.collectGarbage")
    await cdp.send("HeapProfiler.collectGarbage")
    usage = await cdp.send("Runtime.getHeapUsage")
    await cdp.detach()
    return float(usage["usedSize"]) / 1e6


async def _one_run(
    endpoint: str, base: str, ws_port: int, port: int, *, heap: bool, page_path: str = "/player/index.html"
) -> dict[str, Any]:
    acks = Acks()
    async with (
        async_playwright() as playwright,
        aiomqtt.Client(
            "127.0.0.1", port, identifier=f"bench-gateway-{time.monotonic_ns()}", socket_options=NODELAY
        ) as gateway,
    ):
        await gateway.subscribe(ACK, qos=1)
        listener = asyncio.create_task(acks.listen(gateway))
        browser = await playwright.chromium.connect_over_cdp(endpoint)
        context = await browser.new_context(viewport={"width": 1280, "height": 720})
        page = await context.new_page()
        query = {
            "display": DISPLAY,
            "root": ROOT,
            "broker": f"ws://127.0.0.1:{ws_port}",
            "assets": f"{base}/assets/",
        }
        await page.goto(f"{base}{page_path}?{urlencode(query)}")
        await page.wait_for_function(
            "window.player && window.player.stats && window.player.stats.connects > 0"
        )
        version = 1_000_000
        latencies: list[float] = []
        for index in range(WARMUP + SAMPLES):
            version += 1
            start = time.perf_counter()
            await gateway.publish(CONTENT, _manifest(version), qos=1)
            try:
                arrived = await acks.wait(f"d{version}")
            except TimeoutError:
                stats = await page.evaluate("JSON.stringify(window.player.stats)")
                msg = f"no ack for version {version} ({page_path}): the page's counts {stats}"
                raise RuntimeError(msg) from None
            if index >= WARMUP:
                latencies.append((arrived - start) * 1000)
        figures: dict[str, Any] = {}
        ordered = sorted(latencies)
        figures["p50_ms"] = statistics.median(ordered)
        figures["p95_ms"] = ordered[int(len(ordered) * 0.95)]
        if heap:
            before = await _heap_mb(page)
            for _ in range(HEAP_MANIFESTS // BURST):
                for _ in range(BURST):
                    version += 1
                    await gateway.publish(CONTENT, _manifest(version), qos=1)
                await acks.wait(f"d{version}", timeout=30)
            after = await _heap_mb(page)
            figures.update(heap_before_mb=before, heap_after_mb=after, heap_growth_mb=after - before)
            stats = await page.evaluate("window.player.stats")
            figures["manifests_received"] = stats["received"] - WARMUP - SAMPLES
        errors = await page.evaluate("JSON.stringify(window.player.stats.rejected)")
        assert errors == "{}", errors
        await context.close()
        listener.cancel()
    return figures


async def _run(repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-player-") as folder:
        workdir = Path(folder)
        assets = workdir / "assets"
        assets.mkdir()
        Image.linear_gradient("L").resize((320, 200)).convert("RGB").save(assets / "offer.png")
        (workdir / "echo").mkdir()
        (workdir / "echo" / "index.html").write_text(ECHO_PAGE)
        broker = Mosquitto(workdir / "broker", persistence=False)
        broker.start()
        chromium = launch_chromium(workdir / "chromium")
        try:
            folders = {"/player": REPO / "player", "/assets": assets, "/echo": workdir / "echo"}
            async with serve_static(folders) as base:
                runs, baselines = [], []
                for repeat in range(repeats):
                    ports = (chromium.endpoint, base, broker.ws_port, broker.port)
                    runs.append(await _one_run(*ports, heap=repeat == 0))
                    baselines.append(await _one_run(*ports, heap=False, page_path="/echo/index.html"))
        finally:
            stop_chromium(chromium)
            broker.stop()
    p50s = [r["p50_ms"] for r in runs]
    p95s = [r["p95_ms"] for r in runs]
    heap = runs[0]

    def spread(values: list[float]) -> list[float]:
        return [round(min(values), 2), round(statistics.median(values), 2), round(max(values), 2)]

    return {
        "baseline_p50_ms": round(statistics.median(b["p50_ms"] for b in baselines), 2),
        "baseline_p95_ms": round(statistics.median(b["p95_ms"] for b in baselines), 2),
        "p50_ms": round(statistics.median(p50s), 2),
        "p95_ms": round(statistics.median(p95s), 2),
        "p50_ms_min_med_max": spread(p50s),
        "p95_ms_min_med_max": spread(p95s),
        "samples_per_run": SAMPLES,
        "runs": repeats,
        "heap_manifests": HEAP_MANIFESTS,
        "heap_before_mb": round(heap["heap_before_mb"], 2),
        "heap_after_mb": round(heap["heap_after_mb"], 2),
        "heap_growth_mb": round(heap["heap_growth_mb"], 3),
        "chromium": "/usr/bin/chromium (Debian), headless",
    }


def run(repeats: int = 3) -> dict[str, Any]:
    return asyncio.run(_run(repeats))


if __name__ == "__main__":
    print(json.dumps(run(repeats=int(sys.argv[1]) if len(sys.argv) > 1 else 3), indent=2))
