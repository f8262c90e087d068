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
    body.replaceChildren(line);
  },
});
