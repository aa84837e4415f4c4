// The volume list: tick images and segment them all with one click ("Segment selected"); each
// row's Segmentation cell follows its newest segmentation's job (status, place in the queue,
// time left) until it finishes.

import { API, getJSON, isFinished, postJSON } from "./api.js";
import { loadModelPicker } from "./model_picker.js";
import { describeTiming, el, showError } from "./ui.js";

const POLL_MS = 1500;
const modelSelect = document.getElementById("batch-model");
const button = document.getElementById("batch-segment");
const errorBox = document.getElementById("batch-error");
const statusBox = document.getElementById("batch-status");
const selectAll = document.getElementById("select-all");
const boxes = [...document.querySelectorAll("input.pick-volume")];
let modelReady = false;
let sending = false;
let polling = false;

function chosen() {
  return boxes.filter((box) => box.checked).map((box) => Number(box.value));
}

function updateButton() {
  const count = chosen().length;
  button.textContent = count ? `Segment selected (${count})` : "Segment selected";
  button.disabled = !count || !modelReady || sending;
  selectAll.checked = count > 0 && count === boxes.length;
  selectAll.indeterminate = count > 0 && count < boxes.length;
}

/** A row's Segmentation cell shows the job's status and, while it waits or runs, its timing. */
function showJob(cell, job) {
  cell.dataset.status = job.status;
  const badge = cell.querySelector(".badge");
  badge.textContent = job.status;
  badge.className = `badge ${job.status}`;
  cell.querySelector(".job-eta").textContent = describeTiming(job);
}

function showSegmentation(segmentation) {
  const cell = document.querySelector(`tr[data-volume="${segmentation.image_id}"] .segmentation-cell`);
  if (!cell) return;
  const count = Number(cell.dataset.count || 0) + 1;
  cell.dataset.segmentation = segmentation.id;
  cell.dataset.job = segmentation.job.id;
  cell.dataset.count = count;
  cell.replaceChildren(
    el("a", { href: `/segmentations/${segmentation.id}` }, `Segmentation ${segmentation.id}`),
    " ",
    el("span", { class: "badge" }),
    " ",
    el("small", { class: "job-eta muted" }),
    ...(count > 1 ? [" ", el("a", { class: "muted all-segmentations", href: `/volumes/${segmentation.image_id}#history-title` }, `all ${count}`)] : []),
  );
  showJob(cell, segmentation.job);
}

async function poll() {
  const open = [...document.querySelectorAll(".segmentation-cell[data-job]")].filter((cell) => !isFinished(cell.dataset.status));
  for (const cell of open) {
    try {
      showJob(cell, await getJSON(`${API}/jobs/${cell.dataset.job}`));
    } catch (error) {
      if (error.status && error.status < 500) cell.dataset.status = "cancelled"; // gone: stop asking
    }
  }
  polling = open.length > 0;
  if (polling) setTimeout(poll, POLL_MS);
}

function startPolling() {
  if (!polling) {
    polling = true;
    setTimeout(poll, POLL_MS);
  }
}

async function segmentSelected() {
  const imageIds = chosen();
  if (!imageIds.length) return;
  sending = true;
  updateButton();
  showError(errorBox, "");
  statusBox.textContent = `Queuing ${imageIds.length} segmentation(s)…`;
  try {
    const batch = await postJSON(`${API}/segmentations/batch`, { image_ids: imageIds, model: modelSelect.value });
    batch.items.forEach(showSegmentation);
    boxes.forEach((box) => {
      box.checked = false;
    });
    const names = batch.items.map((item) => item.id).join(", ");
    statusBox.textContent = `Queued ${batch.total} segmentation(s): ${names}. Their progress is in the Segmentation column.`;
    startPolling();
  } catch (error) {
    statusBox.textContent = "";
    showError(errorBox, `Nothing was queued: ${error.message}`);
  } finally {
    sending = false;
    updateButton();
  }
}

boxes.forEach((box) => box.addEventListener("change", updateButton));
selectAll.addEventListener("change", () => {
  boxes.forEach((box) => {
    box.checked = selectAll.checked;
  });
  updateButton();
});
button.addEventListener("click", segmentSelected);

document.querySelectorAll(".segmentation-cell[data-job]").forEach((cell) => {
  if (!isFinished(cell.dataset.status)) startPolling();
});
try {
  const { model, problem } = await loadModelPicker(modelSelect);
  modelReady = Boolean(model);
  if (problem) showError(errorBox, problem);
} catch (error) {
  showError(errorBox, `The models could not be listed: ${error.message}`);
}
updateButton();
