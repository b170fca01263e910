// The shoal dashboard: polls the daemon's API and redraws. No framework,
// no build step; every value from the API is set as text, never as HTML.
"use strict";

const tokenKey = "shoal-token";
(function takeToken() {
  // A token in the URL's fragment (never sent to the server) is kept for
  // this tab and removed from the address bar.
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(tokenKey, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
})();

const $ = (sel) => document.querySelector(sel);
const svgNS = "http://www.w3.org/2000/svg";

class Unauthorized extends Error {}

async function api(path) {
  const headers = {};
  const token = sessionStorage.getItem(tokenKey);
  if (token) headers["Authorization"] = "Bearer " + token;
  const r = await fetch(path, { headers, cache: "no-store" });
  if (r.status === 401) throw new Unauthorized();
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error || msg; } catch (_) {}
    throw new Error(path + ": " + msg);
  }
  return r.json();
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

function bytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

const short = (id) => id.length > 16 ? id.slice(0, 6) + "…" + id.slice(-6) : id;

function duration(ns) {
  let s = Math.floor(ns / 1e9);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + (d || h || m ? m + "m " : "") + s + "s";
}

let self = "";

function drawStatus(st) {
  self = st.id;
  $("#node").textContent = `${short(st.id)} · network ${st.network} · ${st.version} · up ${duration(st.uptime_ns)}`;
  const m = st.members || {};
  const cards = [
    ["members alive", m.alive || 0], ["suspect", m.suspect || 0], ["dead", m.dead || 0],
    ["connected peers", st.peers], ["shares served", st.shares], ["catalog", st.catalog],
    ["fetches", (st.fetches || []).length], ["below their copies", (st.under_replicated || []).length],
  ];
  if (st.store && st.store.storer) cards.push(["store", bytes(st.store.used) + (st.store.quota ? " of " + bytes(st.store.quota) : "")]);
  if (st.nat) {
    cards.push(["reachability", st.nat.reachability]);
    cards.push(["relayed connections", `${st.nat.relayed_connections} of ${st.nat.direct_connections + st.nat.relayed_connections}`]);
  }
  $("#summary").replaceChildren(...cards.map(([k, v]) => el("div", { class: "card" }, el("b", {}, v), k)));
  drawTransfers(st.fetches || []);
}

function drawTransfers(fetches) {
  const box = $("#transfers");
  if (!fetches.length) {
    box.replaceChildren(el("p", { class: "muted" }, "no fetch in progress"));
    return;
  }
  box.replaceChildren(...fetches.map((f) => {
    const bar = el("progress", { max: String(f.total || 1), value: String(f.bytes || 0) });
    const pct = f.total ? (100 * f.bytes / f.total).toFixed(1) + "%" : f.phase;
    const peers = (f.peers || []).filter((p) => p.active).length;
    return el("div", { class: "transfer", "data-root": f.root },
      el("div", { class: "line" }, el("b", {}, f.name || short(f.root)), el("span", { class: "pct" }, pct)),
      bar,
      el("div", { class: "line muted" },
        el("span", {}, `${bytes(f.bytes)} of ${bytes(f.total)} · ${f.phase}`),
        el("span", {}, `${bytes(f.rate)}/s from ${peers} peer${peers === 1 ? "" : "s"}`)));
  }));
}

function drawMembers(members) {
  members.sort((a, b) => (a.meta.name || a.id).localeCompare(b.meta.name || b.id));
  $("#members tbody").replaceChildren(...members.map((m) => {
    const store = m.meta.storer ? bytes(m.meta.store_used || 0) + (m.meta.store_full ? " (full)" : "") : "";
    return el("tr", { "data-id": m.id },
      el("td", {}, (m.meta.name || "") + (m.id === self ? " (this node)" : "")),
      el("td", { class: "id", title: m.id }, short(m.id)),
      el("td", {}, el("span", { class: "state " + m.state }, m.state)),
      el("td", {}, (m.meta.roles || []).join(", ")),
      el("td", {}, m.meta.shares || 0),
      el("td", {}, store));
  }));
}

function drawShares(entries) {
  const roots = new Map();
  for (const e of entries) {
    if (e.removed) continue;
    const r = roots.get(e.root) || { name: e.name, size: e.size, holders: new Set(), wanted: 0 };
    if (!e.not_held) r.holders.add(e.publisher);
    r.wanted = Math.max(r.wanted, e.replicas || 0);
    roots.set(e.root, r);
  }
  const rows = [...roots.entries()].sort((a, b) => a[1].name.localeCompare(b[1].name));
  $("#shares tbody").replaceChildren(...rows.map(([root, r]) => el("tr", {},
    el("td", {}, r.name), el("td", { class: "id", title: root }, short(root)), el("td", {}, bytes(r.size)),
    el("td", {}, r.holders.size), el("td", {}, r.wanted || ""))));
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// The members on a circle, in the order of their IDs so that a node keeps
// its place between updates; a line for each connection.
function drawTopology(g) {
  const nodes = [...g.nodes].sort((a, b) => a.id.localeCompare(b.id));
  const box = $("#topology svg");
  const w = 640, h = 420, cx = w / 2, cy = h / 2 - 5, r = nodes.length > 1 ? Math.min(w, h) / 2 - 50 : 0;
  const at = new Map();
  nodes.forEach((n, i) => {
    const a = -Math.PI / 2 + 2 * Math.PI * i / nodes.length;
    at.set(n.id, [cx + r * Math.cos(a), cy + r * Math.sin(a)]);
  });
  const parts = [];
  for (const [a, b] of g.edges || []) {
    if (!at.has(a) || !at.has(b)) continue;
    const [x1, y1] = at.get(a), [x2, y2] = at.get(b);
    parts.push(svg("line", { x1, y1, x2, y2, "data-a": a, "data-b": b }));
  }
  for (const n of nodes) {
    const [x, y] = at.get(n.id);
    const state = n.unknown ? "unknown" : n.state;
    const gr = svg("g", { class: "member", "data-id": n.id, "data-state": state });
    const c = svg("circle", { cx: x, cy: y, r: 16, class: `node ${state}${n.id === self ? " self" : ""}` });
    c.append(svg("title", {}, `${n.name || ""} ${n.id} (${state})`));
    // Names need not be unique (host names): the ID's end tells apart.
    gr.append(c, svg("text", { x, y: y + 32 }, n.name || short(n.id)),
      svg("text", { x, y: y + 46, class: "sub" }, n.name ? "…" + n.id.slice(-6) : ""));
    parts.push(gr);
  }
  box.replaceChildren(...parts);
  $("#topology-note").textContent = `${nodes.length} members, ${(g.edges || []).length} connections`;
}

let tick = 0;

async function refresh() {
  const slow = tick % 3 === 0; // the topology asks every member: less often
  tick++;
  try {
    const [st, members] = await Promise.all([api("/v1/status"), api("/v1/members")]);
    drawStatus(st);
    drawMembers(members);
    if (slow) {
      const [g, cat] = await Promise.all([api("/v1/graph"), api("/v1/catalog")]);
      drawTopology(g);
      drawShares(cat);
    }
    $("#error").hidden = true;
    $("#login").hidden = true;
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    if (e instanceof Unauthorized) {
      $("#login").hidden = false;
    } else {
      $("#error").textContent = "The daemon did not answer: " + e.message;
      $("#error").hidden = false;
    }
    tick = 0; // the topology and shares again at the next answer
  }
}

$("#login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(tokenKey, $("#token").value.trim());
  tick = 0;
  refresh();
});

// The next update a second after the last one ended: a slow daemon is
// not asked again before it answered.
(async function loop() {
  await refresh();
  setTimeout(loop, 1000);
})();
