"use strict";
// Dynamic QR codes: where each printed code leads now, how often it was scanned, and its SVG to print.
async function loadQrCodes(body) {
  const { el, api, fmtTime } = O2O;
  const r = await api("/api/qr");
  if (!r.ok) return;
  const q = await r.json();
  const list = el("ul", undefined, "list"); list.id = "qr-codes";
  if (!q.codes.length) list.append(el("li", "No QR code set up (central ops send them).", "muted"));
  for (const c of q.codes) {
    const li = el("li"); li.dataset.code = c.code;
    li.append(el("strong", c.code), ` → ${c.target} `);
    li.append(el("span", `${c.scans.toLocaleString()} scan(s)${c.last_scan ? `, last ${fmtTime(c.last_scan)}` : ""}`, "muted"));
    if (c.zone || c.campaign) li.append(el("div", [c.zone && `zone ${c.zone}`, c.campaign && `campaign ${c.campaign}`].filter(Boolean).join(", "), "muted"));
    const a = el("a", "Print"); a.href = c.svg; a.target = "_blank"; a.rel = "noopener"; a.className = "qr-print";
    li.append(" ", a);
    list.append(li);
  }
  const head = body.querySelector(".qr-summary") || el("p", undefined, "qr-summary muted");
  body.replaceChildren(head, list);
}

O2O.card("qr", {
  title: "QR codes",
  render(body, s) {
    const st = s.qr; const { el } = O2O;
    let head = body.querySelector(".qr-summary");
    if (!head) { head = el("p", undefined, "qr-summary muted"); body.prepend(head); }
    head.textContent = st ? `Version ${st.version}: ${st.codes} code(s), ${st.scans.toLocaleString()} scan(s)` +
      (st.unknown ? `, ${st.unknown} of unknown codes` : "") + (st.rate_limited ? `, ${st.rate_limited} refused (too many)` : "") : "QR codes are not available.";
  },
  refresh: loadQrCodes,
  onEvent(e, body) { if (e.kind === "qr.updated") loadQrCodes(body); },
});
