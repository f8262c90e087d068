"use strict";
// Configuration: the version in force, the last push from central ops, the catalog, the software.
O2O.card("config", {
  title: "Configuration",
  render(body, s) {
    const { el, fmtTime } = O2O; const c = s.config;
    const dl = el("dl");
    const row = (k, v, id) => { const dd = el("dd", v); if (id) dd.id = id; dl.append(el("dt", k), dd); };
    row("Version", String(c.version), "config-version");
    row("Last push", c.last_push ? `version ${c.last_push.version} ${c.last_push.status} at ${fmtTime(c.last_push.at)}` : "none", "config-push");
    row("Catalog", s.catalog ? `version ${s.catalog.version}, ${s.catalog.products} products` : "—", "catalog");
    row("Software", s.version, "version");
    body.replaceChildren(dl);
  },
});
