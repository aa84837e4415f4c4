// The volume page: the CT in NiiVue with its label maps as overlays, and the segmentation form.

import { API, postJSON } from "./api.js";
import { loadModelPicker } from "./model_picker.js";
import { presentSegmentation } from "./segmentation_result.js";
import { el, pageData, showError } from "./ui.js";
import { startPlayground } from "./playground.js";
import { ViewerPanel } from "./viewer_panel.js";

const data = pageData();
const volume = data.volume;
const panel = new ViewerPanel(document.getElementById("viewer"));
panel.setLabelMaps(volume.label_maps);

const form = document.getElementById("segment-form");
const modelSelect = document.getElementById("segment-model");
const button = document.getElementById("segment-button");
const errorBox = document.getElementById("segment-error");
const parts = {
  progress: document.getElementById("segment-progress"),
  result: document.getElementById("segment-result"),
  lesions: document.getElementById("lesions"),
  downloads: document.getElementById("segment-downloads"),
};

async function loadModels() {
  try {
    const { model, problem } = await loadModelPicker(modelSelect);
    if (problem) showError(errorBox, problem);
    button.disabled = !model;
  } catch (error) {
    showError(errorBox, `The models could not be listed: ${error.message}`);
  }
}

function listSegmentation(segmentation) {
  const list = document.getElementById("segmentation-list");
  list.querySelectorAll("li.muted").forEach((item) => item.remove());
  const status = segmentation.job.status;
  list.prepend(
    el(
      "li",
      {},
      el("a", { href: `/segmentations/${segmentation.id}` }, `Segmentation ${segmentation.id}`),
      ` · ${segmentation.model} · `,
      el("span", { class: `badge ${status}` }, status),
    ),
  );
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(errorBox, "");
  const overlap = Number(document.getElementById("segment-overlap").value);
  if (!(overlap >= 0 && overlap < 1)) {
    showError(errorBox, "Overlap must be at least 0 and below 1.");
    return;
  }
  const minVolume = Number(document.getElementById("segment-min-lesion").value);
  if (!(minVolume >= 0)) {
    showError(errorBox, "The smallest lesion must be 0 mm³ or more.");
    return;
  }
  button.disabled = true;
  parts.result.hidden = true;
  parts.progress.querySelector(".job-links").replaceChildren();
  try {
    const segmentation = await postJSON(`${API}/segmentations`, {
      image_id: volume.id,
      model: modelSelect.value,
      mode: document.getElementById("segment-mode").value,
      overlap,
      lesion_filter: { min_volume_mm3: minVolume, organ_contact: document.getElementById("segment-organ-contact").checked },
    });
    const done = await presentSegmentation(panel, segmentation, parts);
    listSegmentation(done);
    if (done.job.status !== "succeeded") showError(errorBox, `The segmentation ${done.job.status}: ${done.job.error || "no result"}`);
  } catch (error) {
    showError(errorBox, `The segmentation could not run: ${error.message}`);
  } finally {
    button.disabled = false;
  }
});

button.disabled = true;
loadModels();
await panel.loadImages([volume]);
if (data.overlay) await panel.showOverlay(data.overlay);
startPlayground(panel, volume).catch((error) => {
  const status = document.getElementById("pg-status");
  if (status) status.textContent = `The playground could not start: ${error.message}`;
});
