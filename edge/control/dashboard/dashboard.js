// The store dashboard: one server-sent event stream of snapshots (/api/events), rendered with textContent
// only (an offer title is text, never markup). docs/dashboard.md describes the snapshot.

const $ = (id) => document.getElementById(id);

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "—" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function fill(tableId, items, columns) {
  const body = $(tableId).tBodies[0];
  const rows = items.map((item) => {
    const tr = document.createElement("tr");
    for (const [value, className] of columns(item)) cell(tr, value, className);
    return tr;
  });
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell(tr, "none", "muted");
    td.colSpan = $(tableId).tHead.rows[0].cells.length;
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

function time(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : null;
}

function render(snap) {
  if (snap.starting) {
    $("status").textContent = "gateway starting…";
    return;
  }
  if (snap.error) {
    $("status").textContent = "snapshot failed: " + snap.error;
    return;
  }
  $("store").textContent = snap.store;
  $("updated").textContent = "as of " + time(snap.ts);
  const h = snap.health;
  const facts = [
    ["broker", h.mqtt.state],
    ["gateway version", h.version],
    ["model", h.model_version],
    ["configuration", h.config_version],
    ["up (s)", Math.round(h.uptime_s)],
    ["check-ins", h.checkins],
    ["decisions", h.decisions],
    ["exposures", h.exposures],
  ];
  $("health").replaceChildren(
    ...facts.flatMap(([name, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      return [dt, dd];
    }),
  );
  const alerts = snap.alerts.map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  });
  if (alerts.length === 0) {
    const li = document.createElement("li");
    li.className = "none";
    li.textContent = "no alerts";
    alerts.push(li);
  }
  $("alerts").replaceChildren(...alerts);
  fill("zones", snap.zones, (z) => [
    [z.name || z.id],
    [z.people, "num"],
    [z.identified, "num"],
    [z.dwell_s, "num"],
  ]);
  fill("screens", snap.screens, (s) => [
    [s.id],
    [s.zone],
    [s.fallback ? "fallback" : s.title || s.offer_id || "content"],
    [s.template],
    [s.version, "num"],
    [time(s.expires_at)],
    [(s.online ? "online" : "offline") + (s.pending ? ", waiting" : ""), s.online ? "" : "off"],
  ]);
  fill("devices", snap.devices, (d) => [
    [d.id],
    [d.zone],
    [d.kind],
    [
      (d.available === false ? "offline" : d.available ? "online" : "unknown") +
        (d.mismatched ? ", mismatch" : "") +
        (d.override_left_s ? `, staff override ${Math.round(d.override_left_s)} s` : ""),
      d.available === false || d.mismatched ? "off" : "",
    ],
    [Object.entries(d.values).map(([k, v]) => `${k}=${v}`).join(", ")],
  ]);
  fill("decisions", snap.decisions, (d) => [
    [time(d.at)],
    [d.display],
    [d.zone],
    [d.title || d.offer_id || "fallback"],
    [d.model_version],
    [[d.holdout ? "holdout" : "", d.explored ? "explored" : ""].filter(Boolean).join(", ")],
  ]);
}

function connect() {
  const events = new EventSource("/api/events");
  events.addEventListener("snapshot", (event) => {
    $("status").textContent = "live";
    $("status").dataset.state = "live";
    render(JSON.parse(event.data));
  });
  events.onerror = () => {
    // EventSource reconnects by itself; the page says so meanwhile.
    $("status").textContent = "reconnecting…";
    $("status").dataset.state = "offline";
  };
}

connect();
