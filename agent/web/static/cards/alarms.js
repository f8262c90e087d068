"use strict";
// Exit-gate alarms to check: staff acknowledge one, or every alarm older than a time.
const OLD_ALARM_S = 600;
async function loadAlarms(body) {
  const { el, api, act, fmtTime } = O2O;
  const a = (await (await api("/api/alarms")).json()).alarms;
  const list = el("ul", undefined, "list"); list.id = "alarms";
  if (!a.length) list.append(el("li", "None.", "muted"));
  for (const x of a.slice(0, 20)) {
    const li = el("li", `${fmtTime(x.ts)} ${x.gate}: ${x.name || "Unknown item"} (${x.epc}) `);
    if (x.acknowledged) li.append(el("span", `checked by ${x.acknowledged.by}`, "muted"));
    else {
      const b = el("button", "Checked: clear this alarm"); b.dataset.alarm = x.id;
      b.onclick = async () => { await act(`/api/actions/alarms/${encodeURIComponent(x.id)}/ack`, { label: "Clear the alarm", tag: "ack" }); loadAlarms(body); };
      li.append(b);
    }
    list.append(li);
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
