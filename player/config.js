// Where the player's settings come from (docs/player.md "Settings"): the page's URL query, else config.json
// beside index.html. A query that names a `display` is complete and no file is read; otherwise config.json
// (or the file the `config` parameter names) supplies every setting and the query may override single ones.
//
//   display    the display id the gateway knows (its [[displays]] id); also the broker user unless `username`
//   username   the broker user name (default: the display id)
//   password   the broker password (prefer config.json on a signage box: a URL stays in the browser history)
//   store      the store id (topics under store/{store}), or
//   root       the whole topic root (default store/{store})
//   broker     the MQTT-over-WebSockets URL (default ws://<this page's host>:9001)
//   assets     where relative image names resolve (default ./assets/ beside index.html)
//   brand      the text of the plain idle screen
//   playlists  (config.json only) what a `loop` of a named playlist shows: {"autumn": [{"headline", "image"}]}

const NUMBERS = { keepalive_s: [5, 600, 15], reconnect_ms: [200, 60000, 1000], asset_timeout_ms: [500, 120000, 10000] };

function number(value, [low, high, fallback]) {
  const n = Number(value);
  return Number.isFinite(n) ? Math.min(high, Math.max(low, n)) : fallback;
}

export async function loadConfig(href = location.href) {
  const url = new URL(href);
  const query = Object.fromEntries(url.searchParams);
  let file = {};
  if (!query.display) {
    const response = await fetch(new URL(query.config || "config.json", url), { cache: "no-store" });
    if (!response.ok) throw new Error(`no display in the URL and no ${query.config || "config.json"} (${response.status})`);
    file = await response.json();
    if (file === null || typeof file !== "object" || Array.isArray(file)) throw new Error("config.json is not an object");
  }
  const merged = { ...file, ...query };
  const display = String(merged.display || "");
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(display)) throw new Error(`display id ${JSON.stringify(display)} is not an id`);
  const root = String(merged.root || (merged.store ? `store/${merged.store}` : ""));
  if (!root || /[+#]/.test(root)) throw new Error("no topic root: give store (or root)");
  const config = {
    display,
    username: String(merged.username || display),
    password: merged.password == null ? undefined : String(merged.password),
    root,
    broker: String(merged.broker || `ws://${url.hostname || "127.0.0.1"}:9001`),
    assets: new URL(String(merged.assets || "assets/"), url).href,
    brand: String(merged.brand || ""),
    playlists: file.playlists && typeof file.playlists === "object" ? file.playlists : {},
  };
  for (const [key, bounds] of Object.entries(NUMBERS)) config[key] = number(merged[key], bounds);
  config.topics = {
    content: `${root}/display/${display}/content`,
    ack: `${root}/display/${display}/ack`,
    availability: `${root}/display/${display}/availability`,
    status: `${root}/gateway/status`,
  };
  return config;
}
