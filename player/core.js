// What "correct" means for a display (docs/player.md), apart from the network: versions, preloading, proof of
// play, expiry and the fallback. `Player` gets manifests as bytes and answers with acks through `send`; the
// MQTT wiring is in player.js.

import { preload, render, strings } from "./render.js";

const MAX_VERSION = Number.MAX_SAFE_INTEGER; // versions are wall-clock milliseconds (~2^41): exact in a double
// How often a pending expiry is looked at: a timer long in the future drifts (a suspended box, a clock set
// by NTP); checking each second keeps the fallback within a second of `expires_at` by the display's clock.
const EXPIRY_CHECK_MS = 1000;

// The content is on the screen once the frame that holds it has been painted: the first callback runs
// before that frame is painted, the second before the next one, i.e. after the paint.
export function afterPaint() {
  return new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
}

function parse(payload) {
  let text;
  try {
    text = typeof payload === "string" ? payload : new TextDecoder("utf-8", { fatal: true }).decode(payload);
  } catch {
    return [null, "not_utf8"];
  }
  if (text === "") return [null, "empty"];
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    return [null, "not_json"];
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) return [null, "not_object"];
  if (!Number.isSafeInteger(body.version) || body.version < 1 || body.version > MAX_VERSION) return [null, "bad_version"];
  if (body.decision_id != null && (typeof body.decision_id !== "string" || body.decision_id.length > 64)) {
    return [null, "bad_decision_id"];
  }
  if (typeof body.template !== "string" && body.template != null) return [null, "bad_template"];
  let expires = null;
  if (body.expires_at != null) {
    expires = typeof body.expires_at === "string" ? Date.parse(body.expires_at) : NaN;
    if (!Number.isFinite(expires)) return [null, "bad_expires_at"];
  }
  return [{ ...body, expiresMs: expires }, null];
}

export class Player {
  // stage: the element content goes into; send(ack object); config: loadConfig()'s.
  constructor({ stage, send, config }) {
    this.stage = stage;
    this.send = send;
    this.config = config;
    this.latest = 0; // the greatest version accepted (shown, being prepared, or failed)
    this.current = null; // {manifest, view} on the screen
    this.pending = null; // the manifest being preloaded
    this.idle = null; // the newest fallback manifest: what an expiry returns to
    this.expiryTimer = null;
    this.stats = { connects: 0, received: 0, shown: 0, failed: 0, ignored: 0, rejected: {}, expired: 0, acks: 0 };
  }

  // A message on {root}/display/{id}/content. Never throws: bad input is counted and dropped.
  receive(payload) {
    this.stats.received += 1;
    const [manifest, reason] = parse(payload);
    if (manifest === null) {
      if (reason !== "empty") this.stats.rejected[reason] = (this.stats.rejected[reason] || 0) + 1;
      return;
    }
    if (manifest.version <= this.latest) {
      this.stats.ignored += 1; // a repeat (the retained copy on reconnect) or an older one arriving late
      return;
    }
    this.latest = manifest.version;
    if (manifest.fallback === true) this.idle = manifest;
    this.present(manifest).catch((error) => this.fail(manifest, `render: ${error && error.message}`));
  }

  async present(manifest) {
    this.pending = manifest;
    if (manifest.expiresMs !== null && manifest.expiresMs <= Date.now()) {
      this.pending = null;
      this.stats.expired += 1; // it arrived too late to be shown: nothing shown, nothing acked
      this.showIdle();
      return;
    }
    const view = this.build(manifest);
    try {
      await preload(view.images, this.config.asset_timeout_ms);
    } catch (error) {
      if (this.pending === manifest) {
        this.pending = null;
        this.fail(manifest, error.message);
      }
      return;
    }
    if (this.pending !== manifest) return; // a newer manifest came while the images loaded
    this.pending = null;
    this.swap(manifest, view);
    await afterPaint();
    if (this.current === null || this.current.manifest !== manifest) return; // replaced before it was painted
    this.stats.shown += 1;
    if (manifest.decision_id != null) {
      this.ack(manifest, { status: "shown", shown_at: new Date().toISOString() });
    }
  }

  build(manifest) {
    const ui = manifest.ui && typeof manifest.ui === "object" ? manifest.ui : {};
    const ctx = {
      assets: this.config.assets,
      brand: this.config.brand,
      playlists: this.config.playlists,
      t: strings(ui.language || this.config.language),
    };
    return { ...render(manifest.template, manifest.data, ctx), ui };
  }

  swap(manifest, view) {
    if (this.current) this.current.view.stop();
    this.current = { manifest, view };
    applyUi(view.ui);
    const stage = this.stage;
    stage.replaceChildren(view.node);
    stage.dataset.version = String(manifest.version);
    stage.dataset.template = view.template;
    stage.dataset.fallback = String(manifest.fallback === true);
    stage.dataset.expired = "false";
    view.start();
    this.armExpiry(manifest);
  }

  armExpiry(manifest) {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
    if (manifest.expiresMs === null) return;
    const check = () => {
      if (this.current === null || this.current.manifest !== manifest) return;
      const left = manifest.expiresMs - Date.now();
      if (left <= 0) {
        this.stats.expired += 1;
        this.showIdle();
        return;
      }
      this.expiryTimer = setTimeout(check, Math.min(left, EXPIRY_CHECK_MS));
    };
    check();
  }

  // The display's own idle content: the newest fallback the gateway sent, else the plain template.
  showIdle() {
    const idle = this.idle;
    const manifest = {
      version: this.latest,
      template: idle ? idle.template : "plain",
      data: idle ? idle.data : {},
      fallback: true,
      decision_id: null,
      expiresMs: null,
    };
    const view = this.build(manifest);
    // The fallback's images were loaded when it was first shown; if not, the text shows without them.
    view.images.forEach(({ img, url }) => {
      if (url) img.src = url;
    });
    this.swap(manifest, view);
    this.stage.dataset.expired = "true";
  }

  fail(manifest, reason) {
    this.stats.failed += 1;
    if (manifest.decision_id != null) this.ack(manifest, { status: "failed", reason: String(reason).slice(0, 200) });
  }

  ack(manifest, fields) {
    this.stats.acks += 1;
    this.send({ v: 1, ts: new Date().toISOString(), version: manifest.version, decision_id: manifest.decision_id, ...fields });
  }
}

// A kiosk's ui preferences (docs/mqtt.md "Display manifest"), for as long as that manifest is shown.
export function applyUi(ui) {
  const root = document.documentElement;
  const language = typeof ui.language === "string" && /^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$/.test(ui.language) ? ui.language : "";
  root.lang = language || document.documentElement.dataset.lang || "en";
  const scale = Number(ui.text_scale);
  root.style.setProperty("--text-scale", Number.isFinite(scale) ? String(Math.min(2, Math.max(1, scale))) : "1");
  root.dataset.contrast = ui.contrast === "high" ? "high" : "normal";
  root.dataset.motion = ui.reduced_motion === "on" || ui.reduced_motion === true ? "reduced" : "full";
}
