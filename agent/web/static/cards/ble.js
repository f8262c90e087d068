"use strict";
// BLE beacons: is the scanner listening, where each beacon is, battery and temperature.
O2O.card("ble", {
  title: "Beacons",
  render(body, s) {
    const { el } = O2O; const b = s.ble;
    if (!b) { body.replaceChildren(el("p", "Not configured.", "muted")); return; }
    const state = el("p", b.state === "ok" ? `Listening (${b.reports.toLocaleString()} adverts heard)` : `Not listening: ${b.reason || b.state}`, "muted");
    state.id = "ble-state";
    const list = el("ul", undefined, "list"); list.id = "beacons";
    list.append(...b.beacons.map((x) => {
      const h = x.health ? ` · battery ${x.health.battery_mv ?? "?"} mV, ${x.health.temperature_c ?? "?"} °C` : "";
      return el("li", `${x.id}: ${x.zone || "out of range"} (${x.rssi ?? "—"} dBm)${h}`);
    }));
    body.replaceChildren(state, list);
  },
});
