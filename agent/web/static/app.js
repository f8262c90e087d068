"use strict";
// The staff page: polls /api/status, follows /api/events (server-sent events), draws the last hour.
// Each feature's card lives in /static/cards/{key}.js and registers itself with O2O.card(); the page
// loads the cards this gateway runs (/api/cards) and renders each from the status document.
const $ = (id) => document.getElementById(id);
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; };
let csrf = null;

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (opts.method && opts.method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const r = await fetch(path, Object.assign({}, opts, { headers, credentials: "same-origin" }));
  if (r.status === 401 && !location.pathname.startsWith("/login")) { location.href = "/login"; throw new Error("logged out"); }
  return r;
}

const fmtTime = (ts) => ts ? new Date(ts * 1000).toLocaleTimeString([], { hourCycle: "h23" }) : "never";  // 24-hour, as the health line
const fmtAge = (s) => s === null || s === undefined ? "—" : s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;

// One notice line for what staff did: pending, done, or failed with the reason.
function notice(text, kind) { const n = $("notice"); n.hidden = false; n.textContent = text; n.className = `notice ${kind || ""}`; }

// An action button's request, with visible feedback; `tag` is what the page records for tests and screen readers.
async function act(path, { label, tag } = {}) {
  notice(`${label || "Working"}…`, "pending");
  let r;
  try { r = await api(path, { method: "POST" }); } catch (e) { notice(`${label || "Action"} failed: ${e.message}`, "failed"); return null; }
  document.body.dataset.lastAction = `${tag || path}:${r.status}`;
  let body = {}; try { body = await r.json(); } catch (e) { /* no body */ }
  if (r.ok) notice(`${label || "Action"}: done.`, "done"); else notice(`${label || "Action"} failed: ${body.error || r.status}`, "failed");
  refresh();
  return r.ok ? body : null;
}

const CARDS = new Map();  // key -> {title, render(body, status), refresh?(body), onEvent?(event, body), wide?}
window.O2O = { card: (key, def) => { CARDS.set(key, def); }, $, el, api, act, fmtTime, fmtAge, notice };

let lastStatus = null;
function renderStatus(s) {
  lastStatus = s;
  $("gateway").textContent = `${s.store} · ${s.gateway}`;  // #store holds the store's name (loadCards)
  const h = $("health"); h.className = "health " + s.health.level;
  $("health-summary").textContent = s.health.summary;
  $("health-reasons").replaceChildren(...s.health.reasons.slice(1).map((r) => el("li", r)));
  document.body.dataset.backlog = s.outbox ? s.outbox.depth : 0;
  for (const [key, def] of CARDS) {
    const body = document.querySelector(`#card-${key} .body`);
    if (body) { try { def.render(body, s); } catch (e) { body.replaceChildren(el("p", `Cannot show this card: ${e.message}`, "muted")); } }
  }
}

function spark(svg, values, label) {
  if (values.length < 2) { svg.replaceChildren(); svg.setAttribute("aria-label", "collecting"); return 0; }
  const max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * 360},${60 - (v / max) * 56}`).join(" ");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", pts); svg.replaceChildren(line);
  svg.setAttribute("aria-label", `${label}: max ${max}`);
  return max;
}

async function refresh() {
  try { renderStatus(await (await api("/api/status")).json()); } catch (e) { $("health-summary").textContent = "Cannot reach the gateway."; $("health").className = "health red"; }
}
async function refreshHistory() {
  const h = await (await api("/api/history")).json();
  const rate = spark($("chart-rate"), h.samples.map((s) => s.events_per_s), "events per second");
  const backlog = spark($("chart-backlog"), h.samples.map((s) => s.backlog), "events waiting");
  $("rate-max").textContent = `max ${rate.toLocaleString()} events/s`; $("backlog-max").textContent = `max ${backlog.toLocaleString()} events`;
}
function refreshCards() { for (const [key, def] of CARDS) { const b = document.querySelector(`#card-${key} .body`); if (b && def.refresh) def.refresh(b); } }

function follow() {
  const es = new EventSource("/api/events");
  es.onmessage = (m) => {
    const e = JSON.parse(m.data); const feed = $("feed");
    const d = e.data || {}; const detail = ["beacon", "member", "epc", "zone", "reader", "gate", "order_id", "campaign", "total", "devices", "error"].filter((k) => d[k] !== undefined && d[k] !== null).map((k) => `${k}=${d[k]}`).join(" ");
    feed.prepend(el("li", `${new Date(e.ts).toLocaleTimeString()} ${e.kind} ${e.source} ${detail}`));
    while (feed.children.length > 100) feed.lastChild.remove();
    for (const [key, def] of CARDS) { const b = document.querySelector(`#card-${key} .body`); if (b && def.onEvent) def.onEvent(e, b); }
  };
}

function loadScript(src) {
  return new Promise((resolve) => { const s = document.createElement("script"); s.src = src; s.onload = resolve; s.onerror = resolve; document.head.append(s); });
}

async function loadCards() {
  const page = await (await api("/api/cards")).json();
  $("store").textContent = page.store_name; document.title = `${page.store_name} · o2o-edge`;
  const anchor = $("card-history");
  for (const c of page.cards) {
    const section = el("section", undefined, "card"); section.id = `card-${c.key}`;
    section.append(el("h2", "…"), el("div", undefined, "body"));
    anchor.before(section);
  }
  await Promise.all(page.cards.map((c) => loadScript(c.script)));
  for (const c of page.cards) {
    const def = CARDS.get(c.key); const section = $(`card-${c.key}`);
    if (!def) { section.remove(); continue; }
    section.querySelector("h2").textContent = def.title;
    if (def.wide) section.classList.add("wide");
  }
}

async function startPage() {
  const me = await (await api("/api/me")).json();
  csrf = me.csrf; $("user").textContent = `${me.user} (${me.role})`;
  if (me.role === "admin") document.body.classList.add("is-admin");
  $("logout").onclick = async () => { await api("/logout", { method: "POST" }); location.href = "/login"; };
  await loadCards();
  await refresh(); refreshHistory(); refreshCards(); follow();
  setInterval(refresh, 2000); setInterval(refreshHistory, 10000); setInterval(refreshCards, 10000);
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
