// The reader's case viewer: NiiVue multiplanar + 3-D, CT windows, answers by keyboard or mouse.
//
// The page is the same for every case; the case is the last part of the URL (an opaque
// per-reader token). Everything comes from /api/v1/reader, which knows only this reader.
// Time on a case counts while the page is visible and is sent with the answer.

import { Niivue } from "/vendor/niivue/index.js";

const API = "/api/v1/reader";
const WINDOWS = {
  liver: [15, 165], // W 150, L 90
  abdomen: [-150, 250], // W 400, L 50
  bone: [-500, 1300], // W 1800, L 400
  lung: [-1350, 150], // W 1500, L -600
};
const WINDOW_ORDER = ["liver", "abdomen", "bone", "lung"];
// [slice type, show 3-D in the multiplanar layout]: NiiVue's SLICE_TYPE and SHOW_RENDER values.
const VIEWS = [[3, 1], [0, 0], [1, 0], [2, 0], [4, 0]];
const RETRIES = 3;

const layout = document.querySelector(".reader-layout");
const settings = {
  answers: layout.dataset.answers.split(","),
  confidence: layout.dataset.confidence === "yes",
  click: layout.dataset.click === "yes",
};
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (selector) => document.querySelector(selector);

const state = {
  token: null, view: null, answer: null, confidence: null, click: null,
  windowName: "liver", viewIndex: 0, visibleMs: 0, visibleSince: null, busy: false, pending: null,
};

const nv = new Niivue({
  backColor: [0.05, 0.07, 0.09, 1],
  show3Dcrosshair: true,
  isOrientCube: false,
  dragAndDropEnabled: false,
  loadingText: "",
  viewModeHotKey: "None", // our own keys; NiiVue's defaults (V, C, P) would clash
  clipPlaneHotKey: "None",
  cycleClipPlaneHotKey: "None",
  crosshairWidth: 0.4,
  crosshairGap: 12, // keep the lesion under the crosshair visible
  crosshairColor: [1, 0.45, 0.2, 0.8],
});

function tokenFromUrl() {
  return decodeURIComponent(window.location.pathname.split("/").pop());
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (options.body) headers["Content-Type"] = "application/json";
  if (options.method && options.method !== "GET") headers["X-CSRF-Token"] = csrf;
  const response = await fetch(`${API}${path}`, { credentials: "same-origin", ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.detail || `request failed (${response.status})`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function say(text, kind = "") {
  const message = $("#message");
  message.textContent = text;
  message.className = `message ${kind}`;
}

// --- time on the case: counted only while the page is visible ---------------------------------

function startClock() {
  state.visibleMs = 0;
  state.visibleSince = document.visibilityState === "visible" ? performance.now() : null;
}

function elapsedMs() {
  const running = state.visibleSince === null ? 0 : performance.now() - state.visibleSince;
  return Math.round(state.visibleMs + running);
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") {
    state.visibleSince = performance.now();
  } else if (state.visibleSince !== null) {
    state.visibleMs += performance.now() - state.visibleSince;
    state.visibleSince = null;
  }
});

// --- viewer ----------------------------------------------------------------------------------

function applyWindow(name) {
  state.windowName = name;
  const volume = nv.volumes[0];
  if (volume) {
    [volume.cal_min, volume.cal_max] = WINDOWS[name];
    nv.updateGLVolume();
  }
  for (const button of document.querySelectorAll("[data-window]")) {
    button.setAttribute("aria-pressed", String(button.dataset.window === name));
  }
}

function applyView(index) {
  state.viewIndex = index;
  const [sliceType, showRender] = VIEWS[index];
  nv.opts.multiplanarShowRender = showRender;
  nv.setSliceType(sliceType);
  for (const button of document.querySelectorAll("[data-view]")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.view) === index));
  }
}

async function loadImage(url) {
  const status = $("#viewer-status");
  status.hidden = false;
  status.textContent = "Loading case…";
  await nv.loadVolumes([{ url, colormap: "gray" }]);
  applyWindow(state.windowName);
  applyView(state.viewIndex);
  status.hidden = true;
}

// --- answer state ----------------------------------------------------------------------------

function showChoices() {
  for (const button of document.querySelectorAll("[data-answer]")) {
    button.setAttribute("aria-pressed", String(button.dataset.answer === state.answer));
    button.disabled = !state.view.can_answer;
  }
  const needsConfidence = settings.confidence && state.answer !== "unsure";
  for (const button of document.querySelectorAll("[data-confidence]")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.confidence) === state.confidence));
    button.disabled = !state.view.can_answer || !needsConfidence;
  }
  const markStatus = $("#mark-status");
  if (markStatus) {
    markStatus.textContent = state.click ? `marked at voxel ${state.click.join(", ")}` : "no mark";
    $("#mark").disabled = !state.view.can_answer;
  }
  $("#submit").disabled = !state.view.can_answer;
}

function choose(answer) {
  if (!state.view?.can_answer || !settings.answers.includes(answer)) return;
  state.answer = answer;
  if (answer === "unsure") state.confidence = null;
  showChoices();
  say(settings.confidence && answer !== "unsure" && !state.confidence ? "Now your confidence: 1 … 5." : "");
}

function chooseConfidence(level) {
  if (!state.view?.can_answer || !settings.confidence || state.answer === "unsure") return;
  state.confidence = level;
  showChoices();
  say(state.answer ? "Press Enter to submit." : "Now your answer: R, S" + (settings.answers.includes("unsure") ? " or U." : "."));
}

function mark() {
  if (!settings.click || !state.view?.can_answer || !nv.volumes[0]) return;
  const voxel = nv.frac2vox(nv.scene.crosshairPos);
  state.click = Array.from(voxel, (v) => Math.round(v));
  showChoices();
  say("Marked. Move the crosshair and press X again to move the mark; Backspace removes it.");
}

function unmark() {
  if (!settings.click || !state.view?.can_answer) return;
  state.click = null;
  showChoices();
}

// --- navigation ------------------------------------------------------------------------------

async function openCase(token, { push = false } = {}) {
  state.busy = true;
  try {
    const view = await api(`/cases/${encodeURIComponent(token)}`);
    state.token = token;
    state.view = view;
    state.answer = view.answer?.answer ?? null;
    state.confidence = view.answer?.confidence ?? null;
    state.click = view.answer?.click ?? null;
    if (push) history.pushState({ token }, "", `/read/c/${encodeURIComponent(token)}`);
    $("#position").textContent = `Case ${view.position} of ${view.total}`;
    document.title = `Case ${view.position} of ${view.total} · SynTumor`;
    $("#prev").disabled = !view.previous;
    $("#next").disabled = !view.next;
    showChoices();
    say(view.answer ? (view.can_answer ? "Answered; you may change it." : "Answered (final).") : "");
    await loadImage(view.image_url);
    if (state.click && nv.volumes[0]) {
      nv.scene.crosshairPos = nv.vox2frac(state.click);
      nv.drawScene();
    }
    startClock();
  } catch (error) {
    say(error.message, "error");
  } finally {
    state.busy = false;
  }
  refreshProgress().catch((error) => say(error.message, "error"));
  if (state.pending) {
    const direction = state.pending;
    state.pending = null;
    go(direction);
  }
}

async function refreshProgress() {
  const overview = await api("");
  const { answered, total } = overview.progress;
  $("#progress").max = total;
  $("#progress").value = answered;
  $("#answered").textContent = `${answered} answered`;
  return overview;
}

function go(direction) {
  if (state.busy) {
    state.pending = direction; // pressed while a case loads: go once it is there
    return;
  }
  const target = direction > 0 ? state.view?.next : state.view?.previous;
  if (target) openCase(target, { push: true });
}

async function submit() {
  if (state.busy) return say("Wait until the case has loaded.");
  if (!state.view) return;
  if (!state.view.can_answer) return go(1);
  if (!state.answer) return say("Choose an answer first: R, S" + (settings.answers.includes("unsure") ? " or U." : "."), "error");
  if (settings.confidence && state.answer !== "unsure" && !state.confidence) {
    return say("Choose your confidence first: 1 (a guess) … 5 (certain).", "error");
  }
  const body = JSON.stringify({
    answer: state.answer,
    confidence: settings.confidence && state.answer !== "unsure" ? state.confidence : null,
    click: state.click,
    time_ms: elapsedMs(),
  });
  state.busy = true;
  say("Saving…");
  try {
    const saved = await sendWithRetry(`/cases/${encodeURIComponent(state.token)}/answer`, body);
    state.busy = false;
    if (saved.progress.answered >= saved.progress.total) {
      window.location.assign("/read/done");
    } else if (state.view.next) {
      await openCase(state.view.next, { push: true });
    } else {
      await openCase(saved.progress.next, { push: true });
    }
  } catch (error) {
    state.busy = false;
    say(error.message, "error");
  }
}

async function sendWithRetry(path, body) {
  // The server stores one answer per reading: sending the same answer again is harmless.
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await api(path, { method: "PUT", body });
    } catch (error) {
      if (error.status || attempt >= RETRIES) throw error;
      await new Promise((resolve) => setTimeout(resolve, 400 * attempt));
    }
  }
}

// --- input -----------------------------------------------------------------------------------

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest?.("input, textarea, select")) return;
  const onCanvas = event.target === $("#gl");
  const key = event.key;
  const actions = {
    r: () => choose("real"),
    s: () => choose("synthetic"),
    u: () => choose("unsure"),
    Enter: submit,
    n: () => go(1),
    p: () => go(-1),
    ArrowRight: () => !onCanvas && go(1),
    ArrowLeft: () => !onCanvas && go(-1),
    w: () => applyWindow(WINDOW_ORDER[(WINDOW_ORDER.indexOf(state.windowName) + 1) % WINDOW_ORDER.length]),
    v: () => applyView((state.viewIndex + 1) % VIEWS.length),
    x: mark,
    Backspace: unmark,
    Delete: unmark,
    "?": () => { $("#help").open = !$("#help").open; },
  };
  const action = actions[key.length === 1 ? key.toLowerCase() : key] ??
    (/^[1-5]$/.test(key) ? () => chooseConfidence(Number(key)) : null);
  if (!action) return;
  if (onCanvas && key.startsWith("Arrow")) return; // NiiVue moves the crosshair
  event.preventDefault(); // e.g. Enter must not also click a focused button
  action();
}

document.addEventListener("keydown", onKey);
for (const button of document.querySelectorAll("[data-answer]")) {
  button.addEventListener("click", () => choose(button.dataset.answer));
}
for (const button of document.querySelectorAll("[data-confidence]")) {
  button.addEventListener("click", () => chooseConfidence(Number(button.dataset.confidence)));
}
for (const button of document.querySelectorAll("[data-window]")) {
  button.addEventListener("click", () => applyWindow(button.dataset.window));
}
for (const button of document.querySelectorAll("[data-view]")) {
  button.addEventListener("click", () => applyView(Number(button.dataset.view)));
}
$("#submit").addEventListener("click", submit);
$("#prev").addEventListener("click", () => go(-1));
$("#next").addEventListener("click", () => go(1));
$("#mark")?.addEventListener("click", mark);
window.addEventListener("popstate", () => openCase(tokenFromUrl()));

await nv.attachToCanvas($("#gl"));
openCase(tokenFromUrl());
