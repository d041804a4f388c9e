// imdd review page: keyboard-first, one item at a time; no framework, no build step.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.getElementById(id);
const REASON_KEYS = Array.from(document.querySelectorAll("[data-reason]")).map((b) => b.dataset.reason);

const state = {
  current: null,      // the item leased to me
  shown: null,        // what is on screen (the current item or a history entry)
  history: null,      // the history entry on screen, when looking back
  shownAt: 0,
  overlay: true,
  zoom: 1,
  rejecting: false,
  busy: false,
};

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 401) {
    window.location.href = "/login";
    throw new Error("signed out");
  }
  let data = null;
  if (r.status !== 204) data = await r.json().catch(() => null);
  return { status: r.status, data };
}

function say(text, kind) {
  const m = $("message");
  m.textContent = text;
  m.className = kind || "";
}

function text(id, value) { $(id).textContent = value == null || value === "" ? "–" : String(value); }

function render(item, entry) {
  state.shown = item;
  state.history = entry || null;
  $("empty").hidden = true;
  document.querySelector("main").hidden = false;
  $("image").src = item.image_url;
  drawOverlay(item);
  const m = item.metadata;
  text("m-key", item.key);
  text("m-source", m.source + " (" + m.license + ")");
  text("m-product", m.product + " · " + m.domain);
  text("m-label", m.label + " · " + m.split);
  text("m-defects", (m.defect_types || []).join(", ") || "none");
  const a = m.attributes || {};
  text("m-location", a.location ? a.location + " · " + (a.severity || "") + " · " + a.basis : "not localized");
  text("m-draft", m.caption_source + (m.model ? " (" + m.model + ")" : ""));
  text("m-priority", item.priority + (item.required_reviews > 1 ? " · double review" : ""));
  renderChecks($("checks"), item.checks, "draft checks");
  $("live-checks").textContent = "";
  const box = $("caption");
  box.value = entry && entry.final_caption ? entry.final_caption : (item.caption || "");
  box.readOnly = Boolean(entry);
  closeReasons();
  if (entry) {
    $("mode").textContent = "Looking back: you chose " + entry.decision + (entry.reason ? " (" + entry.reason + ")" : "") +
      ". u undoes it, n goes back to the queue.";
    document.body.dataset.mode = "history";
  } else {
    $("mode").textContent = "Reviewing. a accept · e edit · r reject · s skip · ? keys";
    document.body.dataset.mode = "review";
  }
  document.body.dataset.key = item.key;
  state.shownAt = performance.now();
}

function renderChecks(el, checks, title) {
  el.textContent = "";
  if (!checks || checks.passed == null) { el.textContent = title + ": none"; return; }
  const head = document.createElement("div");
  head.className = checks.passed ? "pass" : "fail";
  head.textContent = title + ": " + (checks.passed ? "all passed" : "FAILED");
  el.appendChild(head);
  const ul = document.createElement("ul");
  for (const reason of checks.reasons || []) {
    const li = document.createElement("li");
    li.textContent = reason;
    ul.appendChild(li);
  }
  el.appendChild(ul);
}

function drawOverlay(item) {
  const canvas = $("overlay");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  canvas.dataset.drawn = "0";
  const boxes = (item.metadata && item.metadata.boxes) || [];
  const drawBoxes = () => {
    ctx.strokeStyle = "rgba(255, 220, 0, 0.95)";
    ctx.lineWidth = 2;
    for (const b of boxes) ctx.strokeRect(b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0);
    canvas.dataset.drawn = "1";
  };
  if (!item.mask_url) { drawBoxes(); return; }
  const mask = new Image();
  mask.onload = () => {
    if (state.shown !== item) return;
    const off = document.createElement("canvas");
    off.width = 512; off.height = 512;
    const octx = off.getContext("2d");
    octx.drawImage(mask, 0, 0, 512, 512);
    const px = octx.getImageData(0, 0, 512, 512);
    for (let i = 0; i < px.data.length; i += 4) {
      const on = px.data[i] > 127;
      px.data[i] = 255; px.data[i + 1] = 0; px.data[i + 2] = 0; px.data[i + 3] = on ? 110 : 0;
    }
    ctx.putImageData(px, 0, 0);
    drawBoxes();
  };
  mask.src = item.mask_url;
}

function setOverlay(on) {
  state.overlay = on;
  $("overlay").hidden = !on;
  document.body.dataset.overlay = on ? "on" : "off";
  say("overlay " + (on ? "on" : "off"));
}

function setZoom(z) {
  state.zoom = Math.min(4, Math.max(0.5, z));
  $("stage").style.transform = "scale(" + state.zoom + ")";
  $("zoom-level").textContent = Math.round(state.zoom * 100) + "%";
}

async function refreshStats() {
  const { status, data } = await api("GET", "/api/stats");
  if (status !== 200) return;
  const o = data.overall;
  // reviewers get items/open/leased only (blind double review); admins get every state
  const parts = [o.items + " items", o.open + " open"];
  for (const k of ["done", "disputed", "flagged"]) if (k in o) parts.push(o[k] + " " + k);
  $("progress").textContent = "you: " + data.me.decisions + " (24h " + data.me.last_24h + ") · all: " +
    parts.join(" · ");
}

async function next() {
  const { status, data } = await api("POST", "/api/next");
  if (status === 204) {
    state.current = null;
    state.shown = null;
    document.body.dataset.key = "";
    document.body.dataset.mode = "empty";
    $("empty").hidden = false;
    document.querySelector("main").hidden = true;
    refreshStats();
    return;
  }
  if (status !== 200) { say("could not load the next item (" + status + ")", "error"); return; }
  state.current = data;
  render(data);
  refreshStats();
}

async function decide(decision, extra) {
  if (state.busy) return;
  if (!state.current || state.history) { say("go back to the queue first (n)", "error"); return; }
  const item = state.current;
  const body = Object.assign({ decision, version: item.version,
                               time_spent_ms: Math.round(performance.now() - state.shownAt) }, extra || {});
  state.busy = true;
  try {
    const { status, data } = await api("POST", "/api/items/" + item.key + "/review", body);
    if (status === 200) {
      say(decision + (data.decision !== decision ? " (" + data.decision + ")" : "") + ": " + item.key, "ok");
      document.body.dataset.last = data.decision + ":" + item.key;
      await next();
    } else if (status === 409) {
      say("conflict: " + (data && data.detail) + "; loading the next item", "error");
      await next();
    } else {
      say("refused (" + status + "): " + (data && JSON.stringify(data.detail)), "error");
    }
  } finally {
    state.busy = false;
  }
}

function saveEdit() {
  const textValue = $("caption").value.trim();
  $("caption").blur();
  if (!state.current || state.history) return;
  if (textValue === (state.current.caption || "").trim()) decide("accept");
  else decide("edit", { caption: textValue });
}

function openReasons() {
  if (!state.current || state.history) return;
  state.rejecting = true;
  $("reasons").hidden = false;
  say("reject: press 1-4 for the reason, Esc to cancel");
}

function closeReasons() {
  state.rejecting = false;
  $("reasons").hidden = true;
}

function reject(reason) {
  const extra = { reason };
  const types = $("fix-types").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (reason === "wrong_defect_label" && (types.length || $("fix-normal").checked)) {
    extra.labels = $("fix-normal").checked ? { label: "normal", defect_types: [] }
                                             : { label: "defective", defect_types: types };
  }
  closeReasons();
  $("fix-types").value = "";
  $("fix-normal").checked = false;
  decide("reject", extra);
}

async function undo() {
  const body = state.history ? { event_id: state.history.event_id } : {};
  const { status, data } = await api("POST", "/api/undo", body);
  if (status !== 200) { say("cannot undo: " + (data && data.detail), "error"); return; }
  say("undone: " + data.action + " on " + data.key, "ok");
  document.body.dataset.last = "undo:" + data.key;
  if (data.item) { state.current = data.item; render(data.item); } else { await next(); }
  refreshStats();
}

async function previous() {
  const before = state.history ? state.history.event_id : undefined;
  const { status, data } = await api("GET", "/api/history?limit=1" + (before ? "&before=" + before : ""));
  if (status !== 200 || !data.items.length) { say("no earlier decision"); return; }
  render(data.items[0].item, data.items[0]);
}

function backToQueue() {
  if (state.current && state.history) { render(state.current); return; }
  next();
}

function toggleHelp(force) {
  const help = $("help");
  help.hidden = force === undefined ? !help.hidden : !force;
}

async function liveCheck() {
  if (!state.current || state.history) return;
  const { status, data } = await api("POST", "/api/items/" + state.current.key + "/check", { caption: $("caption").value });
  if (status === 200) renderChecks($("live-checks"), data, "your text");
}

const actions = {
  accept: () => decide("accept"),
  edit: () => { if (!state.history) $("caption").focus(); },
  reject: openReasons,
  skip: () => decide("skip"),
  flag: () => decide("flag"),
  undo,
  prev: previous,
  next: backToQueue,
  overlay: () => setOverlay(!state.overlay),
  "zoom-in": () => setZoom(state.zoom * 1.25),
  "zoom-out": () => setZoom(state.zoom / 1.25),
  "zoom-reset": () => setZoom(1),
};

const keys = {
  a: "accept", e: "edit", r: "reject", s: "skip", f: "flag", u: "undo", p: "prev", n: "next", o: "overlay",
  "+": "zoom-in", "=": "zoom-in", "-": "zoom-out", "0": "zoom-reset",
};

document.addEventListener("keydown", (ev) => {
  const inBox = ev.target instanceof HTMLTextAreaElement || ev.target instanceof HTMLInputElement;
  if (inBox) {
    if (ev.target.id === "caption" && ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); saveEdit(); }
    else if (ev.key === "Escape") { ev.preventDefault(); ev.target.blur(); }
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.key === "Escape") { toggleHelp(false); closeReasons(); return; }
  if (ev.key === "?") { toggleHelp(); return; }
  if (state.rejecting && /^[1-9]$/.test(ev.key)) {
    const reason = REASON_KEYS[Number(ev.key) - 1];
    if (reason) { ev.preventDefault(); reject(reason); }
    return;
  }
  if (ev.key === "g") { window.open($("guidelines-link").href, "_blank", "noopener"); return; }
  const action = keys[ev.key];
  if (action) { ev.preventDefault(); actions[action](); }
});

document.querySelectorAll("[data-action]").forEach((b) => b.addEventListener("click", () => actions[b.dataset.action]()));
document.querySelectorAll("[data-reason]").forEach((b) => b.addEventListener("click", () => reject(b.dataset.reason)));
$("help-button").addEventListener("click", () => toggleHelp());
let checkTimer = null;
$("caption").addEventListener("input", () => { clearTimeout(checkTimer); checkTimer = setTimeout(liveCheck, 400); });
$("viewport").addEventListener("wheel", (ev) => {
  if (!ev.ctrlKey) return;
  ev.preventDefault();
  setZoom(state.zoom * (ev.deltaY < 0 ? 1.1 : 1 / 1.1));
}, { passive: false });

setZoom(1);
next().then(() => { document.body.dataset.ready = "1"; });
