// The live station page: one EventSource on /events, a full redraw per snapshot (a few
// dozen elements), and the controls as POSTs to /control. No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
let source = null;
let last = null;

function text(id, value) {
  const el = $(id);
  const v = value === null || value === undefined ? "-" : String(value);
  if (el.textContent !== v) el.textContent = v;
}

// innerHTML only when it differs: most snapshots change a few figures, and every DOM write
// costs the browser layout and paint (on the machine that also runs the station).
function html(id, value) {
  const el = $(id);
  if (el.dataset.html !== value) {
    el.dataset.html = value;
    el.innerHTML = value;
  }
}

function esc(v) {
  return String(v).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

function fmtS(s) {
  if (s === null || s === undefined) return "-";
  if (s < 120) return s.toFixed(1) + " s";
  return (s / 60).toFixed(1) + " min";
}

function setConn(ok, label) {
  const el = $("conn");
  el.textContent = label;
  el.className = "badge " + (ok ? "conn-ok" : "conn-wait");
}

function renderBay(s) {
  const b = s.bay;
  text("bay-step", b.step || "idle");
  $("bay-step").dataset.step = b.step || "idle";
  text("bay-plan", b.plan && b.plan !== "swap" ? "(" + b.plan + ")" : "");
  text("bay-time", b.step ? fmtS(b.in_step_s) + " of " + fmtS(b.timeout_s) : "\u00a0");
  const bar = $("bay-bar");
  const frac = b.step && b.timeout_s ? Math.min(1, b.in_step_s / b.timeout_s) : 0;
  bar.style.width = (100 * frac).toFixed(1) + "%";
  bar.className = frac > 0.8 ? "late" : "";
  text("bay-vehicle", b.vehicle);
  text("bay-vehicle-pack", b.vehicle_pack);
  text("bay-new-pack", b.new_pack);
  text("bay-slot", b.fetch_slot ? "from " + b.fetch_slot : "");
  text("bay-fault", b.fault ? "fault: " + b.fault : "");
  text("bay-coils", b.coils === undefined ? "" : "drives on: " + (b.coils.length ? b.coils.join(", ") : "none"));
  const steps = $("steps");
  if (steps.children.length !== s.steps.length) {
    steps.innerHTML = "";
    for (const name of s.steps) {
      const li = document.createElement("li");
      li.textContent = name;
      steps.appendChild(li);
    }
  }
  s.steps.forEach((name, i) => {
    const cls = i === b.step_index ? "active" : (b.step_index >= 0 && i < b.step_index ? "done" : "");
    if (steps.children[i].className !== cls) steps.children[i].className = cls;
  });
  text("last-steps", b.last_step_s
    ? "last swap " + fmtS(b.last_swap_s) + ": " + s.steps.map((n, i) => n + " " + b.last_step_s[i]).join(", ")
    : "");
}

function renderRack(s) {
  const rack = $("rack");
  if (rack.children.length !== s.slots.length) {
    rack.innerHTML = "";
    for (const slot of s.slots) {
      const d = document.createElement("div");
      d.className = "slot";
      d.dataset.slot = slot.id;
      d.innerHTML = '<span class="st"></span><div class="sid"></div><div class="pack"></div>' +
        '<div class="soc-bar"><div></div></div><div class="soc"></div><div class="temp"></div>' +
        '<div class="kw"></div>';
      d.querySelector(".sid").textContent = slot.id;
      rack.appendChild(d);
    }
  }
  const counts = {};
  s.slots.forEach((slot, i) => {
    const d = rack.children[i];
    counts[slot.state] = (counts[slot.state] || 0) + 1;
    const cls = "slot state-" + slot.state + (slot.for_bay ? " for-bay" : "") + (slot.temp >= 45 ? " hot" : "");
    if (d.className !== cls) d.className = cls;
    const key = JSON.stringify(slot);
    if (d.dataset.key === key) return;  // nothing new in this slot
    d.dataset.key = key;
    d.dataset.state = slot.state;
    d.dataset.soc = slot.soc;
    d.title = slot.reason ? slot.state + ": " + slot.reason : slot.state;
    d.querySelector(".st").textContent = slot.for_bay ? "for bay" : slot.state;
    d.querySelector(".pack").textContent = slot.pack ? "#" + slot.pack + " " + (slot.type || "?") : "no pack";
    d.querySelector(".soc-bar > div").style.width = slot.soc + "%";
    d.querySelector(".soc").textContent = slot.pack ? "SoC " + slot.soc.toFixed(1) + " %" : "";
    d.querySelector(".temp").textContent = slot.pack ? slot.temp.toFixed(1) + " \u00b0C" : "";
    d.querySelector(".kw").textContent = slot.kw ? slot.kw.toFixed(1) + " kW" : (slot.online ? "" : "offline");
  });
  text("rack-summary", Object.entries(counts).map(([k, v]) => v + " " + k).join(", ") +
    (s.isolation ? ", " + s.isolation + " isolated" : ""));
}

function renderGrid(s) {
  const g = s.grid;
  text("grid-kw", g.kw.toFixed(1));
  text("grid-cap", g.cap_kw.toFixed(0));
  const band = $("band");
  band.textContent = g.band ? g.band + " " + g.price + (g.slowed ? ", slowed" : "") : "no tariff";
  band.className = "badge " + (g.band ? "band-" + g.band : "");
  const cap = Math.max(g.cap_kw, ...g.history.map((p) => p[1]), 1);
  const t1 = s.t_s;
  const x = (t) => (360 * (1 - (t1 - t) / 3600)).toFixed(1);
  const y = (kw) => (120 - 110 * kw / cap).toFixed(1);
  const pts = g.history.map((p) => x(p[0]) + "," + y(p[1])).join(" ");
  html("grid-chart", '<line x1="0" x2="360" y1="' + y(g.cap_kw) + '" y2="' + y(g.cap_kw) +
    '" stroke="#c8322c" stroke-dasharray="4 3"/>' +
    '<polyline fill="none" stroke="#2f6fd1" stroke-width="2" points="' + pts + '"/>');
}

function renderLists(s) {
  html("alarms", s.alarms.length
    ? s.alarms.map((a) => '<li data-key="' + esc(a.key) + '" data-code="' + esc(a.code) + '">' +
      esc((a.slot || "station") + ": " + a.code + (a.detail ? " (" + a.detail + ")" : "")) + "</li>").join("")
    : '<li class="none">none latched</li>');
  html("journal", s.journal.map((r) => "<li>" + esc(r.seq + " " + r.kind + " " + JSON.stringify(r.fields)) +
    "</li>").join(""));
  const k = s.kpi;
  const unit = (v, u) => (v === null || v === undefined ? "-" : v + u);
  const rows = [["swaps", k.swaps], ["arrived", k.arrived], ["turned away", k.balked + k.reneged + k.not_swapped],
    ["mean wait", fmtS(k.mean_wait_s)], ["grid energy", unit(k.grid_kwh, " kWh")], ["peak", unit(k.peak_kw, " kW")],
    ["cost", unit(k.cost, "")]];
  html("kpis", rows.map(([a, b]) => "<dt>" + a + "</dt><dd>" + esc(b) + "</dd>").join(""));
  html("queue", s.queue.length
    ? s.queue.map((q) => "<li>vehicle " + esc(q.vehicle) + ", " + fmtS(q.waiting_s) + "</li>").join("")
    : "<li>empty</li>");
}

function render(s) {
  last = s;
  document.body.dataset.seq = s.seq;
  document.body.dataset.t = s.t_s;
  document.body.dataset.paused = s.paused ? "1" : "0";
  document.body.dataset.finished = s.finished ? "1" : "0";
  text("scenario", s.scenario);
  text("clock", s.clock + (s.finished ? " (finished)" : s.paused ? " (paused)" : ""));
  const st = $("state");
  st.textContent = s.state + (s.hold && s.hold.length ? ": " + s.hold.join(", ") : "");
  st.className = "badge state-" + s.state;
  text("watchers", s.clients > 1 ? s.clients + " watching" : "");
  $("pause").textContent = s.paused ? "resume" : "pause";
  for (const b of document.querySelectorAll("[data-speed]")) {
    b.classList.toggle("on", b.dataset.speed === s.speed);
  }
  const sel = $("dropout-slot");
  if (sel.options.length !== s.slots.length) {
    sel.innerHTML = s.slots.map((x) => "<option>" + x.id + "</option>").join("");
  }
  renderBay(s);
  renderRack(s);
  renderGrid(s);
  renderLists(s);
}

async function control(msg) {
  text("control-error", "");
  try {
    const r = await fetch("/control", { method: "POST", headers: { "Content-Type": "application/json" },
                                        body: JSON.stringify(msg) });
    const body = await r.json();
    if (!r.ok) text("control-error", body.error || r.statusText);
  } catch (e) {
    text("control-error", "no answer: " + e);
  }
}

function connect() {
  source = new EventSource("/events");
  source.onopen = () => setConn(true, "live");
  source.onmessage = (ev) => {
    setConn(true, "live");
    render(JSON.parse(ev.data));
  };
  source.onerror = () => {
    setConn(false, "reconnecting");
    if (source.readyState === EventSource.CLOSED) {  // refused for good: start over
      source.close();
      setTimeout(connect, 1000);
    }
  };
}

// A finished run's frames (swapstation replay): a scrubber over time, no stream.
let frameTimes = [];
let playing = null;

async function showFrame(i) {
  const r = await fetch("/frame/" + i);
  if (!r.ok) {
    text("control-error", (await r.json()).error || r.statusText);
    return;
  }
  render(await r.json());
  text("scrub-label", (i + 1) + " / " + frameTimes.length);
}

function play() {
  if (playing !== null) {
    clearInterval(playing);
    playing = null;
    text("play", "play");
    return;
  }
  text("play", "stop");
  playing = setInterval(() => {
    const s = $("scrub");
    if (Number(s.value) >= frameTimes.length - 1) return play();  // at the end: stop
    s.value = Number(s.value) + 1;
    showFrame(Number(s.value));
  }, 200);
}

async function replay(count) {
  setConn(true, "replay");
  $("replay-controls").hidden = false;
  frameTimes = (await (await fetch("/frames")).json()).t_s;
  const s = $("scrub");
  s.max = count - 1;
  s.addEventListener("input", () => showFrame(Number(s.value)));
  $("play").addEventListener("click", play);
  showFrame(0);
}

// The controls this run has (a simulation: pause and speed; the rig: the operator's actions;
// a replay: the scrubber).
fetch("/info").then((r) => r.json()).then((info) => {
  $("sim-controls").hidden = !info.controls.includes("pause");
  $("hil-controls").hidden = !info.controls.includes("estop");
  if (info.replay) replay(info.replay);
  else connect();
}).catch(() => connect());
$("ack").addEventListener("click", () => control({ action: "ack" }));
$("confirm").addEventListener("click", () => control({ action: "confirm" }));
$("estop-press").addEventListener("click", () => control({ action: "estop", pressed: true }));
$("estop-release").addEventListener("click", () => control({ action: "estop", pressed: false }));
$("dropout-on").addEventListener("click",
  () => control({ action: "charger_dropout", slot: $("dropout-slot").value, on: true }));
$("dropout-off").addEventListener("click",
  () => control({ action: "charger_dropout", slot: $("dropout-slot").value, on: false }));
$("pause").addEventListener("click", () => control({ action: last && last.paused ? "resume" : "pause" }));
for (const b of document.querySelectorAll("[data-speed]")) {
  b.addEventListener("click", () => control({ action: "speed", speed: b.dataset.speed }));
}
