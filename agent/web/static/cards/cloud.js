"use strict";
// The cloud link: connection, backlog, drain rate, drops; admins may force a sync or download diagnostics.
let lastAcked = null;
let cloudUp = false;
// What a broker error means for staff; the error itself stays in the tooltip for support.
function cloudTrouble(error) {
  const e = (error || "").toLowerCase();
  if (/refused|unreachable|timed out|timeout|not known|no route|cannot connect|resolve/.test(e)) return "the cloud server cannot be reached";
  if (/authori[sz]|password|user name|credentials/.test(e)) return "the cloud server refused the gateway's login: call support";
  if (/certificate|ssl|tls/.test(e)) return "the secure connection failed (certificate): call support";
  return "not connected";
}
O2O.card("cloud", {
  title: "Cloud link",
  render(body, s) {
    const { el, act, fmtAge, fmtTime } = O2O;
    if (!body.querySelector("dl")) {
      body.innerHTML = '<dl><dt>Connection</dt><dd id="cloud-state">…</dd><dt>Waiting to send</dt><dd id="cloud-backlog">…</dd>' +
        '<dt>Oldest waiting</dt><dd id="cloud-age">…</dd><dt>Last acknowledged</dt><dd id="cloud-ack">…</dd>' +
        '<dt>Sending</dt><dd id="cloud-rate">…</dd><dt>Dropped (storage full)</dt><dd id="cloud-dropped">…</dd></dl>' +
        '<p class="admin"><button id="sync">Send the backlog now</button> <a id="diag" href="/api/diagnostics" download>Download diagnostics</a></p>';
      body.querySelector("#sync").onclick = async () => {
        const done = await act("/api/actions/sync", { label: "Send the backlog now", tag: "sync" });
        if (done && !cloudUp) O2O.notice("The cloud link is down: the backlog is kept and goes out by itself once it is back.", "failed");
      };
    }
    const m = s.mqtt, o = s.outbox, q = (id) => body.querySelector(`#${id}`);
    cloudUp = m.enabled && m.connected;
    q("cloud-state").textContent = !m.enabled ? "disabled in the config" : m.connected ? "connected" : `down: ${cloudTrouble(m.last_error)}`;
    q("cloud-state").title = m.connected ? "" : (m.last_error || "");
    q("cloud-backlog").textContent = `${o.depth.toLocaleString()} events`;
    q("cloud-age").textContent = fmtAge(o.oldest_age_s);
    q("cloud-ack").textContent = fmtTime(m.last_ack);
    q("cloud-dropped").textContent = o.dropped.toLocaleString();
    const now = Date.now();
    if (lastAcked) q("cloud-rate").textContent = `${Math.max(0, Math.round((m.events_acked - lastAcked.n) / ((now - lastAcked.t) / 1000)))} events/s`;
    lastAcked = { n: m.events_acked, t: now };
  },
});
