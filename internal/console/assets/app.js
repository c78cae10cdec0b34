// The umbra console's page: it reads and changes records through the console's /api,
// which forwards to the controller with the admin identity the console process holds.
// The page holds no key; every change carries the X-Umbra-Console header, which the
// console requires.
"use strict";

const refreshEvery = 2000; // ms between refreshes of the visible page
const maxEvents = 500;     // events kept on the events page

const $ = (sel) => document.querySelector(sel);

function setStatus(text, error) {
  const s = $("#status");
  s.textContent = text;
  s.className = error ? "error" : "";
}

async function call(method, path, body) {
  const opts = { method, headers: { "X-Umbra-Console": "1" } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  if (!resp.ok) {
    let msg = resp.status + " " + resp.statusText;
    try { msg = (await resp.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return resp;
}

async function list(kind) {
  return (await call("GET", "/api/" + kind)).json();
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null || text === "" ? "-" : String(text);
  if (cls) td.className = cls;
  return td;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function when(t) {
  if (!t) return "-";
  const d = new Date(t);
  return isNaN(d) ? t : d.toLocaleString();
}

function button(label, cls, onclick) {
  const b = document.createElement("button");
  b.textContent = label;
  if (cls) b.className = cls;
  b.addEventListener("click", onclick);
  return b;
}

async function download(resp, fallbackName) {
  const disp = resp.headers.get("Content-Disposition") || "";
  const m = /filename="([^"]+)"/.exec(disp);
  const blob = await resp.blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = m ? m[1] : fallbackName;
  a.click();
  URL.revokeObjectURL(a.href);
}

// Fleet: every identity, its presence and certificate, with actions.
async function showFleet() {
  const ids = await list("identities");
  const filter = $("#fleet-filter").value.trim();
  const rows = ids
    .filter((id) => !filter || (id.attributes || []).includes(filter))
    .map((id) => {
      const tr = document.createElement("tr");
      tr.dataset.name = id.name;
      const actions = document.createElement("td");
      actions.append(
        button("New token", "", async () => {
          if (!confirm("Issue a new one-time token for " + id.name + "? Using it revokes its certificate.")) return;
          try { await download(await call("POST", "/api/enrollments/" + encodeURIComponent(id.name)), id.name + ".jwt"); setStatus("token issued for " + id.name); }
          catch (e) { setStatus(e.message, true); }
        }),
        button("Attributes", "", async () => {
          const v = prompt("Attributes of " + id.name + ", comma-separated", (id.attributes || []).join(","));
          if (v === null) return;
          const attrs = v.split(",").map((a) => a.trim()).filter((a) => a);
          try { await call("PATCH", "/api/identities/" + encodeURIComponent(id.name), { attributes: attrs }); setStatus("updated " + id.name); refresh(); }
          catch (e) { setStatus(e.message, true); }
        }),
        button("Delete", "danger", async () => {
          if (!confirm("Delete identity " + id.name + "? Its certificate is revoked.")) return;
          try { await call("DELETE", "/api/identities/" + encodeURIComponent(id.name)); setStatus("deleted " + id.name); refresh(); }
          catch (e) { setStatus(e.message, true); }
        }),
      );
      tr.append(
        cell(id.name),
        cell(id.online ? "online" : (id.enrolled ? "offline" : "not enrolled"), id.online ? "online" : "offline"),
        cell(id.router),
        cell(id.link_rtt_ms == null ? "" : id.link_rtt_ms.toFixed(1) + " ms", "link-rtt"),
        cell(id.link_loss_pct == null ? "" : id.link_loss_pct.toFixed(1) + " %", "link-loss"),
        cell(when(id.last_seen)),
        cell(when(id.cert_expires)),
        cell((id.attributes || []).join(", ")),
        actions,
      );
      return tr;
    });
  fill($("#fleet-table tbody"), rows);
}

// Mesh: routers on a circle, links between them coloured by state.
async function showMesh() {
  const [routers, links] = await Promise.all([list("routers"), list("links")]);
  const svg = $("#mesh-graph");
  const ns = "http://www.w3.org/2000/svg";
  const pos = {};
  const cx = 400, cy = 240, r = Math.min(180, 60 * routers.length);
  routers.forEach((rt, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, routers.length) - Math.PI / 2;
    pos[rt.name] = routers.length === 1 ? [cx, cy] : [cx + r * Math.cos(a), cy + r * Math.sin(a)];
  });
  const nodes = [];
  for (const l of links) {
    const a = pos[l.from], b = pos[l.to];
    if (!a || !b) continue;
    const line = document.createElementNS(ns, "line");
    line.setAttribute("x1", a[0]); line.setAttribute("y1", a[1]);
    line.setAttribute("x2", b[0]); line.setAttribute("y2", b[1]);
    line.setAttribute("stroke", l.state === "up" ? (l.loss > 0.05 ? "#8a5a00" : "#006400") : "#b00000");
    line.setAttribute("stroke-width", "4");
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", (a[0] + b[0]) / 2); label.setAttribute("y", (a[1] + b[1]) / 2 - 6);
    label.textContent = l.state + " " + (l.rtt_ms || 0).toFixed(1) + " ms " + ((l.loss || 0) * 100).toFixed(1) + " %";
    nodes.push(line, label);
  }
  for (const rt of routers) {
    const [x, y] = pos[rt.name];
    const c = document.createElementNS(ns, "circle");
    c.setAttribute("cx", x); c.setAttribute("cy", y); c.setAttribute("r", 18);
    c.setAttribute("fill", rt.online ? "#006400" : "#b00000");
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x + 24); t.setAttribute("y", y + 5);
    t.textContent = rt.name;
    nodes.push(c, t);
  }
  svg.replaceChildren(...nodes);
  fill($("#router-table tbody"), routers.map((rt) => {
    const tr = document.createElement("tr");
    tr.dataset.name = rt.name;
    tr.append(cell(rt.name), cell(rt.online ? "online" : "offline", rt.online ? "online" : "offline"), cell(rt.advertise), cell(rt.version));
    return tr;
  }));
}

// matches mirrors the controller's roles: #all, #attribute, @name.
function matches(roles, name, attrs) {
  return (roles || []).some((r) => r === "#all" || r === "@" + name || (r[0] === "#" && (attrs || []).includes(r.slice(1))));
}

// Services: who may dial and who may host each, from the policies; the policies, each
// deletable; and the advisor for any identity and service.
async function showServices() {
  const [svcs, pols, ids] = await Promise.all([list("services"), list("service-policies"), list("identities")]);
  const who = (svc, type) => ids
    .filter((id) => pols.some((p) => p.type === type && matches(p.services, svc.name, svc.attributes) && matches(p.identities, id.name, id.attributes)))
    .map((id) => id.name).join(", ");
  fill($("#service-table tbody"), svcs.map((s) => {
    const tr = document.createElement("tr");
    tr.append(cell(s.name), cell(s.host), cell(s.intercept), cell(who(s, "dial")), cell(who(s, "bind")));
    return tr;
  }));
  fill($("#policy-table tbody"), pols.map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.name = p.name;
    const actions = document.createElement("td");
    actions.append(button("Delete", "danger", async () => {
      if (!confirm("Delete service policy " + p.name + "? Circuits it allowed end.")) return;
      try { await call("DELETE", "/api/service-policies/" + encodeURIComponent(p.name)); setStatus("deleted " + p.name); refresh(); }
      catch (e) { setStatus(e.message, true); }
    }));
    tr.append(cell(p.name), cell(p.type), cell((p.identities || []).join(", ")), cell((p.services || []).join(", ")), actions);
    return tr;
  }));
}

// Events: pushed by the console as server-sent events, newest first.
function followEvents() {
  const src = new EventSource("/api/events");
  src.onmessage = (m) => {
    let e;
    try { e = JSON.parse(m.data); } catch (err) { return; }
    const li = document.createElement("li");
    li.className = e.type.endsWith("refused") ? "refused" : (e.type === "deleted" ? "deleted" : "");
    li.dataset.type = e.type;
    li.textContent = when(e.time) + "  " + e.type + "  " + e.name +
      (e.identity ? "  identity=" + e.identity : "") + (e.path ? "  path=" + e.path.join(">") : "") + (e.reason ? "  " + e.reason : "");
    const list = $("#event-list");
    list.prepend(li);
    while (list.children.length > maxEvents) list.lastChild.remove();
  };
}

const pages = { fleet: showFleet, mesh: showMesh, services: showServices, events: async () => {} };
let current = "fleet";

async function refresh() {
  try {
    await pages[current]();
    if (!$("#status").classList.contains("error")) setStatus("");
  } catch (e) {
    setStatus(e.message, true);
  }
}

function show(page) {
  current = page;
  document.querySelectorAll(".page").forEach((p) => { p.hidden = p.id !== page; });
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.dataset.page === page));
  setStatus("");
  refresh();
}

document.querySelectorAll(".tab").forEach((t) => t.addEventListener("click", () => show(t.dataset.page)));
$("#fleet-filter").addEventListener("input", refresh);
$("#create-identity").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const name = $("#new-name").value.trim();
  const attributes = $("#new-attrs").value.split(",").map((a) => a.trim()).filter((a) => a);
  try {
    await download(await call("POST", "/api/identities", { name, attributes }), name + ".jwt");
    setStatus("created " + name + "; its token is downloaded");
    $("#new-name").value = ""; $("#new-attrs").value = "";
    refresh();
  } catch (e) { setStatus(e.message, true); }
});
$("#advise").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const id = encodeURIComponent($("#advise-identity").value.trim());
  const svc = encodeURIComponent($("#advise-service").value.trim());
  try {
    const adv = await (await call("GET", "/api/advice/" + id + "/" + svc)).json();
    $("#advice").textContent = adv.checks.map((c) => (c.ok ? "ok    " : "FAIL  ") + c.check + ": " + c.detail).join("\n") +
      "\n" + (adv.allowed ? "a dial would succeed now" : "a dial would fail now");
  } catch (e) { setStatus(e.message, true); }
});

followEvents();
show("fleet");
setInterval(refresh, refreshEvery);
