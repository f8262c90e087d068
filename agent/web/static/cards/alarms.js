"use strict";
// Exit-gate alarms to check: staff acknowledge one, or every alarm older than a time.
const OLD_ALARM_S = 600;
// At most this many rows; what is left out is counted, never silently hidden.
const SHOWN = 30;
async function loadAlarms(body) {
  const { el, api, act, fmtTime } = O2O;
  const a = (await (await api("/api/alarms")).json()).alarms;  // newest first
  const list = el("ul", undefined, "list"); list.id = "alarms";
  if (!a.length) list.append(el("li", "None.", "muted"));
  // One row per tag still to check (a tag lingering at the gate alarms again on each pass), newest first;
  // then the alarms already checked.
  const open = new Map();
  for (const x of a) if (!x.acknowledged) { const g = open.get(x.epc); if (g) g.push(x); else open.set(x.epc, [x]); }
  const rows = [...open.values(), ...a.filter((x) => x.acknowledged).map((x) => [x])];
  for (const g of rows.slice(0, SHOWN)) {
    const x = g[0];
    const times = g.length > 1 ? ` — ${g.length} times since ${fmtTime(g[g.length - 1].ts)}` : "";
    const li = el("li", `${fmtTime(x.ts)} ${x.gate}: ${x.name || "Unknown item"} (${x.epc})${times} `);
    if (x.acknowledged) li.append(el("span", `checked by ${x.acknowledged.by}`, "muted"));
    else {
      const b = el("button", g.length > 1 ? `Checked: clear these ${g.length} alarms` : "Checked: clear this alarm");
      b.dataset.alarm = x.id;
      b.onclick = async () => {
        for (const y of g.slice(1)) await api(`/api/actions/alarms/${encodeURIComponent(y.id)}/ack`, { method: "POST" });
        await act(`/api/actions/alarms/${encodeURIComponent(x.id)}/ack`, { label: g.length > 1 ? "Clear the alarms" : "Clear the alarm", tag: "ack" });
        loadAlarms(body);
      };
      li.append(b);
    }
    list.append(li);
  }
  if (rows.length > SHOWN) {
    const left = rows.slice(SHOWN), still = left.filter((g) => !g[0].acknowledged).length;
    list.append(el("li", `…and ${left.length} more${still ? `, ${still} still to check (clear the ones above first)` : ""}.`, "muted"));
  }
  // The button counts exactly what it clears: the open alarms older than ten minutes.
  const cutoff = Date.now() / 1000 - OLD_ALARM_S;
  const old = a.filter((x) => !x.acknowledged && x.ts <= cutoff).length;
  const tools = el("p");
  if (old > 0) {
    const all = el("button", `Clear the ${old} alarm${old > 1 ? "s" : ""} older than 10 minutes`); all.id = "ack-old";
    all.onclick = async () => { await act(`/api/actions/alarms/ack?older_than_s=${OLD_ALARM_S}`, { label: "Clear old alarms", tag: "ack-old" }); loadAlarms(body); };
    tools.append(all);
  }
  body.replaceChildren(list, tools);
}
O2O.card("alarms", {
  title: "Exit-gate alarms",
  render() {},
  refresh: loadAlarms,
  onEvent(e, body) { if (e.kind === "gate.alarm" || e.kind === "gate.alarm.acknowledged") loadAlarms(body); },
});
