// The reader's case viewer: the app's CT viewer (2×2 multiplanar, one plane or 3-D; a double
// click maximises a tile), CT windows, a slice slider, answers by mouse, keyboard or both.
//
// The page is the same for every case; the case is the last part of the URL (an opaque
// per-reader token). Everything comes from /api/v1/reader, which knows only this reader.
// Time on a case counts while the page is visible and is sent with the answer.
//
// Between cases nothing is rebuilt: one viewer (one GL context) shows every case, and
// the next case's image is fetched while the reader reads the current one, so Submit shows the
// next case as soon as its answer is stored. performance marks "reader:submit" and
// "reader:drawn" let a benchmark time that (benchmarks/reader_latency.py).

import { CtViewer } from "/static/js/viewer.js";

const API = "/api/v1/reader";
// CT windows as width and level in HU.
const WINDOWS = {
  liver: { width: 150, level: 90 },
  abdomen: { width: 400, level: 50 },
  bone: { width: 1800, level: 400 },
  lung: { width: 1500, level: -600 },
};
const WINDOW_ORDER = ["liver", "abdomen", "bone", "lung"];
// The viewer's layouts, and the RAS axis the slice slider moves in each (null: 3-D).
const VIEWS = [
  { layout: "multiplanar", axis: 2, plane: "Axial" },
  { layout: "axial", axis: 2, plane: "Axial" },
  { layout: "coronal", axis: 1, plane: "Coronal" },
  { layout: "sagittal", axis: 0, plane: "Sagittal" },
  { layout: "render", axis: null, plane: "3-D" },
];
const RETRIES = 3;

const layout = document.getElementById("reader");
const settings = {
  answers: layout.dataset.studyAnswers.split(","),
  confidence: layout.dataset.studyConfidence === "yes",
  click: layout.dataset.studyClick === "yes",
  features: [],
  comment: false,
};
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (selector) => document.querySelector(selector);
const $$ = (selector) => [...document.querySelectorAll(selector)];

const state = {
  token: null, view: null, answer: null, confidence: null, click: null, features: new Set(),
  windowName: "liver", viewIndex: 0, visibleMs: 0, visibleSince: null, busy: false, pending: null,
  feedback: null, prefetched: null, prefsKey: "syntumor.reader.view",
};

// The same viewer component as every page that shows CT (static/js/viewer.js), in the reader's
// colours; one instance (one GL context) shows every case.
const viewer = new CtViewer($("#gl"), {
  niivue: {
    backColor: [0.05, 0.07, 0.09, 1],
    isOrientCube: false,
    loadingText: "",
    viewModeHotKey: "None", // our own keys; NiiVue's defaults (V, C, P) would clash
    clipPlaneHotKey: "None",
    cycleClipPlaneHotKey: "None",
    crosshairWidth: 0.4,
    crosshairGap: 12, // keep the lesion under the crosshair visible
    crosshairColor: [1, 0.45, 0.2, 0.8],
    multiplanarEqualSize: true,
    tileMargin: 4,
  },
  onSlices: () => showSlice(),
  onLayout: (name) => showView(VIEWS.findIndex((view) => view.layout === name)),
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
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    const error = new Error(detail || `request failed (${response.status})`);
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

// --- the reader's viewing preferences: kept in this browser, per reader --------------------------

function loadPrefs() {
  try {
    const saved = JSON.parse(localStorage.getItem(state.prefsKey) || "{}");
    if (saved.windowName in WINDOWS) state.windowName = saved.windowName;
    if (Number.isInteger(saved.viewIndex) && VIEWS[saved.viewIndex]) state.viewIndex = saved.viewIndex;
  } catch {
    // unreadable preferences: keep the defaults
  }
}

function savePrefs() {
  try {
    localStorage.setItem(state.prefsKey, JSON.stringify({ windowName: state.windowName, viewIndex: state.viewIndex }));
  } catch {
    // storage full or disabled: the preference lasts for this page only
  }
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
  viewer.setWindow(WINDOWS[name].width, WINDOWS[name].level);
  for (const button of $$("button[data-window]")) {
    button.setAttribute("aria-pressed", String(button.dataset.window === name));
  }
  savePrefs();
}

function applyView(index) {
  viewer.setLayout(VIEWS[index].layout); // calls showView back
}

/** A layout chosen by a button, a key or a double click on the image (which maximises a tile). */
function showView(index) {
  if (index < 0) return;
  state.viewIndex = index;
  for (const button of $$("button[data-view]")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.view) === index));
  }
  savePrefs();
  showSlice();
}

/** The slider and the slice number follow the crosshair on the view's plane. */
function showSlice() {
  const { axis, plane } = VIEWS[state.viewIndex];
  const slider = $("#slice");
  const slices = viewer.slices();
  const current = axis === null || !slices ? null : slices[axis];
  $("#slice-plane").textContent = plane;
  slider.disabled = !current;
  if (!current) {
    $("#slice-number").textContent = "– / –";
    return;
  }
  slider.max = String(current.count);
  slider.value = String(current.index);
  $("#slice-number").textContent = `${current.index} / ${current.count}`;
}

function moveToSlice(number) {
  const { axis } = VIEWS[state.viewIndex];
  if (axis !== null) viewer.setSlice(axis, number);
}

function imageName(url) {
  return url.endsWith(".gz") ? "case.nii.gz" : "case.nii";
}

async function loadImage(url) {
  const status = $("#viewer-status");
  status.hidden = false;
  status.textContent = "Loading case…";
  const cached = state.prefetched?.url === url ? await state.prefetched.buffer.catch(() => null) : null;
  state.prefetched = null;
  // The reader's window and view go with the image (the viewer applies its own on loading).
  viewer.layout = VIEWS[state.viewIndex].layout;
  viewer.window = { ...WINDOWS[state.windowName] };
  await viewer.loadImageFrom({ url, buffer: cached, name: imageName(url) });
  applyWindow(state.windowName);
  applyView(state.viewIndex);
  status.hidden = true;
}

/** Fetch the next case's image while this one is read (only the image: opening a case is
 * recorded by the server, prefetching must not be). */
function prefetchNext() {
  const next = state.view?.next;
  if (!next || !state.view.image_url.includes(encodeURIComponent(state.token))) return;
  const url = state.view.image_url.replace(encodeURIComponent(state.token), encodeURIComponent(next));
  if (state.prefetched?.url === url) return;
  const buffer = fetch(url, { credentials: "same-origin" }).then((response) => {
    if (!response.ok) throw new Error(`prefetch failed (${response.status})`);
    return response.arrayBuffer();
  });
  buffer.catch(() => {}); // a failed prefetch only means the next case loads normally
  state.prefetched = { url, buffer };
}

function drawn() {
  return new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
}

// --- answer state ----------------------------------------------------------------------------

function showChoices() {
  const open = Boolean(state.view?.can_answer) && !state.feedback;
  for (const button of $$("button[data-answer]")) {
    button.setAttribute("aria-pressed", String(button.dataset.answer === state.answer));
    button.disabled = !open;
  }
  const needsConfidence = settings.confidence && state.answer !== "unsure";
  for (const button of $$("button[data-confidence]")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.confidence) === state.confidence));
    button.disabled = !open || !needsConfidence;
  }
  for (const box of $$("#features input[type=checkbox]")) {
    box.checked = state.features.has(box.value);
    box.disabled = !open;
  }
  if ($("#comment")) $("#comment").disabled = !open;
  if (settings.click) {
    $("#mark-status").textContent = state.click ? `marked at voxel ${state.click.join(", ")}` : "no mark";
    $("#mark").disabled = !open;
    $("#unmark").hidden = !state.click || !open;
  }
  const submit = $("#submit");
  submit.disabled = !state.view;
  submit.lastChild.textContent = state.feedback || !state.view?.can_answer ? " Next case" : " Submit and next";
}

function choose(answer) {
  if (!state.view?.can_answer || state.feedback || !settings.answers.includes(answer)) return;
  state.answer = answer;
  if (answer === "unsure") state.confidence = null;
  showChoices();
  say(settings.confidence && answer !== "unsure" && !state.confidence ? "Now your confidence: 1 … 5." : "");
}

function chooseConfidence(level) {
  if (!state.view?.can_answer || state.feedback || !settings.confidence || state.answer === "unsure") return;
  if (!Number.isInteger(level) || level < 1 || level > 5) return;
  state.confidence = level;
  showChoices();
  say(state.answer ? "Press Enter or click Submit." : "Now your answer: R, S" + (settings.answers.includes("unsure") ? " or U." : "."));
}

function mark() {
  if (!settings.click || !state.view?.can_answer || state.feedback) return;
  const voxel = viewer.crosshairVoxel();
  if (!voxel) return;
  state.click = voxel;
  showChoices();
  say("Marked. Click the image (or use the arrows) and mark again to move it; Backspace removes it.");
}

function unmark() {
  if (!settings.click || !state.view?.can_answer || state.feedback) return;
  state.click = null;
  showChoices();
}

function buildQuestions(questions) {
  settings.features = questions?.features || [];
  settings.comment = Boolean(questions?.comment);
  const box = $("#features");
  box.hidden = settings.features.length === 0;
  for (const name of settings.features) {
    const label = document.createElement("label");
    label.className = "check";
    const input = Object.assign(document.createElement("input"), { type: "checkbox", value: name });
    input.addEventListener("change", () => {
      if (input.checked) state.features.add(name);
      else state.features.delete(name);
    });
    label.append(input, ` ${name}`);
    box.append(label);
  }
  $("#comment-box").hidden = !settings.comment;
}

function showFeedback(truth) {
  const box = $("#feedback");
  if (!truth) {
    box.hidden = true;
    state.feedback = null;
    return;
  }
  state.feedback = truth;
  const right = state.answer === truth;
  box.className = `feedback ${right ? "right" : "wrong"}`;
  box.textContent = `Practice: this case is ${truth}. You answered ${state.answer}` +
    (state.answer === "unsure" ? "." : right ? ": correct." : ": not correct.") +
    " Press Enter or click Next case to go on.";
  box.hidden = false;
}

// --- navigation ------------------------------------------------------------------------------

function showPosition(view) {
  const label = view.practice ? `Practice ${view.position} of ${view.total}` : `Case ${view.position} of ${view.total}`;
  $("#position").textContent = label;
  document.title = `${label} · SynTumor`;
  $("#practice-banner").hidden = !view.practice;
}

async function openCase(token, { push = false } = {}) {
  state.busy = true;
  try {
    const view = await api(`/cases/${encodeURIComponent(token)}`);
    state.token = token;
    state.view = view;
    state.answer = view.answer?.answer ?? null;
    state.confidence = view.answer?.confidence ?? null;
    state.click = view.answer?.click ?? null;
    state.features = new Set(view.answer?.features ?? []);
    if ($("#comment")) $("#comment").value = view.answer?.comment ?? "";
    state.feedback = null;
    $("#feedback").hidden = true;
    if (push) history.pushState({ token }, "", `/read/c/${encodeURIComponent(token)}`);
    showPosition(view);
    $("#prev").disabled = !view.previous;
    $("#next").disabled = !view.next;
    showChoices();
    say(view.answer ? (view.can_answer ? "Answered; you may change it." : "Answered (final).") : "");
    if (view.practice && view.truth && view.answer) showFeedback(view.truth);
    await loadImage(view.image_url);
    if (state.click) viewer.centerOnVoxel(state.click);
    viewer.nv.drawScene();
    showSlice();
    await drawn();
    performance.mark("reader:drawn");
    startClock();
    prefetchNext();
  } catch (error) {
    say(error.message, "error");
  } finally {
    state.busy = false;
  }
  if (state.pending) {
    const direction = state.pending;
    state.pending = null;
    go(direction);
  }
}

function showProgress({ answered, total }) {
  $("#progress").max = total;
  $("#progress").value = answered;
  $("#answered").textContent = `${answered} answered`;
}

function go(direction) {
  if (state.busy) {
    state.pending = direction; // pressed while a case loads: go once it is there
    return;
  }
  const target = direction > 0 ? state.view?.next : state.view?.previous;
  if (target) openCase(target, { push: true });
}

async function advance(progress) {
  if (progress.answered >= progress.total) {
    window.location.assign("/read/done");
  } else {
    await openCase(state.view.next || progress.next, { push: true });
  }
}

function answerBody() {
  const body = {
    answer: state.answer,
    confidence: settings.confidence && state.answer !== "unsure" ? state.confidence : null,
    click: state.click,
    time_ms: elapsedMs(),
  };
  if (settings.features.length) body.features = [...state.features];
  if (settings.comment) body.comment = $("#comment").value.trim() || null;
  return JSON.stringify(body);
}

async function submit() {
  if (state.busy) return say("Wait until the case has loaded.");
  if (!state.view) return;
  if (state.feedback || !state.view.can_answer) {
    state.feedback = null;
    return state.view.next ? go(1) : advance(state.progress);
  }
  if (!state.answer) return say("Choose an answer first: R, S" + (settings.answers.includes("unsure") ? " or U." : "."), "error");
  if (settings.confidence && state.answer !== "unsure" && !state.confidence) {
    return say("Choose your confidence first: 1 (a guess) … 5 (certain).", "error");
  }
  performance.mark("reader:submit");
  state.busy = true;
  say("Saving…");
  try {
    const saved = await sendWithRetry(`/cases/${encodeURIComponent(state.token)}/answer`, answerBody());
    state.busy = false;
    state.progress = saved.progress;
    showProgress(saved.progress);
    if (state.view.practice && saved.truth) {
      state.view.can_answer = false;
      showFeedback(saved.truth);
      showChoices();
      say("");
      return;
    }
    await advance(saved.progress);
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
  if (event.target.closest?.("input:not([type=range]):not([type=checkbox]), textarea, select")) return;
  const onCanvas = event.target === $("#gl");
  const onSlider = event.target === $("#slice");
  const key = event.key;
  if ((onCanvas || onSlider) && key.startsWith("Arrow")) return; // NiiVue or the slider moves
  const actions = {
    r: () => choose("real"),
    s: () => choose("synthetic"),
    u: () => choose("unsure"),
    Enter: submit,
    n: () => go(1),
    p: () => go(-1),
    ArrowRight: () => go(1),
    ArrowLeft: () => go(-1),
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
  event.preventDefault(); // e.g. Enter must not also click a focused button
  action();
}

document.addEventListener("keydown", onKey);
for (const button of $$("button[data-answer]")) {
  button.addEventListener("click", () => choose(button.dataset.answer));
}
for (const button of $$("button[data-confidence]")) {
  button.addEventListener("click", () => chooseConfidence(Number(button.dataset.confidence)));
}
for (const button of $$("button[data-window]")) {
  button.addEventListener("click", () => applyWindow(button.dataset.window));
}
for (const button of $$("button[data-view]")) {
  button.addEventListener("click", () => applyView(Number(button.dataset.view)));
}
$("#slice").addEventListener("input", (event) => moveToSlice(Number(event.target.value)));
$("#submit").addEventListener("click", submit);
$("#prev").addEventListener("click", () => go(-1));
$("#next").addEventListener("click", () => go(1));
$("#mark")?.addEventListener("click", mark);
$("#unmark")?.addEventListener("click", unmark);
window.addEventListener("popstate", () => openCase(tokenFromUrl()));

async function start() {
  await viewer.ready;
  try {
    const overview = await api("");
    state.prefsKey = `syntumor.reader.view.${overview.reader?.label ?? ""}`;
    state.progress = overview.progress;
    buildQuestions(overview.study?.questions);
    showProgress(overview.progress);
  } catch (error) {
    say(error.message, "error");
  }
  loadPrefs();
  await openCase(tokenFromUrl());
}

start();
