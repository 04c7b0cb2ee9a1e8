// The kiosk page (docs/player.md "Kiosk"): a `ui = true` display that shows its pairing code as a QR while
// idle, the shopper's content once the gateway serves this kiosk, and "What do you hold about me?".
//
// It is the reference player (core.js: versions, preloading, acks after paint, expiry, the templates of
// render.js with `my-data`, the `ui` preferences) with the QR in front of its idle content. Settings as the
// player's (config.js: display, password, store or root, broker, assets, …). The page holds no shopper token
// and never publishes a check-in: the shopper's app does, with a token its backend minted for this kiosk's
// current code (docs/identity.md "Kiosk pairing"). "What do you hold about me?" shows a second QR (the same
// code with request=my_data): the app then sends the kiosk check-in asking `my_data`, and the summary comes
// back here as a `my-data` manifest.
import mqtt from "./vendor/mqtt/mqtt.esm.js";
import qrcode from "./vendor/qrcode-generator/qrcode.mjs";
import { loadConfig } from "./config.js";
import { Player, applyUi } from "./core.js";

const $ = (id) => document.getElementById(id);
const QUIET_MODULES = 4; // the blank border a QR reader needs around the code
const CELL_PX = 8;

// Shown on the screen now: the QR (idle, or asking for my data) or the shopper's content.
const state = { pairing: null, personal: false, askingMyData: false };
// For people debugging a kiosk and for the tests: counts only, never a shopper id (there is none here).
window.kiosk = { pairings: 0, bad: 0, stats: null };

function drawQr(text) {
  const qr = qrcode(0, "M");
  qr.addData(text);
  qr.make();
  const modules = qr.getModuleCount();
  const size = (modules + 2 * QUIET_MODULES) * CELL_PX;
  const canvas = $("qr");
  canvas.width = size;
  canvas.height = size;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, size, size);
  ctx.fillStyle = "#000";
  for (let row = 0; row < modules; row += 1) {
    for (let col = 0; col < modules; col += 1) {
      if (qr.isDark(row, col)) ctx.fillRect((col + QUIET_MODULES) * CELL_PX, (row + QUIET_MODULES) * CELL_PX, CELL_PX, CELL_PX);
    }
  }
}

// The shopper's own content; a holdout's fallback (a decision_id with fallback: true) keeps the QR (acked).
function isPersonal(manifest) {
  return manifest.template === "my-data" || (manifest.decision_id != null && manifest.fallback !== true);
}

function show() {
  const content = state.personal && !state.askingMyData;
  $("stage").hidden = !content;
  $("pair").hidden = content || state.pairing === null;
  $("my-data").hidden = !content || $("stage").dataset.template === "my-data";
  $("back").hidden = !state.askingMyData;
  if (!content) applyUi({}); // the QR in the kiosk's own look, not the last shopper's preferences
  if (content || state.pairing === null) return;
  const url = state.askingMyData ? `${state.pairing.url}&request=my_data` : state.pairing.url;
  drawQr(url);
  $("pair").dataset.url = url;
  $("code").textContent = state.pairing.code;
  $("pair-title").textContent = state.askingMyData
    ? "Scan with the app to see what this store holds about you"
    : "Scan with the app to see your offers here";
}

class KioskPlayer extends Player {
  // Every change of what the player shows (new content, an expiry, the idle content) passes here.
  swap(manifest, view) {
    super.swap(manifest, view);
    state.personal = isPersonal(manifest);
    if (!state.personal || manifest.template === "my-data") state.askingMyData = false;
    show();
  }
}

function pairingOf(payload) {
  try {
    const body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
    const ok = body && body.v === 1 && typeof body.url === "string" && /^edgegw:pair\?/.test(body.url);
    return ok && typeof body.code === "string" && body.url.length <= 500 ? body : null;
  } catch {
    return null;
  }
}

async function main() {
  let config;
  try {
    config = await loadConfig();
  } catch (error) {
    $("status").textContent = `Kiosk not configured: ${error.message}`;
    $("status").dataset.state = "misconfigured";
    return;
  }
  const topics = { ...config.topics, pairing: `${config.root}/display/${config.display}/pairing` };
  let client = null;
  const player = new KioskPlayer({
    stage: $("stage"),
    config,
    send: (ack) => client.publish(topics.ack, JSON.stringify(ack), { qos: 1 }),
  });
  window.kiosk.stats = player.stats;
  client = mqtt.connect(config.broker, {
    clientId: `kiosk-${config.display}-${Math.random().toString(16).slice(2, 10)}`,
    username: config.username,
    password: config.password,
    clean: true,
    keepalive: config.keepalive_s,
    reconnectPeriod: config.reconnect_ms,
    will: { topic: topics.availability, payload: "offline", qos: 1, retain: true },
  });
  client.on("connect", () => {
    $("status").textContent = "";
    $("status").dataset.state = "online";
    client.publish(topics.availability, "online", { qos: 1, retain: true });
    client.subscribe([topics.content, topics.pairing, topics.status], { qos: 1 });
  });
  client.on("offline", () => {
    $("status").textContent = "Reconnecting…";
    $("status").dataset.state = "offline";
  });
  client.on("message", (topic, payload) => {
    if (topic === topics.content) {
      player.receive(payload);
    } else if (topic === topics.status) {
      // The gateway's own status (retained; its LWT says offline): nobody can pair while it is away.
      const text = new TextDecoder().decode(payload);
      const offline = /"state"\s*:\s*"(offline|stopped)"/.test(text) || text === "offline";
      $("status").textContent = offline ? "Store system offline" : "";
      $("status").dataset.state = offline ? "offline" : "online";
    } else if (topic === topics.pairing) {
      const pairing = pairingOf(payload);
      if (pairing === null) return void (window.kiosk.bad += 1);
      state.pairing = pairing;
      window.kiosk.pairings += 1;
      show();
    }
  });
  $("my-data").addEventListener("click", () => {
    state.askingMyData = true;
    show();
  });
  $("back").addEventListener("click", () => {
    state.askingMyData = false;
    show();
  });
  window.addEventListener("pagehide", () => {
    client.publish(topics.availability, "offline", { qos: 1, retain: true });
    client.end();
  });
  show();
}

main();
