"use strict";
// RFID readers: state, read rate, tags in view; admins may restart, pause or resume one.
O2O.card("readers", {
  title: "RFID readers",
  render(body, s) {
    const { el, act } = O2O;
    let tbody = body.querySelector("tbody");
    if (!tbody) {
      const table = el("table");
      table.innerHTML = '<thead><tr><th>Reader</th><th>State</th><th class="num">Reads/s</th><th class="num hide-narrow">Tags</th><th class="admin">Actions</th></tr></thead>';
      tbody = el("tbody"); tbody.id = "readers"; table.append(tbody); body.replaceChildren(table);
    }
    const readers = s.readers || [];
    if (!readers.length) { tbody.replaceChildren(el("tr", undefined)); tbody.firstChild.append(el("td", "No reader configured.", "muted")); return; }
    tbody.replaceChildren(...readers.map((r) => {
      const tr = el("tr"); tr.dataset.reader = r.id; tr.dataset.state = r.state;
      tr.append(el("td", `${r.id} (${r.protocol})`));
      const st = el("td"); st.append(el("span", r.state, "state " + r.state));
      if (r.state === "paused" && r.paused_by) st.append(el("div", `by ${r.paused_by}`, "muted"));
      if (r.error) st.append(el("div", r.error, "muted"));
      // Serial bytes the gateway could not take in time (a busy CPU): reads lost, not bad frames.
      if (r.overruns) st.append(el("div", `${r.overruns.toLocaleString()} bytes of reads dropped: the gateway fell behind`, "notice failed"));
      tr.append(st, el("td", String(r.reads_per_s), "num"), el("td", String(r.tags_in_view), "num hide-narrow"));
      const actions = el("td", undefined, "admin");
      const labels = { restart: r.state === "paused" ? "Restart (stays paused)" : "Restart", pause: "Pause", resume: "Resume" };
      for (const a of ["restart", r.state === "paused" ? "resume" : "pause"]) {
        const b = el("button", labels[a]); b.dataset.action = a; b.dataset.reader = r.id;
        b.onclick = () => act(`/api/actions/readers/${encodeURIComponent(r.id)}/${a}`, { label: `${labels[a]} ${r.id}`, tag: a });
        actions.append(b, document.createTextNode(" "));
      }
      tr.append(actions); return tr;
    }));
  },
});
