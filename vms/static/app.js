// sitewarden VMS dashboard: plain JS, no build step. Every piece of data reaches the page through
// textContent or attributes set one by one, never through innerHTML, so event text stays text.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { me: null, events: new Map(), order: [], selected: null, cameras: [], devices: new Map(), es: null };
const ZONE_COLOURS = { danger: "#e5484d", restricted: "#f5a623", walkway: "#3e8ed0", work: "#7fd18b" };
const CSRF = { "X-Sitewarden": "1" };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function api(path, opts = {}) {
  const init = { credentials: "same-origin", ...opts, headers: { ...(opts.headers || {}) } };
  if (init.method && init.method !== "GET") Object.assign(init.headers, CSRF);
  if (init.json !== undefined) { init.body = JSON.stringify(init.json); init.headers["Content-Type"] = "application/json"; delete init.json; }
  const r = await fetch(path, init);
  if (r.status === 401) { showLogin(); throw new Error("not logged in"); }
  if (!r.ok) throw new Error(`${r.status} ${(await r.text()).slice(0, 200)}`);
  return r.status === 204 ? null : r.json();
}

function when(epoch) {
  if (!epoch) return "-";
  const d = new Date(epoch * 1000);
  return d.toLocaleString(undefined, { hour12: false });
}

function ago(epoch) {
  if (!epoch) return "never";
  const s = Math.max(0, Date.now() / 1000 - epoch);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return when(epoch);
}

function canAct() { return state.me && (state.me.role === "operator" || state.me.role === "admin"); }

// --- login ------------------------------------------------------------------------------------------

function showLogin() {
  $("#login").hidden = false; $("#main").hidden = true; $("#logout").hidden = true; $("#who").textContent = "";
  if (state.es) { state.es.close(); state.es = null; }
}

async function start() {
  try { state.me = await api("/api/me"); } catch (e) { return; }
  if (state.me.kind !== "user") { showLogin(); return; }
  $("#login").hidden = true; $("#main").hidden = false; $("#logout").hidden = false;
  $("#who").textContent = `${state.me.name} (${state.me.role})`;
  await Promise.all([loadEvents(), loadCameras(), loadDevices(), loadFlags()]);
  await loadRepo();
  connect();
}

$("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const r = await fetch("/api/login", { method: "POST", headers: { "Content-Type": "application/json", ...CSRF },
    body: JSON.stringify({ name: f.get("name"), password: f.get("password") }) });
  if (!r.ok) { $("#login-error").textContent = "Wrong name or password."; return; }
  $("#login-error").textContent = "";
  start();
});

$("#logout").addEventListener("click", async () => { await api("/api/logout", { method: "POST" }).catch(() => {}); showLogin(); });
$("#only-open").addEventListener("change", renderFeed);
$("#older").addEventListener("click", () => loadOlder().catch(() => {}));

// --- events -----------------------------------------------------------------------------------------

async function loadEvents() {
  const page = await api("/api/events?limit=100");
  state.events.clear(); state.order = [];
  for (const e of page.events.reverse()) upsert(e, false);
  state.next = page.next;
  renderFeed();
}

async function loadOlder() {
  if (!state.next) return;
  const page = await api(`/api/events?limit=100&before=${state.next}`);
  for (const e of page.events) {
    if (!state.events.has(e.id)) { state.events.set(e.id, e); state.order.push(e.id); }
  }
  state.next = page.next;
  renderFeed();
}

function upsert(e, render = true) {
  const known = state.events.has(e.id);
  state.events.set(e.id, e);
  if (!known) {
    state.order.unshift(e.id);
    if (state.order.length > 2000) {  // keep the page light; "Load older" fetches the dropped ones again
      const old = state.events.get(state.order.pop());
      state.events.delete(old.id);
      state.next = old.seq + 1;
    }
  }
  if (!render) return;
  const li = document.querySelector(`li.event[data-id="${CSS.escape(e.id)}"]`);
  if (li && !($("#only-open").checked && e.acked_at)) li.replaceWith(eventItem(e));
  else renderFeed();
  if (state.selected === e.id) renderDetail();
}

function summary(e) {
  const d = e.details || {};
  const parts = [];
  for (const [k, v] of Object.entries(d)) parts.push(`${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
  return parts.join(" · ");
}

function eventItem(e) {
  const status = e.false_alarm ? el("span", { class: "state fa", text: `false alarm (${e.acked_by || "?"})` })
    : e.acked_at ? el("span", { class: "state", text: `acknowledged by ${e.acked_by}` }) : null;
  const actions = el("div", { class: "actions" });
  if (canAct() && !e.false_alarm) {
    if (!e.acked_at) actions.append(el("button", { class: "ack", text: "Acknowledge", onclick: (ev) => { ev.stopPropagation(); act(e.id, "ack"); } }));
    actions.append(el("button", { class: "fa", text: "False alarm", onclick: (ev) => { ev.stopPropagation(); act(e.id, "false-alarm"); } }));
  }
  if (status) actions.append(status);
  return el("li", { class: `event sev-${e.severity}${e.acked_at ? " acked" : ""}${state.selected === e.id ? " selected" : ""}`,
                    "data-id": e.id, onclick: () => { state.selected = e.id; renderFeed(); renderDetail(); } },
    el("div", { class: "title", text: `${e.severity.toUpperCase()} · ${e.type.replace(/_/g, " ")}${e.zone ? " · " + e.zone : ""}` }),
    el("div", { class: "meta", text: `${e.camera} @ ${e.device} · ${when(e.t_event_epoch)}${e.clip_url ? " · clip" : ""}${e.snapshot_url ? " · snapshot" : ""}` }),
    el("div", { class: "details", text: summary(e) }),
    actions);
}

function renderFeed() {
  const ul = $("#feed");
  const open = $("#only-open").checked;
  const items = state.order.map((id) => state.events.get(id)).filter((e) => e && !(open && e.acked_at));
  ul.replaceChildren(...items.map(eventItem));
  const unacked = state.order.filter((id) => !state.events.get(id)?.acked_at).length;
  $("#feed-count").textContent = `${unacked} open / ${state.order.length}`;
  $("#older").hidden = !state.next;
}

function renderDetail() {
  const e = state.events.get(state.selected);
  const box = $("#detail");
  if (!e) { box.replaceChildren(el("p", { class: "muted", text: "Select an alert." })); return; }
  const nodes = [el("div", { class: "title", text: `${e.type.replace(/_/g, " ")} on ${e.camera}` }),
    el("div", { class: "meta", text: `event ${e.id} · track ${e.track ?? "-"} · confidence ${Number(e.confidence).toFixed(2)}` })];
  if (e.snapshot_url) nodes.push(el("img", { src: e.snapshot_url, alt: "snapshot" }));
  if (e.clip_url) nodes.push(el("video", { src: e.clip_url, controls: "", preload: "metadata" }));
  nodes.push(el("pre", { text: JSON.stringify(e.details, null, 1) }));
  if (e.note) nodes.push(el("div", { class: "meta", text: `note: ${e.note}` }));
  box.replaceChildren(...nodes);
}

async function act(id, what) {
  try { upsert(await api(`/api/events/${encodeURIComponent(id)}/${what}`, { method: "POST", json: {} })); }
  catch (err) { alert(`Could not ${what}: ${err.message}`); }
}

// --- cameras and fleet ------------------------------------------------------------------------------

async function loadCameras() {
  state.cameras = (await api("/api/cameras")).cameras;
  const wrap = $("#cameras");
  wrap.replaceChildren(...state.cameras.map(cameraCard));
}

let cameraTimer = null;
function refreshCamerasSoon() {  // at most every 3 s, however fast events come
  if (cameraTimer) return;
  cameraTimer = setTimeout(() => { cameraTimer = null; loadCameras().catch(() => {}); }, 3000);
}

function cameraCard(cam) {
  const canvas = el("canvas", { width: 320, height: 180 });
  const card = el("div", { class: "camera", "data-camera": cam.id },
    canvas, el("div", { class: "name", text: `${cam.id} @ ${cam.device}${cam.image_version ? " · image v" + cam.image_version : ""} · ${cam.zones.length} zone(s)` }));
  drawCamera(canvas, cam);
  return card;
}

function drawCamera(canvas, cam) {
  const ctx = canvas.getContext("2d");
  const [w, h] = cam.resolution || [1280, 720];
  canvas.height = Math.round(canvas.width * h / w);
  const sx = canvas.width / w, sy = canvas.height / h;
  const zones = () => {
    for (const z of cam.zones) {
      if (!z.polygon_px || z.polygon_px.length < 3) continue;
      ctx.beginPath();
      z.polygon_px.forEach(([x, y], i) => (i ? ctx.lineTo(x * sx, y * sy) : ctx.moveTo(x * sx, y * sy)));
      ctx.closePath();
      const c = ZONE_COLOURS[z.kind] || "#aab4be";
      ctx.globalAlpha = 0.25; ctx.fillStyle = c; ctx.fill();
      ctx.globalAlpha = 1; ctx.strokeStyle = c; ctx.lineWidth = 2; ctx.stroke();
      ctx.fillStyle = c; ctx.font = "11px system-ui";
      ctx.fillText(z.id, z.polygon_px[0][0] * sx + 3, z.polygon_px[0][1] * sy + 12);
    }
  };
  ctx.fillStyle = "#0b0d10"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (cam.snapshot_url) {
    const img = new Image();
    img.onload = () => { ctx.drawImage(img, 0, 0, canvas.width, canvas.height); zones(); };
    img.onerror = zones;
    img.src = cam.snapshot_url;
  } else zones();
}

async function loadDevices() {
  const list = (await api("/api/devices")).devices;
  state.devices.clear();
  for (const d of list) state.devices.set(d.id, d);
  renderFleet();
}

function renderFleet() {
  const rows = [...state.devices.values()].sort((a, b) => a.id.localeCompare(b.id)).map((d) => {
    const health = d.online ? d.health : "offline";
    return el("tr", { "data-device": d.id },
      el("td", { text: d.id }), el("td", { text: d.board || "-" }),
      el("td", { text: d.image_version != null ? `v${d.image_version}` : "-" }),
      el("td", { class: `h-${health}`, text: health }), el("td", { text: ago(d.last_seen) }));
  });
  $("#fleet tbody").replaceChildren(...rows);
}

// --- situation flags, repository and pushes --------------------------------------------------------

const FLAG_NAMES = ["rain", "snow", "wind"];

async function loadFlags() {
  const flags = (await api("/api/flags?scope=*")).flags;
  const on = new Set(flags.filter((f) => f.scope === "*" && f.value).map((f) => f.name));
  $("#flags").replaceChildren(...FLAG_NAMES.map((name) => {
    const box = el("input", { type: "checkbox", "data-flag": name, disabled: canAct() ? null : "" });
    box.checked = on.has(name);
    box.addEventListener("change", async () => {
      try { await api(`/api/flags/*/${name}`, { method: "PUT", json: { value: box.checked } }); }
      catch (err) { box.checked = !box.checked; alert(`Could not set ${name}: ${err.message}`); }
    });
    return el("label", { class: "flag" }, box, ` ${name} (site-wide)`);
  }));
}

async function loadRepo() {
  const arts = (await api("/api/artifacts")).artifacts;
  const admin = state.me && state.me.role === "admin";
  const agents = [...state.devices.values()].filter((d) => d.agent_url);
  $("#repo tbody").replaceChildren(...arts.slice(0, 20).map((a) => {
    const cell = el("td");
    if (admin && agents.length) {
      const pick = el("select", { class: "push-target" },
        ...agents.map((d) => el("option", { value: d.id, text: d.id, selected: d.id === a.device ? "" : null })));
      cell.append(pick, el("button", { class: "push", text: "Push", onclick: () => push(a.id, pick.value) }));
    }
    const who = a.kind === "image" ? `${a.device || "?"} v${a.version ?? "?"} (${a.board || "?"})` : "-";
    return el("tr", { "data-artifact": a.id }, el("td", { text: a.name, title: a.id }), el("td", { text: a.kind }),
      el("td", { text: who }), cell);
  }));
  await loadPushes();
}

async function push(artifact, device) {
  try { await api(`/api/artifacts/${artifact}/push`, { method: "POST", json: { devices: [device] } }); }
  catch (err) { alert(`Could not push: ${err.message}`); }
  loadPushes().catch(() => {});
}

async function loadPushes() {
  const pushes = (await api("/api/pushes?limit=8")).pushes;
  $("#pushes").replaceChildren(...pushes.map((p) =>
    el("li", { class: `push-${p.state}`, "data-push": p.seq },
       `${p.artifact.slice(0, 10)} -> ${p.device}: ${p.state}${p.finished ? " · " + when(p.finished) : ""}`)));
}

// --- live -------------------------------------------------------------------------------------------

function connect() {
  if (state.es) state.es.close();
  const es = new EventSource("/api/stream");
  state.es = es;
  const live = $("#live");
  es.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  es.onerror = () => { live.textContent = "reconnecting"; live.className = "live off"; };
  es.addEventListener("event", (m) => {
    const e = JSON.parse(m.data);
    upsert(e);
    const cam = state.cameras.find((c) => c.id === e.camera && c.device === e.device);
    if (!cam || e.snapshot_url) refreshCamerasSoon();
    const dev = state.devices.get(e.device);
    if (dev) { dev.last_seen = e.received; dev.online = true; renderFleet(); }
  });
  es.addEventListener("update", (m) => upsert(JSON.parse(m.data)));
  es.addEventListener("device", (m) => { const d = JSON.parse(m.data); state.devices.set(d.id, d); renderFleet(); });
  es.addEventListener("push", () => { loadPushes().catch(() => {}); loadDevices().catch(() => {}); });
  es.addEventListener("flag", () => loadFlags().catch(() => {}));
}

setInterval(() => { if (state.me) renderFleet(); }, 15000);
start();
