"use strict";
// Click-and-collect: customers who have arrived (announced at once, with a sound staff can turn off),
// orders waiting (stale ones flagged), and the handover button for any staff login.
let collectSound = localStorage.getItem("o2o-collect-sound") !== "off";

function beep() {
  if (!collectSound) return;
  try {
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    const osc = ctx.createOscillator(); const gain = ctx.createGain();
    osc.frequency.value = 880; gain.gain.value = 0.15; osc.connect(gain); gain.connect(ctx.destination);
    osc.start(); osc.stop(ctx.currentTime + 0.35);
  } catch (e) { /* no audio on this device */ }
}

function arrivalText(o) {
  const who = o.member_name ? ` (${o.member_name})` : "";
  return `Order ${o.order_id}${who}: customer has arrived, ${o.pickup_point}`;
}

async function loadCollect(body) {
  const { el, api, act, fmtTime } = O2O;
  const r = await api("/api/collect");
  if (!r.ok) { body.replaceChildren(el("p", "Click-and-collect is not running.", "muted")); return; }
  const orders = (await r.json()).orders;
  const arrivals = el("ul", undefined, "list arrivals"); arrivals.id = "collect-arrivals";
  const waiting = el("ul", undefined, "list"); waiting.id = "collect-waiting";
  for (const o of orders) {
    if (o.state === "arrived") {
      const li = el("li", arrivalText(o), "arrival"); li.dataset.order = o.order_id;
      const b = el("button", "Handed over"); b.dataset.handover = o.order_id;
      b.onclick = async () => { await act(`/api/collect/${encodeURIComponent(o.order_id)}/handover`, { label: `Hand over order ${o.order_id}`, tag: "handover" }); loadCollect(body); };
      li.append(document.createTextNode(" "), b); arrivals.append(li);
    } else if (o.state === "waiting") {
      const li = el("li", `Order ${o.order_id}${o.member_name ? ` (${o.member_name})` : ""}, ${o.items} item(s), ${o.pickup_point}, ready since ${fmtTime(o.added_at)}`);
      li.dataset.order = o.order_id;
      if (o.stale) { li.classList.add("stale"); li.append(el("strong", " · not collected for days: call the customer")); }
      waiting.append(li);
    }
  }
  const here = arrivals.children.length;
  if (!here) arrivals.append(el("li", "No customer waiting at the counter.", "muted"));
  if (!waiting.children.length) waiting.append(el("li", here ? "No other order waiting." : "No order waiting.", "muted"));
  const sound = el("button", collectSound ? "Sound on" : "Sound off", "link"); sound.id = "collect-sound";
  sound.onclick = () => { collectSound = !collectSound; localStorage.setItem("o2o-collect-sound", collectSound ? "on" : "off"); sound.textContent = collectSound ? "Sound on" : "Sound off"; };
  body.replaceChildren(arrivals, el("h3", "Ready for pickup"), waiting, sound);
}

O2O.card("collect", {
  title: "Click-and-collect",
  render() {},
  refresh: loadCollect,
  onEvent(e, body) {
    if (e.kind === "collect.arrived") {
      if (Date.now() - Date.parse(e.ts) < 60000) { O2O.notice(arrivalText(e.data), "arrival"); beep(); }
      loadCollect(body);
    } else if (e.kind === "collect.handed_over") loadCollect(body);
  },
});
