"use strict";
// Self-checkout: what lies on each station now, with its lines and total.
O2O.card("checkout", {
  title: "Self-checkout",
  render(body, s) {
    const { el } = O2O; const c = s.checkout;
    const list = el("ul", undefined, "list"); list.id = "stations";
    if (!c) { list.append(el("li", "No station configured.", "muted")); body.replaceChildren(list); return; }
    for (const [id, st] of Object.entries(c.stations)) {
      const li = el("li"); li.dataset.station = id;
      li.append(el("strong", `${id}: ${st.items} item(s) in the basket`));
      if (st.lines.length) {
        const t = el("table");
        for (const ln of st.lines) { const tr = el("tr"); tr.append(el("td", `${ln.qty} × ${ln.name}`), el("td", ln.amount ? `${ln.amount} ${st.currency}` : "—", "num")); t.append(tr); }
        li.append(t, el("div", `Total ${st.total} ${st.currency}`, "total"));
      }
      list.append(li);
    }
    body.replaceChildren(list, el("p", `${c.payments} payment(s) since start`, "muted"));
  },
});
