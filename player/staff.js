// The staff tablet (docs/player.md "Staff tablet", docs/staff.md): the notices of one team as they arrive
// and are withdrawn, "assisting" / "dismissed" answers (the staff ack), and overrides of the devices in the
// team's zones (docs/devices.md "Staff overrides").
//
// URL query: team, password (the broker's `staff` user unless `user`), store (or root), broker (the
// websockets URL; default ws://<this host>:9001), devices (comma-separated `device:capability` pairs the
// tablet may override, e.g. `fitting-1-climate:temperature`; the team's zones' devices, from the config).
import mqtt from "./vendor/mqtt/mqtt.esm.js";

const params = new URLSearchParams(location.search);
const team = params.get("team") ?? "";
const root = params.get("root") ?? `store/${params.get("store") ?? ""}`;
const brokerUrl = params.get("broker") ?? `ws://${location.hostname}:9001`;
const topics = {
  notices: `${root}/staff/notice/${team}`,
  ack: `${root}/staff/${team}/ack`,
  override: (device) => `${root}/device/${device}/override`,
};
const NOTICE_ID = /^[0-9a-f]{32}$/;
const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const $ = (id) => document.getElementById(id);
// What the page has seen (tests, debugging): counts only.
window.staff = { notices: 0, withdrawn: 0, answers: 0, overrides: 0, bad: 0 };

function element(tag, text, attrs = {}) {
  const el = document.createElement(tag);
  if (text !== undefined && text !== null) el.textContent = String(text); // text only, never markup
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
  return el;
}

function setStatus(text, name) {
  $("status").textContent = text;
  $("status").dataset.state = name;
}

function refreshEmpty() {
  $("none").hidden = $("notices").children.length > 0;
}

function describe(notice) {
  const lines = [];
  if (typeof notice.display_name === "string") lines.push(notice.display_name);
  if (typeof notice.language === "string") lines.push(`speaks ${notice.language}`);
  if (notice.sizes && typeof notice.sizes === "object") {
    lines.push(`sizes ${Object.entries(notice.sizes).map(([k, v]) => `${k} ${v}`).join(", ")}`);
  }
  if (Array.isArray(notice.interests) && notice.interests.length) lines.push(`likes ${notice.interests.join(", ")}`);
  if (notice.needs && typeof notice.needs === "object" && Object.keys(notice.needs).length) {
    lines.push(`needs ${Object.entries(notice.needs).map(([k, v]) => `${k} ${v}`).join(", ")}`);
  }
  if (Array.isArray(notice.pickup) && notice.pickup.length) {
    lines.push(`collecting ${notice.pickup.map((o) => `${o.reference} (${o.counter})`).join(", ")}`);
  }
  return lines;
}

function answer(client, item, noticeId, action) {
  client.publish(topics.ack, JSON.stringify({ v: 1, notice_id: noticeId, action }), { qos: 1 });
  item.dataset.answer = action;
  window.staff.answers += 1;
}

function onNotice(client, notice) {
  if (typeof notice.notice_id !== "string" || !NOTICE_ID.test(notice.notice_id)) return void (window.staff.bad += 1);
  const existing = document.querySelector(`[data-notice="${notice.notice_id}"]`); // a hex id: safe in a selector
  if (notice.status === "withdrawn") {
    existing?.remove();
    window.staff.withdrawn += 1;
  } else if (notice.status === "open" && existing === null) {
    const item = element("li", null, { class: "notice", "data-notice": notice.notice_id });
    item.append(element("strong", `In ${notice.zone ?? "?"}`));
    for (const line of describe(notice)) item.append(element("p", line));
    for (const action of ["assisting", "dismissed"]) {
      const button = element("button", action === "assisting" ? "I'm on it" : "Dismiss", { type: "button", "data-action": action });
      button.addEventListener("click", () => answer(client, item, notice.notice_id, action));
      item.append(button);
    }
    $("notices").prepend(item);
    window.staff.notices += 1;
  } else if (notice.status !== "open") {
    window.staff.bad += 1;
  }
  refreshEmpty();
}

function deviceRow(client, device, capability) {
  const item = element("li", null, { class: "device", "data-device": device });
  item.append(element("strong", `${device} · ${capability}`));
  const value = element("input", null, { type: "text", inputmode: "decimal", "aria-label": `${capability} value`, size: "6" });
  const minutes = element("input", null, { type: "number", min: "1", max: "240", value: "15", "aria-label": "minutes", size: "4" });
  const send = (forS, values) => {
    client.publish(topics.override(device), JSON.stringify({ v: 1, values, for_s: forS }), { qos: 1 });
    window.staff.overrides += 1;
  };
  const set = element("button", "Override", { type: "button", "data-action": "override" });
  set.addEventListener("click", () => {
    const text = value.value.trim();
    const number = Number(text);
    const chosen = text !== "" && Number.isFinite(number) ? number : text; // a number, else a choice
    const forS = Math.round(Math.min(Math.max(Number(minutes.value) || 15, 1), 240) * 60);
    if (text !== "") send(forS, { [capability]: chosen });
  });
  const clear = element("button", "Clear", { type: "button", "data-action": "clear" });
  clear.addEventListener("click", () => send(0, {}));
  item.append(value, element("span", " for "), minutes, element("span", " min "), set, clear);
  return item;
}

function main() {
  $("team").textContent = team;
  if (!ID.test(team)) {
    setStatus("no team in the URL (?team=…)", "error");
    return;
  }
  const client = mqtt.connect(brokerUrl, {
    username: params.get("user") ?? "staff",
    password: params.get("password") ?? "",
    clientId: `staff-${team}-${Math.random().toString(16).slice(2, 10)}`,
    reconnectPeriod: 1000,
  });
  client.on("connect", () => {
    setStatus("online", "online");
    client.subscribe(topics.notices, { qos: 1 });
  });
  client.on("offline", () => setStatus("offline", "offline"));
  client.on("message", (topic, payload) => {
    let body = null;
    try {
      body = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      body = null;
    }
    if (topic !== topics.notices || body === null || typeof body !== "object" || body.v !== 1) return void (window.staff.bad += 1);
    onNotice(client, body);
  });
  const devices = (params.get("devices") ?? "").split(",").filter(Boolean);
  for (const pair of devices) {
    const [device, capability] = pair.split(":");
    if (ID.test(device ?? "") && ID.test(capability ?? "")) $("devices").append(deviceRow(client, device, capability));
  }
  $("devices-section").hidden = $("devices").children.length === 0;
  refreshEmpty();
}

main();
