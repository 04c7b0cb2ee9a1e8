// The reference display player (docs/player.md): the store broker over MQTT WebSockets, this display's
// manifests in, acks and availability out, the gateway's status shown. The rules themselves are in core.js.

import mqtt from "./vendor/mqtt/mqtt.esm.js";
import { loadConfig } from "./config.js";
import { Player, applyUi } from "./core.js";
import { strings } from "./render.js";

const statusBox = document.getElementById("status");
const stage = document.getElementById("stage");

// What is wrong right now, if anything: the broker unreachable, or the gateway's status not `online`.
function showStatus(connection, gateway, language) {
  const t = strings(language);
  let state = "ok";
  let text = "";
  if (connection !== "connected") {
    state = "reconnecting";
    text = t.reconnecting;
  } else if (gateway === "offline" || gateway === "stopped") {
    state = "offline";
    text = t.offline;
  }
  statusBox.hidden = state === "ok";
  statusBox.dataset.state = state;
  document.body.dataset.gateway = gateway;
  statusBox.textContent = text;
}

function gatewayState(payload) {
  const text = new TextDecoder().decode(payload);
  if (text === "") return "unknown"; // a cleared retained status
  try {
    const body = JSON.parse(text);
    if (body && typeof body === "object" && typeof body.state === "string") return body.state.slice(0, 32);
  } catch {
    // a plain-text state, as some tools publish by hand
  }
  return ["online", "offline", "stopped"].includes(text) ? text : "unknown";
}

async function main() {
  let config;
  try {
    config = await loadConfig();
  } catch (error) {
    statusBox.hidden = false;
    statusBox.dataset.state = "misconfigured";
    statusBox.textContent = `Player not configured: ${error.message}`;
    window.player = { error: String(error.message) };
    return;
  }
  document.documentElement.dataset.lang = document.documentElement.lang;
  applyUi({});
  const { topics } = config;
  let connection = "connecting";
  let gateway = "unknown";
  let client = null;
  const player = new Player({
    stage,
    config,
    send: (ack) => client.publish(topics.ack, JSON.stringify(ack), { qos: 1 }),
  });
  const refresh = () => showStatus(connection, gateway, document.documentElement.lang);
  // For people debugging a screen and for the tests: counts and state, nothing about a shopper.
  window.player = {
    config: { display: config.display, root: config.root, broker: config.broker },
    stats: player.stats,
    state: () => ({ connection, gateway, latest: player.latest, shown: player.current && player.current.manifest.version }),
  };
  // The retained copy of the current manifest arrives on every (re)connect: clean sessions are enough.
  client = mqtt.connect(config.broker, {
    clientId: `player-${config.display}-${Math.random().toString(16).slice(2, 10)}`,
    username: config.username,
    password: config.password,
    clean: true,
    keepalive: config.keepalive_s,
    reconnectPeriod: config.reconnect_ms,
    connectTimeout: 10000,
    will: { topic: topics.availability, payload: "offline", qos: 1, retain: true },
  });
  client.on("connect", () => {
    connection = "connected";
    refresh();
    client.publish(topics.availability, "online", { qos: 1, retain: true });
    client.subscribe([topics.content, topics.status], { qos: 1 }, (error) => {
      if (error) console.warn("mqtt: subscribe refused:", error.message);
      else player.stats.connects += 1; // connected and subscribed: manifests can arrive
    });
  });
  client.on("message", (topic, payload) => {
    if (topic === topics.content) player.receive(payload);
    else if (topic === topics.status) {
      gateway = gatewayState(payload);
      refresh();
    }
  });
  for (const lost of ["close", "offline"]) {
    client.on(lost, () => {
      connection = "reconnecting";
      refresh();
    });
  }
  client.on("error", (error) => console.warn("mqtt:", error && error.message));
  window.addEventListener("pagehide", () => {
    client.publish(topics.availability, "offline", { qos: 1, retain: true });
    client.end();
  });
  refresh();
}

main();
