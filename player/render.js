// The templates (docs/player.md "Templates"): a manifest's `template` and `data` → a detached DOM node, the
// images it needs (preloaded before it is switched in) and a `start`/`stop` pair for anything that moves.
// Every text goes in as text (textContent, createTextNode): nothing from a manifest is ever parsed as HTML.

const TEXT = {
  en: { until: "until", pickup: "Ready for collection", none: "No orders waiting", counter: "counter", mydata: "What we hold about you", granted: "granted", refused: "not granted", fields: "Profile fields", days: "deleted after {n} days", offline: "Store system offline: showing what we last had", reconnecting: "Reconnecting…" },
  fr: { until: "jusqu'à", pickup: "Prêt à retirer", none: "Aucune commande en attente", counter: "comptoir", mydata: "Ce que nous savons de vous", granted: "accordé", refused: "non accordé", fields: "Champs du profil", days: "effacé après {n} jours", offline: "Système du magasin hors ligne", reconnecting: "Reconnexion…" },
  de: { until: "bis", pickup: "Zur Abholung bereit", none: "Keine Bestellungen", counter: "Schalter", mydata: "Was wir über Sie speichern", granted: "erteilt", refused: "nicht erteilt", fields: "Profilfelder", days: "gelöscht nach {n} Tagen", offline: "Filialsystem offline", reconnecting: "Verbinde neu…" },
  es: { until: "hasta", pickup: "Listo para recoger", none: "No hay pedidos", counter: "mostrador", mydata: "Lo que guardamos de usted", granted: "concedido", refused: "no concedido", fields: "Campos del perfil", days: "borrado tras {n} días", offline: "Sistema de la tienda sin conexión", reconnecting: "Reconectando…" },
};

export function strings(language) {
  const base = String(language || "en").toLowerCase().split(/[-_]/)[0];
  return TEXT[base] || TEXT.en;
}

const SAFE_URL = /^(https?:|data:image\/|blob:)/i;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function str(value, max = 500) {
  if (value === undefined || value === null) return "";
  if (typeof value === "object") return "";
  return String(value).slice(0, max);
}

// An image of the manifest: relative names resolve against the configured asset base; anything that is not
// http(s), data:image or blob is not loaded (and fails the manifest like a broken image).
function image(name, ctx, images) {
  const src = str(name, 2000);
  if (!src) return null;
  let url;
  try {
    url = new URL(src, ctx.assets).href;
  } catch {
    url = "";
  }
  const img = el("img", "image");
  img.alt = "";
  img.decoding = "async";
  img.dataset.src = src;
  images.push({ img, url: SAFE_URL.test(url) ? url : "", name: src });
  return img;
}

function offerCard(data, ctx, images) {
  const card = el("article", "offer-card");
  const picture = image(data.image, ctx, images);
  if (picture) card.append(picture);
  const words = el("div", "words");
  words.append(el("h1", "headline", str(data.headline) || str(data.title)));
  if (str(data.text)) words.append(el("p", "text", str(data.text)));
  if (str(data.price)) words.append(el("p", "price", str(data.price)));
  if (str(data.until)) words.append(el("p", "until", `${ctx.t.until} ${str(data.until)}`));
  card.append(words);
  return { node: card };
}

function loop(data, ctx, images) {
  const named = typeof data.playlist === "string" ? ctx.playlists[data.playlist] : undefined;
  const items = (Array.isArray(data.items) ? data.items : Array.isArray(named) ? named : []).slice(0, 50);
  if (items.length === 0) return plain(data, ctx, images);
  const section = el("section", "loop");
  const slides = items.map((item, index) => {
    const slide = el("div", "slide");
    const entry = item && typeof item === "object" ? item : { headline: item };
    const picture = image(entry.image, ctx, images);
    if (picture) slide.append(picture);
    slide.append(el("h1", "headline", str(entry.headline) || str(entry.title)));
    if (str(entry.text)) slide.append(el("p", "text", str(entry.text)));
    slide.hidden = index !== 0;
    section.append(slide);
    return slide;
  });
  const interval = Math.min(300, Math.max(2, Number(data.interval_s) || 8)) * 1000;
  let timer = null;
  let shown = 0;
  const advance = () => {
    slides[shown].hidden = true;
    shown = (shown + 1) % slides.length;
    slides[shown].hidden = false;
    section.dataset.slide = String(shown);
    timer = setTimeout(advance, interval);
  };
  section.dataset.slide = "0";
  return {
    node: section,
    start() {
      if (slides.length > 1) timer = setTimeout(advance, interval);
    },
    stop() {
      clearTimeout(timer);
    },
  };
}

function pickup(data, ctx) {
  const section = el("section", "pickup");
  section.append(el("h1", "headline", ctx.t.pickup));
  const orders = Array.isArray(data.orders) ? data.orders.slice(0, 100) : [];
  if (orders.length === 0) {
    section.append(el("p", "empty", ctx.t.none));
    return { node: section };
  }
  const list = el("ol", "orders");
  for (const order of orders) {
    if (!order || typeof order !== "object") continue;
    const item = el("li", "order");
    item.append(el("span", "reference", str(order.reference, 64)));
    if (str(order.counter)) item.append(el("span", "counter", `${ctx.t.counter} ${str(order.counter, 64)}`));
    list.append(item);
  }
  section.append(list);
  return { node: section };
}

function myData(data, ctx) {
  const section = el("section", "my-data");
  section.append(el("h1", "headline", ctx.t.mydata));
  const consents = el("ul", "consents");
  for (const consent of Array.isArray(data.consents) ? data.consents.slice(0, 50) : []) {
    if (!consent || typeof consent !== "object") continue;
    const item = el("li", "consent", `${str(consent.purpose, 64)}: ${consent.granted === true ? ctx.t.granted : ctx.t.refused}`);
    item.dataset.purpose = str(consent.purpose, 64);
    consents.append(item);
  }
  section.append(consents);
  const fields = Array.isArray(data.profile_fields) ? data.profile_fields.slice(0, 50).map((f) => str(f, 64)) : [];
  if (fields.length) section.append(el("p", "fields", `${ctx.t.fields}: ${fields.join(", ")}`));
  const counts = el("dl", "counts");
  for (const [key, value] of Object.entries(data)) {
    if (typeof value !== "number" && typeof value !== "boolean") continue;
    const term = el("dt", "", key.replaceAll("_", " "));
    const detail = el("dd", "", typeof value === "boolean" ? (value ? "✓" : "–") : String(value));
    detail.dataset.count = key;
    counts.append(term, detail);
  }
  section.append(counts);
  const retention = data.retention_days && typeof data.retention_days === "object" ? data.retention_days : {};
  const kept = el("ul", "retention");
  for (const [what, days] of Object.entries(retention).slice(0, 30)) {
    if (typeof days !== "number") continue;
    kept.append(el("li", "", `${what.replaceAll("_", " ")}: ${ctx.t.days.replace("{n}", String(Math.round(days)))}`));
  }
  if (kept.childElementCount) section.append(kept);
  return { node: section };
}

function plain(data, ctx, images) {
  const section = el("section", "plain");
  const picture = image(data.image, ctx, images);
  if (picture) section.append(picture);
  section.append(el("h1", "headline", str(data.headline) || str(data.title) || ctx.brand));
  if (str(data.text)) section.append(el("p", "text", str(data.text)));
  return { node: section };
}

const TEMPLATES = {
  "offer-card": offerCard,
  offer: offerCard, // the catalog's default template name (config/offers.example.toml)
  loop,
  "brand-loop": loop,
  pickup,
  "my-data": myData,
};

// → {node, images: [{img, url, name}], start(), stop(), template}: nothing is attached or started yet.
export function render(template, data, ctx) {
  const images = [];
  const body = data && typeof data === "object" && !Array.isArray(data) ? data : {};
  const known = Object.hasOwn(TEMPLATES, template);
  const view = (known ? TEMPLATES[template] : plain)(body, ctx, images);
  return {
    node: view.node,
    images,
    start: view.start || (() => {}),
    stop: view.stop || (() => {}),
    template: known ? template : "plain",
  };
}

// Loads and decodes every image of a view before it is shown: resolves, or rejects with the name that failed.
export function preload(images, timeoutMs) {
  return Promise.all(
    images.map(({ img, url, name }) => {
      if (!url) return Promise.reject(new Error(`image not allowed: ${name}`));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`image timed out: ${name}`)), timeoutMs);
        img.src = url;
        img.decode().then(
          () => {
            clearTimeout(timer);
            resolve();
          },
          () => {
            clearTimeout(timer);
            reject(new Error(`image did not load: ${name}`));
          },
        );
      });
    }),
  );
}
