"use strict";
// The staff page: polls /api/status, follows /api/events (server-sent events), draws the last hour.
const $ = (id) => document.getElementById(id);
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; };
let csrf = null;
let lastAcked = null;

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (opts.method && opts.method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const r = await fetch(path, Object.assign({}, opts, { headers, credentials: "same-origin" }));
  if (r.status === 401 && !location.pathname.startsWith("/login")) { location.href = "/login"; throw new Error("logged out"); }
  return r;
}

const fmtTime = (ts) => ts ? new Date(ts * 1000).toLocaleTimeString() : "never";
const fmtAge = (s) => s === null || s === undefined ? "—" : s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;

function renderStatus(s) {
  $("store").textContent = s.store; $("gateway").textContent = s.gateway;
  const h = $("health"); h.className = "health " + s.health.level;
  $("health-summary").textContent = s.health.summary;
  const reasons = $("health-reasons"); reasons.replaceChildren(...s.health.reasons.slice(1).map((r) => el("li", r)));
  const rows = s.readers.map((r) => {
    const tr = el("tr"); tr.dataset.reader = r.id; tr.dataset.state = r.state;
    tr.append(el("td", `${r.id} (${r.protocol})`));
    const st = el("td", undefined); st.append(el("span", r.state, "state " + r.state));
    if (r.error) st.append(el("div", r.error, "muted"));
    tr.append(st, el("td", String(r.reads_per_s), "num"), el("td", String(r.tags_in_view), "num hide-narrow"));
    const actions = el("td", undefined, "admin");
    for (const a of ["restart", r.state === "paused" ? "resume" : "pause"]) {
      const b = el("button", a); b.dataset.action = a; b.dataset.reader = r.id;
      b.onclick = () => readerAction(r.id, a); actions.append(b, document.createTextNode(" "));
    }
    tr.append(actions); return tr;
  });
  $("readers").replaceChildren(...rows);
  $("cloud-state").textContent = s.mqtt.connected ? "connected" : `down (${s.mqtt.last_error || "?"})`;
  $("cloud-backlog").textContent = `${s.outbox.depth.toLocaleString()} events`;
  $("cloud-age").textContent = fmtAge(s.outbox.oldest_age_s);
  $("cloud-ack").textContent = fmtTime(s.mqtt.last_ack);
  $("cloud-dropped").textContent = s.outbox.dropped.toLocaleString();
  const acked = s.mqtt.events_acked;
  if (acked !== undefined) {
    const now = Date.now();
    if (lastAcked) $("cloud-rate").textContent = `${Math.max(0, Math.round((acked - lastAcked.n) / ((now - lastAcked.t) / 1000)))} events/s`;
    lastAcked = { n: acked, t: now };
  }
  $("config-version").textContent = String(s.config.version);
  $("config-push").textContent = s.config.last_push ? `version ${s.config.last_push.version} ${s.config.last_push.status} at ${fmtTime(s.config.last_push.at)}` : "none";
  $("catalog").textContent = s.catalog ? `version ${s.catalog.version}, ${s.catalog.products} products` : "—";
  $("version").textContent = s.version;
  if (s.checkout) {
    $("stations").replaceChildren(...Object.entries(s.checkout.stations).map(([id, st]) => el("li", `${id}: ${st.items} item(s) in the basket`)));
  }
  if (s.ble) {
    $("ble-state").textContent = s.ble.state === "ok" ? `Listening (${s.ble.reports.toLocaleString()} adverts heard)` : `Not listening: ${s.ble.reason || s.ble.state}`;
    $("beacons").replaceChildren(...s.ble.beacons.map((b) => {
      const h = b.health ? ` · battery ${b.health.battery_mv ?? "?"} mV, ${b.health.temperature_c ?? "?"} °C` : "";
      return el("li", `${b.id}: ${b.zone || "out of range"} (${b.rssi ?? "—"} dBm)${h}`);
    }));
  }
  if (s.wifi) {
    const p = s.wifi.presence;
    $("wifi").textContent = `${s.wifi.sessions.length} guest session(s)` + (s.wifi.auth_failures ? `, ${s.wifi.auth_failures} failed to connect` : "") +
      (p ? ` · footfall sensor ${p.state === "ok" ? "listening" : p.reason || p.state} (${p.probes.toLocaleString()} probes)` : "");
  }
  document.body.dataset.backlog = s.outbox.depth;
}

function spark(svg, values) {
  if (values.length < 2) { svg.replaceChildren(); svg.setAttribute("aria-label", "collecting"); return; }
  const max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * 360},${60 - (v / max) * 56}`).join(" ");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", pts); svg.replaceChildren(line);
  svg.setAttribute("aria-label", `max ${max}`);
}

async function refresh() {
  try { renderStatus(await (await api("/api/status")).json()); } catch (e) { $("health-summary").textContent = "Cannot reach the gateway."; $("health").className = "health red"; }
}
async function refreshHistory() {
  const h = await (await api("/api/history")).json();
  spark($("chart-rate"), h.samples.map((s) => s.events_per_s)); spark($("chart-backlog"), h.samples.map((s) => s.backlog));
}
async function refreshAlarms() {
  const a = (await (await api("/api/alarms")).json()).alarms;
  if (!a.length) { $("alarms").replaceChildren(el("li", "None.", "muted")); return; }
  $("alarms").replaceChildren(...a.slice(0, 20).map((x) => {
    const li = el("li", `${fmtTime(x.ts)} ${x.gate}: ${x.name} (${x.epc}) `);
    if (x.acknowledged) li.append(el("span", `checked by ${x.acknowledged.by}`, "muted"));
    else { const b = el("button", "Checked", "admin"); b.onclick = async () => { await api(`/api/actions/alarms/${encodeURIComponent(x.id)}/ack`, { method: "POST" }); refreshAlarms(); refresh(); }; li.append(b); }
    return li;
  }));
}
async function readerAction(id, action) {
  const r = await api(`/api/actions/readers/${encodeURIComponent(id)}/${action}`, { method: "POST" });
  document.body.dataset.lastAction = `${action}:${r.status}`; refresh();
}

function follow() {
  const es = new EventSource("/api/events");
  es.onmessage = (m) => {
    const e = JSON.parse(m.data); const feed = $("feed");
    const d = e.data || {}; const detail = ["beacon", "epc", "zone", "reader", "gate", "total", "devices", "error"].filter((k) => d[k] !== undefined && d[k] !== null).map((k) => `${k}=${d[k]}`).join(" ");
    feed.prepend(el("li", `${new Date(e.ts).toLocaleTimeString()} ${e.kind} ${e.source} ${detail}`));
    while (feed.children.length > 100) feed.lastChild.remove();
    if (e.kind === "gate.alarm") refreshAlarms();
  };
}

async function startPage() {
  const me = await (await api("/api/me")).json();
  csrf = me.csrf; $("user").textContent = `${me.user} (${me.role})`;
  if (me.role === "admin") document.body.classList.add("is-admin");
  $("logout").onclick = async () => { await api("/logout", { method: "POST" }); location.href = "/login"; };
  $("sync").onclick = async () => { const r = await api("/api/actions/sync", { method: "POST" }); document.body.dataset.lastAction = `sync:${r.status}`; refresh(); };
  await refresh(); refreshHistory(); refreshAlarms(); follow();
  setInterval(refresh, 2000); setInterval(refreshHistory, 10000); setInterval(refreshAlarms, 10000);
}

function startLogin() {
  $("login").onsubmit = async (ev) => {
    ev.preventDefault();
    const r = await fetch("/login", { method: "POST", headers: { "Content-Type": "application/json" }, credentials: "same-origin",
      body: JSON.stringify({ username: $("username").value, password: $("password").value }) });
    if (r.ok) location.href = "/"; else $("error").textContent = (await r.json()).error;
  };
}

if (document.body.classList.contains("login")) startLogin(); else startPage();
