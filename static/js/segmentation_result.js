// Showing a segmentation: follow its job, then its label map as the overlay, the lesion table
// and the downloads. Used by the volume page (after "Segment") and the segmentation page.

import { API, followJob, getJSON, postJSON } from "./api.js";
import { el, renderDownloads, renderLesions, segmentationDownloads, showJob } from "./ui.js";

/**
 * @param {import("./viewer_panel.js").ViewerPanel} panel - shows the image already
 * @param {object} segmentation - API JSON of the segmentation
 * @param {{progress: HTMLElement, result: HTMLElement, lesions: HTMLElement, downloads: HTMLElement}} parts
 * @returns {Promise<object>} the finished segmentation
 */
function cancelButton(jobId) {
  const button = el("button", { type: "button", class: "secondary cancel-job" }, "Cancel");
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.textContent = "Cancelling…";
    try {
      await postJSON(`${API}/jobs/${jobId}/cancel`);
    } catch (error) {
      button.disabled = false;
      button.textContent = `Cancel (failed: ${error.message})`;
    }
  });
  return button;
}

export async function presentSegmentation(panel, segmentation, parts) {
  let current = segmentation;
  const links = parts.progress.querySelector(".job-links");
  if (links && !links.childElementCount) {
    links.append(el("a", { href: `/segmentations/${current.id}` }, `Segmentation ${current.id}`), " · ", el("a", { href: "/jobs" }, "all jobs"));
  }
  if (!["succeeded", "failed", "cancelled"].includes(current.job.status)) {
    const cancel = el("span", { class: "cancel-slot" }, links && links.childElementCount ? " · " : "", cancelButton(current.job.id));
    if (links) links.append(cancel);
    showJob(parts.progress, current.job);
    await followJob(current.job.id, (job) => showJob(parts.progress, job));
    cancel.remove(); // the separator goes with the button
    current = await getJSON(`${API}/segmentations/${current.id}`);
  }
  showJob(parts.progress, current.job);
  if (current.job.status !== "succeeded" || current.label_id === null) return current;
  const label = await getJSON(`${API}/volumes/${current.label_id}`);
  if (!panel.labelMaps.some((item) => item.id === label.id)) panel.setLabelMaps([...panel.labelMaps, label]);
  await panel.showOverlay(label.id);
  renderLesions(parts.lesions, current.lesions, (mm) => panel.showLesion(mm));
  renderDownloads(parts.downloads, segmentationDownloads(current));
  parts.result.hidden = false;
  if (current.lesions && current.lesions.length) panel.overlayViewer.centerOnLesion(current.lesions[0].centroid_mm);
  return current;
}
