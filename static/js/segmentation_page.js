// The page of one segmentation: follows its job, then shows the mask over the CT and the lesions.

import { presentSegmentation } from "./segmentation_result.js";
import { el, pageData, showError } from "./ui.js";
import { ViewerPanel } from "./viewer_panel.js";

const data = pageData();
const errorBox = document.getElementById("segment-error");
const parts = {
  progress: document.getElementById("segment-progress"),
  result: document.getElementById("segment-result"),
  lesions: document.getElementById("lesions"),
  downloads: document.getElementById("segment-downloads"),
};

parts.progress.querySelector(".job-links").append(el("a", { href: "/jobs" }, "All jobs"));
const root = document.getElementById("viewer");
if (root && data.image) {
  const panel = new ViewerPanel(root);
  panel.setLabelMaps(data.label ? [data.label] : []);
  try {
    await panel.loadImages([data.image]);
    const done = await presentSegmentation(panel, data.segmentation, parts);
    if (done.job.status !== "succeeded") showError(errorBox, `The segmentation ${done.job.status}: ${done.job.error || "no result"}`);
  } catch (error) {
    showError(errorBox, error.message);
  }
}
