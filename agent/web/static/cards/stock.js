"use strict";
// Stock from RFID: what to bring from the stockroom, and items that are where they should not be.
function stockParts(body) {
  const { el } = O2O;
  let summary = body.querySelector(".stock-summary");
  if (!summary) {
    summary = el("p", "…", "stock-summary");
    const refill = el("div"); refill.id = "stock-replenish";
    const wrong = el("div"); wrong.id = "stock-misplaced";
    body.replaceChildren(summary, refill, wrong);
  }
  return { summary, refill: body.querySelector("#stock-replenish"), wrong: body.querySelector("#stock-misplaced") };
}

const stockHead = (text) => { const p = O2O.el("p"); p.append(O2O.el("strong", text)); return p; };

async function loadStockAlerts(body) {
  const { el, api, fmtAge } = O2O;
  const r = await api("/api/stock/alerts");
  if (!r.ok) return;
  const a = await r.json();
  const parts = stockParts(body);
  const refill = el("ul", undefined, "list");
  for (const x of a.replenish) {
    const li = el("li", `${x.name || x.gtin}: ${x.floor} on the floor, ${x.stockroom} in the stockroom`);
    li.dataset.gtin = x.gtin; refill.append(li);
  }
  if (!a.replenish.length) refill.append(el("li", "Nothing to bring out.", "muted"));
  if (a.replenish_total > a.replenish.length) refill.append(el("li", `and ${a.replenish_total - a.replenish.length} more`, "muted"));
  parts.refill.replaceChildren(stockHead(`Replenish from the stockroom (floor at or below ${a.replenish_below})`), refill);
  const wrong = el("ul", undefined, "list");
  for (const x of a.misplaced) {
    const li = el("li", `${x.name || x.gtin} in ${x.zone}: ${x.reason} (${fmtAge(x.for_s)})`);
    li.dataset.epc = x.epc; wrong.append(li);
  }
  if (!a.misplaced.length) wrong.append(el("li", "None.", "muted"));
  if (a.misplaced_total > a.misplaced.length) wrong.append(el("li", `and ${a.misplaced_total - a.misplaced.length} more`, "muted"));
  parts.wrong.replaceChildren(stockHead("Misplaced"), wrong);
}

let stockEventTimer = null;
O2O.card("stock", {
  title: "Stock",
  render(body, s) {
    const st = s.stock; const parts = stockParts(body);
    if (!st) { parts.summary.textContent = "Stock is not configured on this gateway."; return; }
    const roles = Object.entries(st.items).map(([role, n]) => `${n.toLocaleString()} ${role}`).join(", ");
    parts.summary.textContent = (st.complete ? "" : "Counting (readers are completing their first rounds). ") +
      `${st.gtins.toLocaleString()} products: ${roles || "nothing counted yet"}.`;
  },
  refresh: loadStockAlerts,
  onEvent(e, body) {
    if (e.kind !== "stock.changed" || stockEventTimer) return;
    stockEventTimer = setTimeout(() => { stockEventTimer = null; loadStockAlerts(body); }, 2000);
  },
});
