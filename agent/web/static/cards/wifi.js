"use strict";
// Guest Wi-Fi: sessions, failures to connect, and the footfall sensor (probe requests).
O2O.card("wifi", {
  title: "Guest Wi-Fi",
  render(body, s) {
    const { el } = O2O; const w = s.wifi, p = s.wifi_presence;
    const parts = [];
    if (w) parts.push(`${w.sessions.length} guest session(s)` + (w.auth_failures ? `, ${w.auth_failures} failed to connect` : ""));
    if (p) parts.push(`footfall sensor ${p.state === "ok" ? "listening" : p.reason || p.state} (${p.probes.toLocaleString()} probes)`);
    const line = el("p", parts.join(" · ") || "Not configured.", "muted"); line.id = "wifi";
    const out = [line];
    if (p) {
      const now = el("p"); now.id = "footfall-now";
      const zones = Object.entries(p.zones_now).map(([z, c]) => `${z} ${c.devices}`).join(", ");
      now.textContent = `In store now: ${p.devices_now} device(s)` + (zones ? ` (${zones})` : "") + ` in the last ${Math.round(p.window_s / 60)} min window`;
      out.push(now);
    }
    if (w) { const refused = Object.values(w.refused).reduce((a, b) => a + b, 0); if (refused) out.push(el("p", `${refused} suspicious portal request(s) refused`, "muted")); }
    body.replaceChildren(...out);
  },
});
