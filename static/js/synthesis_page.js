// The page of one synthesis: follows its job, then shows the result beside the original (slices
// linked), with the tumor label over the result, and the downloads.

import { API, followJob, getJSON } from "./api.js";
import { el, pageData, renderDownloads, showError, showJob } from "./ui.js";
import { ViewerPanel } from "./viewer_panel.js";

const TUMOR_LABEL = 2;
const data = pageData();
const progress = document.getElementById("synth-progress");
const errorBox = document.getElementById("synth-error");
const resultBox = document.getElementById("synth-result");

async function finished(synthesis) {
  if (["succeeded", "failed", "cancelled"].includes(synthesis.job.status)) return synthesis;
  showJob(progress, synthesis.job);
  await followJob(synthesis.job.id, (job) => showJob(progress, job));
  return getJSON(`${API}/syntheses/${synthesis.id}`);
}

async function showResult(panel, synthesis) {
  const [outImage, outLabel] = await Promise.all([
    getJSON(`${API}/volumes/${synthesis.out_image_id}`),
    getJSON(`${API}/volumes/${synthesis.out_label_id}`),
  ]);
  await panel.loadImages([null, outImage]);
  panel.viewers[0].link(panel.viewers[1]);
  panel.setLabelMaps([outLabel]);
  await panel.showOverlay(outLabel.id);
  panel.viewers[1].centerOnLabel(TUMOR_LABEL);
  const voxels = synthesis.job.result ? synthesis.job.result.tumor_voxels : null;
  const summary = document.getElementById("synth-summary");
  summary.replaceChildren(
    voxels === null ? "" : `${voxels} tumor voxels. `,
    "Result image: ",
    el("a", { href: `/volumes/${outImage.id}` }, `volume ${outImage.id}`),
    ".",
  );
  const d = synthesis.downloads;
  renderDownloads(document.getElementById("synth-downloads"), [
    ["Image (NIfTI)", d.image],
    ["Label (NIfTI)", d.label],
    ["Manifest (JSON)", d.manifest],
  ]);
  resultBox.hidden = false;
}

async function main() {
  const root = document.getElementById("viewer");
  const panel = root ? new ViewerPanel(root) : null;
  progress.querySelector(".job-links").append(el("a", { href: "/jobs" }, "All jobs"));
  const loading = panel ? panel.loadImages([data.image]) : Promise.resolve();
  const synthesis = await finished(data.synthesis);
  showJob(progress, synthesis.job);
  await loading;
  if (synthesis.job.status !== "succeeded") {
    showError(errorBox, `The synthesis ${synthesis.job.status}: ${synthesis.job.error || "no result"}`);
    return;
  }
  if (panel && synthesis.out_image_id !== null) await showResult(panel, synthesis);
}

main().catch((error) => showError(errorBox, error.message));
