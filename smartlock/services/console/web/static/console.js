// smartlock console: live map, alert desk, trip view with replay, gates and loop, wall mode.
// Plain script, no build step; Leaflet and Supercluster are served by the console from node_modules.
"use strict";

const WALL = new URLSearchParams(location.search).has("wall");
const COLOURS = { green: "#3fb950", amber: "#e3a008", red: "#ff4d4f", info: "#58a6ff" };
const ACTIVE = new Set(["open", "acknowledged"]);

// Everything the page knows; `window.smartlockConsole` lets tests and the benchmark look in.
const S = {
  me: null, trips: new Map(), alerts: new Map(), verdicts: [], verdictTotal: 0, health: {}, gateEvents: [],
  connected: false, updates: 0, snapshots: 0, lastUpdateAt: 0, beeps: 0, flashes: 0,
  alertSeenAt: new Map(), alertShownAt: new Map(), unshown: [], soundOn: WALL, trip: null, eventNow: 0,
};
window.smartlockConsole = S;

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const tsSec = (ts) => (ts ? Date.parse(ts) / 1000 : 0);
const short = (ts) => (ts ? ts.replace("T", " ").replace("Z", "") : "");

if (WALL) document.body.classList.add("wall");

// ------------------------------------------------------------------ map

const map = L.map("map", { preferCanvas: true, zoomControl: !WALL, attributionControl: false });
S.map = map;
const renderer = L.canvas({ padding: 0.3 });
map.createPane("reds").style.zIndex = 650; // red trucks above clusters and every other layer
const redRenderer = L.canvas({ padding: 0.3, pane: "reds" });
const geoLayer = L.layerGroup().addTo(map);
const truckLayer = L.layerGroup().addTo(map);
const redLayer = L.layerGroup().addTo(map);
const tripLayer = L.layerGroup().addTo(map);
let corridors = {};

map.createPane("land").style.zIndex = 150; // the coastline, under everything else
async function loadBasemap() {
  const land = await (await fetch("/api/basemap")).json();
  L.geoJSON(land, { pane: "land", interactive: false, style: { color: "#2b3f52", weight: 1, fillColor: "#15222e", fillOpacity: 1 } }).addTo(map);
  S.basemapDrawn = land.features.length;
}
async function loadGeofences() {
  loadBasemap();
  const gj = await (await fetch("/api/geofences")).json();
  const layer = L.geoJSON(gj, {
    style: (f) => {
      const p = f.properties;
      if (p.kind === "corridor") return { color: p.mode === "rail" ? "#8957e5" : "#4a6fa5", weight: 4, opacity: 0.8, dashArray: p.mode === "rail" ? "6 6" : null };
      const fill = { origin_site: "#2f81f7", destination_gate: "#3fb950", rest_area: "#8b98a5", supervised_site: "#d29922" }[p.role] || "#8b98a5";
      return { color: fill, weight: 2, fillOpacity: 0.35 };
    },
    onEachFeature: (f, l) => {
      const p = f.properties;
      if (p.kind === "corridor") corridors[p.id] = f;
      l.bindTooltip(esc(p.name || p.id), { sticky: p.kind === "corridor", permanent: p.kind === "zone" && p.role !== "rest_area", className: p.kind === "zone" ? "zone-label" : "", direction: "right" });
    },
  });
  layer.addTo(geoLayer);
  S.geofencesDrawn = layer.getLayers().length;
  map.fitBounds(layer.getBounds(), { padding: [20, 20] });
  fillSelect($("f-corridor"), Object.keys(corridors));
}

// Non-red trucks are clustered (a cluster takes the worst colour inside it); red ones are never
// hidden in a cluster: each is drawn on top, larger.
let cluster = null;
let dirty = false;
function markDirty() {
  if (!dirty) { dirty = true; setTimeout(() => requestAnimationFrame(render), 200); }
}
function rebuildIndex() {
  const points = [];
  for (const t of S.trips.values()) {
    if (t.lat == null || t.colour === "red" || t.state === "released" || t.state === "closed") continue;
    points.push({ type: "Feature", properties: { id: t.lock_id, amber: t.colour === "amber" ? 1 : 0 }, geometry: { type: "Point", coordinates: [t.lon, t.lat] } });
  }
  cluster = new Supercluster({ radius: 45, maxZoom: 13, map: (p) => ({ amber: p.amber }), reduce: (a, b) => { a.amber += b.amber; } });
  cluster.load(points);
}
function render() {
  dirty = false;
  const t0 = performance.now();
  rebuildIndex();
  truckLayer.clearLayers();
  redLayer.clearLayers();
  const b = map.getBounds();
  const z = Math.round(map.getZoom());
  for (const c of cluster.getClusters([b.getWest() - 1, b.getSouth() - 1, b.getEast() + 1, b.getNorth() + 1], z)) {
    const [lon, lat] = c.geometry.coordinates;
    const p = c.properties;
    if (p.cluster) {
      const colour = p.amber > 0 ? "amber" : "green";
      const size = Math.min(56, 22 + Math.log2(p.point_count) * 5);
      const icon = L.divIcon({ html: `<div class="cluster ${colour}" style="width:${size}px;height:${size}px">${p.point_count}</div>`, className: "", iconSize: [size, size] });
      L.marker([lat, lon], { icon, keyboard: false, title: `${p.point_count} trucks (${p.amber} amber)` })
        .on("click", () => map.setView([lat, lon], cluster.getClusterExpansionZoom(p.cluster_id)))
        .addTo(truckLayer);
    } else {
      truckMarker(S.trips.get(p.id), 6).addTo(truckLayer);
    }
  }
  S.redDrawn = [];
  for (const t of S.trips.values()) {
    if (t.colour === "red" && t.lat != null && t.state !== "released" && t.state !== "closed") {
      truckMarker(t, WALL ? 11 : 8, redRenderer).addTo(redLayer);
      S.redDrawn.push(t.lock_id);
    }
  }
  S.lastRenderMs = performance.now() - t0;
  S.renderedAt = performance.now();
}
function truckMarker(t, radius, on) {
  const m = L.circleMarker([t.lat, t.lon], { renderer: on || renderer, radius, color: t.colour === "red" ? "#fff" : "#0e141b", weight: t.colour === "red" ? 2 : 1, fillColor: COLOURS[t.colour] || COLOURS.green, fillOpacity: 0.95 });
  m.bindTooltip(`${esc(t.vehicle_plate)} · ${esc(t.declaration_id)} · ${esc(t.state)}`);
  m.on("click", () => openTrip(t.lock_id));
  m.lockId = t.lock_id;
  return m;
}
map.on("moveend zoomend", markDirty);

// ------------------------------------------------------------------ live feed

function connect() {
  const es = new EventSource("/api/events"); // the browser resends Last-Event-ID when it reconnects
  es.onopen = () => setConn(true);
  es.onerror = async () => {
    setConn(false);
    // A stream refused (session expired or revoked) is not retried by the browser: sign in again.
    const me = await fetch("/api/me").catch(() => null);
    if (me && me.status === 401) location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
  };
  es.addEventListener("snapshot", (e) => { applySnapshot(JSON.parse(e.data)); S.lastEventId = e.lastEventId; });
  es.addEventListener("update", (e) => { applyUpdate(JSON.parse(e.data)); S.lastEventId = e.lastEventId; });
  es.addEventListener("health", (e) => { S.health = JSON.parse(e.data); renderHealth(); });
  S.eventSource = es;
}
function setConn(up) {
  S.connected = up;
  $("conn").textContent = up ? "live" : "reconnecting…";
  $("conn").className = "conn " + (up ? "up" : "down");
}
function applySnapshot(snap) {
  S.snapshots += 1;
  S.trips = new Map(snap.trips.map((t) => [t.lock_id, t]));
  S.alerts = new Map(snap.alerts.map((a) => [a.alert_id, a]));
  S.verdicts = snap.verdicts;
  S.verdictTotal = snap.verdict_total;
  S.gateEvents = snap.gate_events || [];
  deskDirty = gatesDirty = true;
  for (const a of snap.alerts) { S.eventNow = Math.max(S.eventNow, tsSec(a.ts)); if (!S.alertSeenAt.has(a.alert_id)) S.alertSeenAt.set(a.alert_id, 0); }
  for (const t of snap.trips) S.eventNow = Math.max(S.eventNow, tsSec(t.last_ts));
  refreshAll();
}
function applyUpdate(u) {
  const now = performance.now();
  S.updates += 1;
  S.lastUpdateAt = now;
  for (const t of u.trips) { S.trips.set(t.lock_id, t); S.eventNow = Math.max(S.eventNow, tsSec(t.last_ts)); }
  let newRed = null;
  for (const a of u.alerts) {
    const known = S.alerts.has(a.alert_id);
    S.alerts.set(a.alert_id, a);
    S.eventNow = Math.max(S.eventNow, tsSec(a.ts));
    if (!known) {
      S.alertSeenAt.set(a.alert_id, Date.now());
      S.unshown.push(a.alert_id);
      if (a.severity === "red" && a.status === "open") newRed = a;
    }
  }
  if (u.verdicts.length) { S.verdicts = S.verdicts.concat(u.verdicts).slice(-1000); S.verdictTotal += u.verdicts.length; }
  if (u.gate && u.gate.length) S.gateEvents = S.gateEvents.concat(u.gate).slice(-1000);
  if (u.alerts.length) deskDirty = true;
  if (u.verdicts.length || (u.gate && u.gate.length)) gatesDirty = true;
  if (newRed) alarm(newRed);
  refreshAll();
  if (S.trip && (u.trips.some((t) => t.lock_id === S.trip.lock) || u.alerts.some((a) => a.lock_id === S.trip.lock))) scheduleTripReload();
}
// The panels are redrawn at most every 250 ms however fast updates come (a busy fleet sends
// up to ten a second); the map has its own pace (markDirty). `alertShownAt` records when a new
// alert was first drawn on the page: what the tests and the benchmark measure.
// Each panel is redrawn only when what it shows changed: a busy fleet changes trips ten times a
// second, alerts and verdicts far less often; the desk also every 2 s for its ages and "new" marks.
let panelsDue = false, panelsAt = 0, deskDirty = true, deskAt = 0, gatesDirty = true;
function refreshAll() {
  markDirty();
  if (panelsDue) return;
  panelsDue = true;
  const wait = Math.max(0, 250 - (performance.now() - panelsAt));
  setTimeout(() => requestAnimationFrame(drawPanels), wait);
}
function drawPanels() {
  panelsDue = false;
  panelsAt = performance.now();
  renderCounts();
  if (deskDirty || panelsAt - deskAt > 2000) {
    deskDirty = false;
    deskAt = panelsAt;
    renderDesk();
    renderWall();
  }
  if (gatesDirty) renderGates();
  const now = Date.now();
  for (const id of S.unshown) S.alertShownAt.set(id, now);
  S.unshown = [];
}

// ------------------------------------------------------------------ red alert: flash and sound

let audio = null;
function alarm(alert) {
  S.flashes += 1;
  const f = $("flash");
  f.classList.remove("on"); void f.offsetWidth; f.classList.add("on");
  if (S.soundOn) beep();
}
function beep() {
  try {
    audio = audio || new AudioContext();
    const o = audio.createOscillator(), g = audio.createGain();
    o.type = "square"; o.frequency.value = 880;
    g.gain.setValueAtTime(0.15, audio.currentTime); g.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.6);
    o.connect(g).connect(audio.destination); o.start(); o.stop(audio.currentTime + 0.6);
    S.beeps += 1;
  } catch (e) { console.warn("sound failed", e); }
}
$("sound").addEventListener("click", () => {
  S.soundOn = !S.soundOn;
  $("sound").textContent = S.soundOn ? "sound on" : "sound off";
  if (S.soundOn) { audio = audio || new AudioContext(); audio.resume(); }
});

// ------------------------------------------------------------------ counts and desk

function renderCounts() {
  const n = { green: 0, amber: 0, red: 0 };
  for (const t of S.trips.values()) if (t.declaration_id && t.state !== "released" && t.state !== "closed") n[t.colour] = (n[t.colour] || 0) + 1;
  for (const c of ["green", "amber", "red"]) $("n-" + c).textContent = n[c];
  let open = 0;
  for (const a of S.alerts.values()) if (ACTIVE.has(a.status)) open += 1;
  $("n-open").textContent = open;
}
function fillSelect(sel, values) {
  const have = new Set([...sel.options].map((o) => o.value));
  for (const v of values) if (!have.has(v)) sel.add(new Option(v, v));
}
for (const id of ["f-severity", "f-status", "f-type", "f-corridor", "f-age"]) $(id).addEventListener("change", renderDesk);

function deskFilter(a) {
  const sev = $("f-severity").value, st = $("f-status").value, ty = $("f-type").value, co = $("f-corridor").value, age = +$("f-age").value;
  if (sev && a.severity !== sev) return false;
  if (st === "active" ? !ACTIVE.has(a.status) : st && a.status !== st) return false;
  if (ty && a.type !== ty) return false;
  if (co && a.corridor_id !== co) return false;
  if (age && S.eventNow - tsSec(a.ts) > age) return false;
  return true;
}
const DESK_PAGE = 300;
function renderDesk() {
  if (WALL) return;
  fillSelect($("f-type"), [...new Set([...S.alerts.values()].map((a) => a.type))].sort());
  const rows = [...S.alerts.values()].filter(deskFilter)
    .sort((a, b) => (b.severity === "red") - (a.severity === "red") || b.ts.localeCompare(a.ts));
  $("desk-count").textContent = `${rows.length} alerts match of ${S.alerts.size}` + (rows.length > DESK_PAGE ? ` (the newest ${DESK_PAGE} shown: narrow the filters)` : "") + " · ages in event time";
  const editing = document.activeElement && document.activeElement.closest && document.activeElement.closest("#alerts textarea");
  if (editing) return; // do not wipe a note being typed; the next update redraws
  $("alerts").innerHTML = rows.slice(0, DESK_PAGE).map(alertHtml).join("");
}
function alertHtml(a) {
  const fresh = Date.now() - (S.alertSeenAt.get(a.alert_id) || 0) < 2000 ? " new" : "";
  const who = a.status === "acknowledged" && a.ack ? `acknowledged by ${esc(a.ack.by)} at ${short(a.ack.at)}`
    : a.status === "resolving" && a.pending ? `resolved by ${esc(a.pending.by)} at ${short(a.pending.at)}: waiting for the pipeline`
    : a.status === "resolved" && a.resolution ? `resolved by ${esc(a.resolution.by)}${a.resolution.ts ? " at " + short(a.resolution.ts) : ""}: ${esc(a.resolution.note)}`
    : a.status === "cleared" ? "cleared by the pipeline" : "";
  const refused = a.refused && ACTIVE.has(a.status) ? `<div class="who sev-red">the pipeline refused ${a.refused.by ? esc(a.refused.by) + "'s" : "a"} resolution: ${esc(a.refused.reason)} ${esc(a.refused.detail)}</div>` : "";
  const may = S.me && S.me.may_act;
  const actions = !may ? "" : (a.status === "open" ? `<button type="button" data-act="ack" data-id="${esc(a.alert_id)}">acknowledge</button>` : "")
    + (ACTIVE.has(a.status) && a.declaration_id !== "UNDECLARED" ? `<button type="button" data-act="resolve" data-id="${esc(a.alert_id)}">resolve…</button>` : "");
  const detail = Object.entries(a.detail || {}).filter(([k]) => !k.endsWith("_id")).map(([k, v]) => `${esc(k)}=${esc(v)}`).join(", ");
  return `<li class="alert ${esc(a.severity)}${fresh}" data-alert="${esc(a.alert_id)}">
    <div class="head"><span class="type sev-${esc(a.severity)}">${esc(a.type)}</span><span class="status ${esc(a.status)}">${esc(a.status)}</span>
    <a data-trip="${esc(a.lock_id)}">${esc(a.declaration_id)}</a><span>${esc(a.vehicle_plate)}</span><span class="muted mono">${short(a.ts)}</span></div>
    <div class="muted mono">${esc(a.alert_id)} · ${esc(a.lock_id)} · ${esc(a.corridor_id)}</div>
    ${detail ? `<div class="muted">${detail}</div>` : ""}${who ? `<div class="who">${who}</div>` : ""}${refused}
    <div class="actions">${actions}</div></li>`;
}
$("alerts").addEventListener("click", (e) => {
  const link = e.target.closest("[data-trip]");
  if (link) return openTrip(link.dataset.trip);
  const btn = e.target.closest("button[data-act]");
  if (!btn) return;
  const id = btn.dataset.id;
  if (btn.dataset.act === "ack") return act(id, "ack", {});
  if (btn.dataset.act === "resolve") {
    const li = btn.closest("li");
    if (li.querySelector("form")) return;
    const form = document.createElement("form");
    form.innerHTML = `<textarea name="note" required maxlength="500" placeholder="note (required): what was checked"></textarea>
      <button type="submit" class="primary">confirm resolution</button> <span class="error"></span>`;
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const note = form.note.value.trim();
      if (!note) { form.querySelector(".error").textContent = "a note is required"; return; }
      act(id, "resolve", { note }).then((ok) => { if (ok) form.remove(); });
    });
    li.appendChild(form);
    form.note.focus();
  }
});
async function act(alertId, action, body) {
  const r = await fetch(`/api/alerts/${encodeURIComponent(alertId)}/${action}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  if (!r.ok) {
    const msg = (await r.json().catch(() => ({}))).error || r.statusText;
    toast(`${action} failed: ${msg}`);
    return false;
  }
  return true;
}
function toast(text) {
  const p = document.createElement("p");
  p.className = "replay-stop toast"; p.textContent = text;
  $("desk-count").after(p);
  setTimeout(() => p.remove(), 6000);
}

// ------------------------------------------------------------------ wall screen

function renderWall() {
  if (!WALL) return;
  const reds = [...S.alerts.values()].filter((a) => a.severity === "red" && ACTIVE.has(a.status)).sort((a, b) => b.ts.localeCompare(a.ts)).slice(0, 8);
  $("wall-alerts").innerHTML = reds.map((a) => `<li><div class="big">${esc(a.type)} · ${esc(a.vehicle_plate || a.lock_id)}</div>
    <div class="small">${esc(a.declaration_id)} · ${esc(a.corridor_id)} · ${short(a.ts)} · ${esc(a.status)}</div></li>`).join("")
    || `<li class="small">no open red alerts · 无红色警报</li>`;
}

// ------------------------------------------------------------------ gates and loop

function writeoffsToday() {
  // Releases stored by the worker since local midnight (a release writes the declaration off).
  const today = new Date().toDateString();
  const n = S.verdicts.filter((v) => v.verdict === "release" && v.written_ms && new Date(v.written_ms).toDateString() === today).length;
  const older = S.verdictTotal > S.verdicts.length && S.verdicts.length && new Date(S.verdicts[0].written_ms).toDateString() === today;
  return older ? `at least ${n} (only the newest ${S.verdicts.length} verdicts are loaded)` : String(n);
}
// Round trips are measured by the gate clients (arrival published -> signed verdict received)
// and recorded in Redis with each verdict; a verdict no live gate client waited for has none.
function gateKey(lock, ts) { return `${lock}|${Date.parse(ts)}`; }
function fmtMs(ms) { return ms == null ? "–" : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`; }
function ago(s) { return s == null ? "never" : s < 90 ? `${Math.round(s)} s ago` : `${Math.round(s / 60)} min ago`; }
function memberRows(h) {
  const members = h.members;
  if (members == null) return `<tr><th>bridges, workers</th><td class="down">cannot read heartbeats from Redis</td></tr>`;
  const rows = [];
  for (const role of ["bridge", "worker"]) {
    const mine = members.filter((m) => m.role === role);
    const lines = mine.map((m) => {
      const parts = role === "worker" && h.workers && h.workers[m.name] ? ` · partitions ${esc(JSON.stringify(h.workers[m.name]))}` : "";
      const state = m.up ? `<span class="up">up</span>, beat ${ago(m.beat_s)}`
        : m.left ? `<span class="down">STOPPED</span> (left, last beat ${ago(m.beat_s)})`
        : `<span class="down">DOWN</span>: no heartbeat for ${Math.round(m.beat_s ?? 0)} s`;
      return `<span class="member" data-member="${esc(m.id)}" data-up="${m.up}">${role} ${esc(m.name)}: ${state}${parts}</span>`;
    });
    const anyUp = mine.some((m) => m.up);
    rows.push(`<tr><th>${role}s</th><td class="${anyUp ? "" : "down"}">${lines.join("<br>") || `no ${role} registered`}</td></tr>`);
  }
  return rows.join("");
}
function lagRow(lag) {
  if (lag == null) return "";
  if (lag.error) return `<tr><th>Kafka lag</th><td class="down">not measured: ${esc(lag.error)}</td></tr>`;
  const parts = Object.entries(lag.partitions || {}).map(([p, x]) => `p${esc(p)} ${x.lag}`).join(", ");
  return `<tr><th>Kafka lag</th><td id="kafka-lag" data-total="${lag.total}" class="${lag.total > 1000 ? "down" : ""}">${lag.total} message${lag.total === 1 ? "" : "s"} behind the bridge
    <div class="muted">${parts ? `${parts} · ` : ""}group ${esc(lag.group)} on ${esc(lag.topic)}</div></td></tr>`;
}
function renderGates() {
  renderHealth();
  renderVerdicts();
}
function renderHealth() {
  if (WALL) return;
  const h = S.health || {};
  const servers = Object.entries(h.servers || {}).map(([k, up]) => `<tr><th>${esc(k)}</th><td class="${up ? "up" : "down"}">${up ? "up" : "DOWN"}</td></tr>`).join("");
  const lastWrite = h.worker_last_write_s == null ? "no write seen yet" : `${h.worker_last_write_s} s ago`;
  $("health").innerHTML = `<table class="kv">${servers}${memberRows(h)}${lagRow(h.kafka_lag)}
    <tr><th>last pipeline write</th><td>${lastWrite}</td></tr><tr><th>live feed</th><td class="${S.connected ? "up" : "down"}">${S.connected ? "connected" : "reconnecting"} · ${S.updates} updates</td></tr></table>`;
  const c = h.counts || {};
  const v = h.verdicts || {};
  const rt = h.round_trips || {};
  const window = rt.window_s ? `last ${Math.round(rt.window_s / 60)} min` : "recent";
  $("loop").innerHTML = `<table class="kv"><tr><th>in transit</th><td>${c.in_transit ?? "–"}</td></tr><tr><th>overdue trips</th><td>${c.overdue ?? "–"}</td></tr>
    <tr><th>written off today</th><td>${writeoffsToday()}</td></tr>
    <tr><th>released / inspect (recent ${S.verdicts.length})</th><td>${v.release ?? "–"} / ${v.inspect ?? "–"}</td></tr>
    <tr><th>gate round trip (${window})</th><td id="round-trip" data-count="${rt.count ?? 0}">${rt.count ? `median ${fmtMs(rt.median_ms)} · p95 ${fmtMs(rt.p95_ms)} · max ${fmtMs(rt.max_ms)} <span class="muted">(${rt.count} arrivals, published → signed verdict received, measured by the gates)</span>` : "no gate arrivals yet"}</td></tr>
    <tr><th>manual fallbacks (${window})</th><td id="manual-count" data-count="${rt.manual ?? 0}" class="${rt.manual ? "down" : ""}">${rt.manual ?? 0}${rt.reconciled ? ` <span class="muted">· ${rt.reconciled} reconciled since</span>` : ""}</td></tr></table>`;
}
function renderVerdicts() {
  gatesDirty = false;
  if (WALL) return;
  // The verdicts as they happen, with the gates' manual fallbacks and reconciliations between them.
  const rtt = new Map(S.gateEvents.filter((e) => e.kind === "verdict").map((e) => [gateKey(e.lock_id, e.arrival_ts), e.round_trip_ms]));
  const rows = S.verdicts.slice(-200).map((x) => ({ at: x.written_ms || 0, html: `<li class="verdict"><span class="${esc(x.verdict)}">${esc(x.verdict.toUpperCase())}</span>
    ${esc(x.gate_id)} · <a data-trip="${esc(x.lock_id)}">${esc(x.declaration_id || "no declaration")}</a> · <span class="mono muted">${short(x.ts)}</span>${rtt.get(gateKey(x.lock_id, x.ts)) != null ? ` · <span class="muted rtt">round trip ${fmtMs(rtt.get(gateKey(x.lock_id, x.ts)))}</span>` : ""}
    ${(x.reasons || []).length ? `<div class="muted">${x.reasons.map(esc).join("; ")}</div>` : ""}</li>` }));
  for (const e of S.gateEvents.slice(-200)) {
    if (e.kind === "manual") rows.push({ at: e.recorded_ms || 0, html: `<li class="verdict gate-manual" data-lock="${esc(e.lock_id)}"><span class="manual">MANUAL</span>
      ${esc(e.gate_id)} · <a data-trip="${esc(e.lock_id)}">${esc(e.vehicle_plate || e.lock_id)}</a> · <span class="mono muted">${short(e.arrival_ts)}</span>
      <div class="muted">manual inspection: ${esc(e.reason || "no verdict")}</div></li>` });
    else if (e.kind === "reconciled") rows.push({ at: e.recorded_ms || 0, html: `<li class="verdict gate-reconciled" data-lock="${esc(e.lock_id)}"><span class="muted">RECONCILED</span>
      ${esc(e.gate_id)} · <a data-trip="${esc(e.lock_id)}">${esc(e.declaration_id || e.lock_id)}</a> · <span class="mono muted">${short(e.arrival_ts)}</span>
      <div class="muted">the pipeline's verdict for a manual inspection: <span class="${esc(e.verdict)}">${esc((e.verdict || "").toUpperCase())}</span></div></li>` });
  }
  rows.sort((a, b) => b.at - a.at);
  $("verdict-count").textContent = `(newest ${Math.min(200, S.verdicts.length)} of ${S.verdictTotal}, with the gates' manual fallbacks)`;
  $("verdicts").innerHTML = rows.slice(0, 300).map((r) => r.html).join("");
}
$("verdicts").addEventListener("click", (e) => { const l = e.target.closest("[data-trip]"); if (l) openTrip(l.dataset.trip); });

// ------------------------------------------------------------------ tabs

function showTab(name) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const s of document.querySelectorAll(".tab")) s.classList.toggle("active", s.id === "tab-" + name);
}
$("tabs").addEventListener("click", (e) => { const b = e.target.closest("button[data-tab]"); if (b) showTab(b.dataset.tab); });

// ------------------------------------------------------------------ trip view and replay

let reloadTimer = null;
function scheduleTripReload() { clearTimeout(reloadTimer); reloadTimer = setTimeout(() => S.trip && openTrip(S.trip.lock, true), 1000); }

async function openTrip(lock, quiet) {
  const r = await fetch(`/api/trips/${encodeURIComponent(lock)}`);
  if (!r.ok) { toast(`no trip for lock ${lock}`); return; }
  const d = await r.json();
  const keepReplay = quiet && S.trip && S.trip.lock === lock && S.trip.playing;
  S.trip = { lock, data: d, index: d.track.length - 1, playing: false };
  if (!quiet) { history.replaceState(null, "", `/trip/${encodeURIComponent(lock)}${WALL ? "?wall" : ""}`); showTab("trip"); }
  if (keepReplay) return;
  drawTrip(d, !quiet);
  $("trip-empty").hidden = true;
  $("trip").hidden = false;
}
function kv(rows) { return `<table class="kv">${rows.filter((r) => r[1] !== undefined && r[1] !== null && r[1] !== "").map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`).join("")}</table>`; }
function drawTrip(d, fit) {
  const t = d.trip, dec = d.declaration || {};
  $("trip-title").innerHTML = `<span class="sev-${esc(t.colour)}">●</span> ${esc(t.declaration_id || "undeclared")} · ${esc(t.vehicle_plate || t.lock_id)}`;
  const cargo = (dec.cargo || []).map((c) => `${esc(c.description)} — ${esc(c.quantity)} ${esc(c.unit)}, ${esc(c.value)} ${esc(c.currency)}`).join("<br>");
  const alerts = d.alerts.map((a) => `<li class="alert ${esc(a.severity)}" data-alert="${esc(a.alert_id)}"><div class="head"><span class="type sev-${esc(a.severity)}">${esc(a.type)}</span>
    <span class="status ${esc(a.status)}">${esc(a.status)}</span><span class="mono muted">${short(a.ts)}</span></div>
    <div class="muted mono">${esc(a.alert_id)}</div>${a.resolution ? `<div class="who">resolved by ${esc(a.resolution.by)}: ${esc(a.resolution.note)}</div>` : ""}
    ${a.ack ? `<div class="who">acknowledged by ${esc(a.ack.by)} at ${short(a.ack.at)}</div>` : ""}</li>`).join("");
  const seal = [["sealed at", short(dec.sealed_ts || t.sealed_ts)], ["seal", t.seal_intact === false ? "<span class='sev-red'>opened or tampered</span>" : "intact"]];
  const wo = d.writeoff ? kv([["written off", short(d.writeoff.released_ts || d.writeoff.ts || "")], ["decided by", esc(d.writeoff.decided_by)], ["record", `<span class="mono">${esc(JSON.stringify(d.writeoff))}</span>`]]) : "<p class='muted'>not written off</p>";
  const audit = d.audit.map((e) => `<li class="verdict"><span class="${esc(e.verdict)}">${esc((e.verdict || "").toUpperCase())}</span> ${short(e.decided_at || e.ts || "")} · ${esc(e.decided_by || "")}
    ${(e.reasons || []).length ? `<div class="muted">${e.reasons.map(esc).join("; ")}</div>` : ""}</li>`).join("");
  $("trip-body").innerHTML = `<h3>Declaration</h3>` + kv([
    ["declaration", esc(t.declaration_id)], ["lock", esc(t.lock_id)], ["container", esc(t.container_no || dec.container_no)],
    ["plate", esc(t.vehicle_plate || dec.vehicle_plate)], ["corridor", esc(t.corridor_id || dec.corridor_id)], ["gate", esc(t.destination_gate || dec.destination_gate)],
    ["departure", short(dec.departure_ts)], ["ETA", short(dec.eta_ts)], ["cargo", cargo], ["state", esc(t.state)], ["last heard", short(t.last_ts)]])
    + `<h3>Seal</h3>` + kv(seal)
    + `<h3>Gate verdict</h3>` + (t.verdict ? kv([["verdict", `<span class="${esc(t.verdict)}">${esc(t.verdict)}</span>`], ["reasons", (t.verdict_reasons || []).map(esc).join("<br>") || "none"]]) : "<p class='muted'>not at the gate yet</p>")
    + `<h3>Alerts on this trip (${d.alerts.length})</h3><ol class="alerts">${alerts || "<li class='muted'>none</li>"}</ol>`
    + `<h3>Write-off</h3>${wo}<h3>Audit trail (${d.audit.length})</h3><ol class="verdicts">${audit || "<li class='muted'>no verdict yet</li>"}</ol>`
    + `<p class="muted">track: ${d.track.length} fixes${d.track_total > d.track.length ? ` (newest of ${d.track_total})` : ""}</p>`;
  tripLayer.clearLayers();
  const corridor = corridors[t.corridor_id];
  if (corridor) L.geoJSON(corridor, { style: { color: "#58a6ff", weight: 10, opacity: 0.35 } }).addTo(tripLayer);
  const line = d.track.map((p) => [p[1], p[2]]);
  if (line.length) L.polyline(line, { color: "#ffffff", weight: 3, opacity: 0.9 }).addTo(tripLayer);
  for (const a of d.alerts) {
    if (a.lat == null) continue;
    L.circleMarker([a.lat, a.lon], { radius: 9, color: "#fff", weight: 2, fillColor: COLOURS[a.severity], fillOpacity: 1 })
      .bindTooltip(`${esc(a.type)} ${short(a.ts)}`).addTo(tripLayer);
  }
  S.trip.cursor = line.length ? L.circleMarker(line[line.length - 1], { radius: 8, color: "#000", weight: 2, fillColor: "#fff", fillOpacity: 1 }).addTo(tripLayer) : null;
  const slider = $("replay-slider");
  slider.max = Math.max(0, d.track.length - 1);
  slider.value = slider.max;
  showReplayPoint(+slider.value);
  if (fit && line.length) map.fitBounds(L.latLngBounds(line).pad(0.2));
}
function showReplayPoint(i) {
  const d = S.trip && S.trip.data;
  if (!d || !d.track.length) { $("replay-time").textContent = "no track yet"; return; }
  const p = d.track[i];
  S.trip.index = i;
  $("replay-time").textContent = short(p[0]);
  if (S.trip.cursor) S.trip.cursor.setLatLng([p[1], p[2]]);
}
$("replay-slider").addEventListener("input", (e) => { stopReplay(); showReplayPoint(+e.target.value); });
$("replay-play").addEventListener("click", () => (S.trip && S.trip.playing ? stopReplay() : startReplay()));
function stopReplay() { if (S.trip) S.trip.playing = false; clearInterval(S.replayTimer); $("replay-play").textContent = "▶ replay"; }
function startReplay() {
  const d = S.trip && S.trip.data;
  if (!d || !d.track.length) return;
  $("replay-stop").hidden = true;
  let i = S.trip.index >= d.track.length - 1 ? 0 : S.trip.index;
  S.trip.playing = true;
  $("replay-play").textContent = "❚❚ pause";
  S.replayTimer = setInterval(() => {
    const from = tsSec(d.track[i][0]);
    i += 1;
    if (i >= d.track.length) { stopReplay(); return; }
    const to = tsSec(d.track[i][0]);
    $("replay-slider").value = i;
    showReplayPoint(i);
    // Pause at each alert the replay passes: show it and wait for the operator.
    const hit = d.alerts.find((a) => tsSec(a.ts) > from && tsSec(a.ts) <= to);
    if (hit) {
      stopReplay();
      $("replay-stop").hidden = false;
      $("replay-stop").textContent = `paused at ${hit.type} (${hit.severity}) ${short(hit.ts)} · ${hit.alert_id}`;
      S.trip.pausedAt = hit.alert_id;
    }
  }, 60);
}

// ------------------------------------------------------------------ start

function clock() { $("clock").textContent = S.eventNow ? "event time " + new Date(S.eventNow * 1000).toISOString().slice(0, 19).replace("T", " ") : ""; }
setInterval(clock, 1000);

(async function start() {
  S.me = await (await fetch("/api/me")).json();
  $("me").textContent = `${S.me.name} (${S.me.role})`;
  document.body.classList.add("role-" + S.me.role);
  $("sound").textContent = S.soundOn ? "sound on" : "sound off";
  await loadGeofences();
  connect();
  const m = location.pathname.match(/^\/trip\/(.+)$/);
  if (m) openTrip(decodeURIComponent(m[1]));
})();
