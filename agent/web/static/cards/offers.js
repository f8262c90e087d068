"use strict";
// Proximity offers for the store manager: today's figures per campaign, two weeks of offers and
// redemptions as bars, visits and time spent per zone, and how many Wi-Fi guests opted in.
function bars(days) {
  // The bars stretch with the card; their labels are HTML around them, so the text is never stretched too.
  const { el } = O2O;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 360 75"); svg.setAttribute("preserveAspectRatio", "none"); svg.setAttribute("class", "bars");
  const max = Math.max(1, ...days.map((d) => Math.max(d.triggered, d.redeemed)));
  const w = 360 / Math.max(1, days.length);
  days.forEach((d, i) => {
    for (const [j, key, cls] of [[0, "triggered", "shown"], [1, "redeemed", "redeemed"]]) {
      const h = (d[key] / max) * 70;
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("x", i * w + 2 + j * (w / 2 - 2)); r.setAttribute("y", 75 - h);
      r.setAttribute("width", w / 2 - 3); r.setAttribute("height", h); r.setAttribute("class", cls);
      const t = document.createElementNS(ns, "title"); t.textContent = `${d.day}: ${d[key]} ${key}`; r.append(t);
      svg.append(r);
    }
  });
  const chart = el("div", "", "bars-chart"); chart.id = "offers-chart";
  // The scale: the tallest bar's value, so a manager reads numbers, not just shapes.
  const axis = el("div", "", "bars-days");
  if (days.length) axis.append(el("span", days[0].day.slice(5)), el("span", days[days.length - 1].day.slice(5)));
  chart.append(el("span", `${max} a day`, "scale"), svg, axis);
  return chart;
}

async function loadOffers(body) {
  const { el, api } = O2O;
  const r = await api("/api/offers");
  if (!r.ok) { body.replaceChildren(el("p", "Offers are not running on this gateway.", "muted")); return; }
  const o = await r.json();
  const table = el("table"); table.id = "offers-today";
  table.innerHTML = '<thead><tr><th>Campaign</th><th class="num">Shown</th><th class="num">Held out</th><th class="num">Redeemed</th><th class="num hide-narrow">Held-out buyers</th><th class="num">Revenue</th></tr></thead>';
  const tb = el("tbody");
  for (const c of o.campaigns) {
    const tr = el("tr"); tr.dataset.campaign = c.id;
    tr.append(el("td", c.id), el("td", String(c.triggered), "num"), el("td", String(c.held_out), "num"),
      el("td", String(c.redeemed), "num"), el("td", String(c.holdout_converted), "num hide-narrow"), el("td", c.revenue, "num"));
    tb.append(tr);
  }
  if (!o.campaigns.length) { const tr = el("tr"); tr.append(el("td", "No campaign today.", "muted")); tb.append(tr); }
  table.append(tb);
  const legend = el("p", "Offers shown (blue) and redeemed (green) per day, last two weeks", "muted");
  const zones = Object.entries(o.zones).map(([z, v]) => `${z}: ${v.visits} visit(s)` + (v.median_dwell_s !== null ? `, ${Math.round(v.median_dwell_s)} s typical stay` : ""));
  const w = o.wifi_optin;
  const optin = w.consents ? `Wi-Fi guests today: ${w.consents}, ${Math.round(w.marketing * 100)}% accept offers, ${Math.round(w.personalisation * 100)}% personalisation` : "No Wi-Fi guest today.";
  body.replaceChildren(el("p", `Today (${o.day})`, "muted"), table, bars(o.days), legend,
    el("p", zones.join(" · ") || "No visit counted yet today."), el("p", optin, "muted"));
}

O2O.card("offers", {
  title: "Proximity offers",
  wide: true,
  render() {},
  refresh: loadOffers,
  onEvent(e, body) { if (e.kind.startsWith("offer.")) loadOffers(body); },
});
