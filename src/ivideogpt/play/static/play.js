// ivideogpt play: drive the world model. Plain JavaScript, no dependencies; talks to the /api routes.
"use strict";

const $ = (id) => document.getElementById(id);
const view = {
  info: null,          // /api/info: action dimension and bounds, Push-T or not, starts available
  session: null,       // id of this tab's session
  busy: false,         // a request is in flight
  queued: null,        // [action, click time] asked for meanwhile (a drag sends only the latest)
  lastAction: null,    // what "step" sends again
  clickToFrame: null,  // the previous step's click-to-frame time, reported with the next step
  latencies: [],       // click-to-frame times of this tab (ms)
};

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const reply = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(reply.detail || `${method} ${path}: HTTP ${response.status}`);
  }
  return reply;
}

function say(message) { $("status").textContent = message || ""; }

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

// --- building the page from the model's facts --------------------------------------------------
function setUp(info) {
  view.info = info;
  const starts = info.starts;
  $("model-info").textContent = `${info.checkpoint} · ${info.action_dim}-d actions · context ${info.context_frames} ` +
    `frame(s), window ${info.window} · ${info.clips} held-out clips`;
  for (const option of $("start-kind").options) option.disabled = !starts.includes(option.value);
  if (!info.clips) $("start-kind").options[1].textContent = "held-out clip (none found: ivideogpt play --data DIR)";
  $("start-kind").value = starts[0];
  $("clip").max = Math.max(0, info.clips - 1);
  $("real-field").hidden = !info.pusht;
  $("real").checked = info.pusht;
  $("pusht-help").hidden = !info.pusht;
  $("seed").value = Math.floor(Math.random() * 1000);
  showStartFields();
  if (!info.pusht) buildSliders(info);
}

function showStartFields() {
  const kind = $("start-kind").value;
  $("seed-field").hidden = kind !== "reset";
  $("clip-field").hidden = kind !== "clip";
}

function buildSliders(info) {
  const box = $("sliders");
  box.replaceChildren();
  for (let d = 0; d < info.action_dim; d++) {
    const low = info.action_low[d], high = info.action_high[d];
    const label = document.createElement("label");
    const slider = document.createElement("input");
    Object.assign(slider, { type: "range", min: low, max: high, step: (high - low) / 100 || 1,
                            value: (low + high) / 2, id: `action-${d}` });
    const shown = document.createElement("output");
    shown.textContent = slider.value;
    slider.addEventListener("input", () => { shown.textContent = Number(slider.value).toFixed(2); });
    label.append(`action ${d}`, slider, shown);
    box.append(label);
  }
}

function sliderAction() {
  return Array.from({ length: view.info.action_dim }, (_, d) => Number($(`action-${d}`).value));
}

// --- sessions ----------------------------------------------------------------------------------
async function newSession() {
  const kind = $("start-kind").value;
  const body = { start: kind, real: view.info.pusht && $("real").checked };
  if (kind === "reset") body.seed = Number($("seed").value);
  else body.clip = Number($("clip").value);
  say("starting…");
  try {
    const reply = await api("POST", "/api/sessions", body);
    if (view.session) api("DELETE", `/api/sessions/${view.session}`).catch(() => {});
    view.session = reply.session;
    view.lastAction = null;
    view.latencies = [];
    $("export-gif").href = `/api/sessions/${reply.session}/export.gif`;
    $("export-mp4").href = `/api/sessions/${reply.session}/export.mp4`;
    $("target").hidden = true;
    await show(reply);
    say("");
  } catch (error) {
    say(error.message);
  }
}

async function show(reply) {
  const dream = $("dream");
  dream.src = reply.frame;
  await dream.decode().catch(() => {});
  const real = reply.real_frame !== null;
  $("real-panel").hidden = !real;
  $("psnr-figure").hidden = !real;
  if (real) $("real-frame").src = reply.real_frame;
  $("step-count").textContent = `step ${reply.step}`;
  $("undo").disabled = !reply.can_undo;
  const psnr = reply.psnr.length ? reply.psnr[reply.psnr.length - 1] : null;
  $("psnr-now").textContent = psnr === null || psnr === undefined ? "" : `· PSNR ${psnr.toFixed(1)} dB`;
  plot($("reward-plot"), [reply.rewards, real ? reply.real_rewards : []], ["#1f6fd1", "#999"]);
  if (real) plot($("psnr-plot"), [reply.psnr], ["#2a9d4b"]);
  $("reward-legend").textContent = real ? " (blue: dream, grey: real)" : "";
}

// --- stepping ----------------------------------------------------------------------------------
// clicked: performance.now() of the click (or key press) that asked for this action
function step(action, clicked) {
  if (!view.session) return;
  if (view.busy) { view.queued = [action, clicked]; return; }
  view.busy = true;
  view.lastAction = action;
  send(action, clicked);
}

async function send(action, clicked) {
  const body = { action };
  if (view.clickToFrame !== null) body.click_to_frame_ms = view.clickToFrame;
  view.clickToFrame = null;
  try {
    const reply = await api("POST", `/api/sessions/${view.session}/step`, body);
    await show(reply);
    await new Promise(requestAnimationFrame);  // the frame is on screen
    const elapsed = performance.now() - clicked;
    view.clickToFrame = elapsed;
    view.latencies.push(elapsed);
    showLatency(elapsed, reply.latency);
    say("");
  } catch (error) {
    say(error.message);
  }
  view.busy = false;
  if (view.queued) {
    const [next, clicked] = view.queued;
    view.queued = null;
    step(next, clicked);
  }
}

function showLatency(elapsed, server) {
  const ms = (v) => (v === null || v === undefined ? "–" : `${v.toFixed(0)} ms`);
  let text = `click → frame ${ms(elapsed)} (median ${ms(median(view.latencies))} over ${view.latencies.length} steps)`;
  text += ` · server medians: transformer ${ms(server.transformer)}, decoder ${ms(server.decoder)}`;
  if (server.prefill !== null) text += `, window re-prefill ${ms(server.prefill)}`;
  if (server.simulator !== null) text += `, simulator ${ms(server.simulator)}`;
  text += `, whole request ${ms(server.server)}`;
  $("latency").textContent = text;
}

function boardTarget(event) {
  const box = $("dream").getBoundingClientRect();
  const fx = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
  const fy = Math.min(1, Math.max(0, (event.clientY - box.top) / box.height));
  const target = $("target");
  target.style.left = `${fx * box.width}px`;
  target.style.top = `${fy * box.height}px`;
  target.hidden = false;
  const [lowX, lowY] = view.info.action_low, [highX, highY] = view.info.action_high;
  return [lowX + fx * (highX - lowX), lowY + fy * (highY - lowY)];
}

function stepAgain() {
  const clicked = performance.now();
  if (!view.info.pusht) return step(sliderAction(), clicked);
  const info = view.info;
  step(view.lastAction || info.action_low.map((low, d) => (low + info.action_high[d]) / 2), clicked);
}

async function control(path) {
  if (!view.session || view.busy) return;
  view.busy = true;
  try {
    await show(await api("POST", `/api/sessions/${view.session}/${path}`));
    say("");
  } catch (error) {
    say(error.message);
  }
  view.busy = false;
}

function wire() {
  const screen = $("dream-screen");
  let dragging = false;
  screen.addEventListener("pointerdown", (event) => {
    if (!view.info.pusht) return;
    dragging = true;
    screen.setPointerCapture(event.pointerId);
    step(boardTarget(event), performance.now());
  });
  screen.addEventListener("pointermove", (event) => {
    if (dragging) step(boardTarget(event), performance.now());
  });
  const stop = () => { dragging = false; };
  screen.addEventListener("pointerup", stop);
  screen.addEventListener("pointercancel", stop);
  $("step").addEventListener("click", stepAgain);
  $("undo").addEventListener("click", () => control("undo"));
  $("reset").addEventListener("click", () => control("reset"));
  $("new-session").addEventListener("click", newSession);
  $("start-kind").addEventListener("change", showStartFields);
  document.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement && event.target.type !== "range") return;
    if (event.key === " ") { event.preventDefault(); stepAgain(); }
    else if (event.key === "u") control("undo");
    else if (event.key === "r") control("reset");
    else if (!view.info.pusht && event.key.startsWith("Arrow")) nudge(event);
  });
}

function nudge(event) {
  const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowDown: [1, -1], ArrowUp: [1, 1] };
  const [dim, sign] = moves[event.key];
  const slider = $(`action-${dim}`);
  if (!slider) return;
  event.preventDefault();
  slider.value = Number(slider.value) + sign * 10 * Number(slider.step);
  slider.dispatchEvent(new Event("input"));
  stepAgain();
}

// --- a small line plot -------------------------------------------------------------------------
function plot(canvas, series, colours) {
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  const values = series.flat().filter((v) => v !== null && v !== undefined);
  if (!values.length) return;
  let low = Math.min(...values), high = Math.max(...values);
  if (high - low < 1e-6) { low -= 0.5; high += 0.5; }
  const length = Math.max(2, ...series.map((s) => s.length));
  context.fillStyle = "#777";
  context.font = "10px sans-serif";
  context.fillText(high.toFixed(2), 2, 10);
  context.fillText(low.toFixed(2), 2, height - 3);
  series.forEach((points, k) => {
    context.strokeStyle = colours[k];
    context.lineWidth = 1.5;
    context.beginPath();
    points.forEach((v, i) => {
      if (v === null || v === undefined) return;
      const x = 36 + (i / (length - 1)) * (width - 42);
      const y = height - 6 - ((v - low) / (high - low)) * (height - 14);
      if (i === 0) context.moveTo(x, y); else context.lineTo(x, y);
    });
    context.stroke();
  });
}

// --- start -------------------------------------------------------------------------------------
(async () => {
  wire();
  try {
    setUp(await api("GET", "/api/info"));
    await newSession();
  } catch (error) {
    say(error.message);
  }
})();
