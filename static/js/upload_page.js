// The upload page: the CT (and an optional label map for it) go to /api/v1/volumes as raw
// bodies, with a progress bar; on success the browser goes to the volume page.

import { API, uploadFile } from "./api.js";
import { el, showError } from "./ui.js";

const form = document.getElementById("upload-form");
const imageInput = document.getElementById("image-file");
const labelInput = document.getElementById("label-file");
const button = document.getElementById("upload-button");
const block = document.getElementById("upload-progress");
const bar = document.getElementById("upload-bar");
const step = document.getElementById("upload-step");
const errorBox = document.getElementById("upload-error");
const legendBox = document.getElementById("legend-box");
const legendPreset = document.getElementById("legend-preset");
const legendText = document.getElementById("legend-text");

/** Legends of common label maps (value → name). */
export const LEGEND_PRESETS = {
  "liver-tumor": { 1: "liver", 2: "tumor" },
  phantom: { 1: "liver", 2: "spleen", 3: "kidney_right", 4: "kidney_left", 5: "pancreas", 6: "aorta", 7: "ivc" },
  totalsegmentator: {
    1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "liver", 6: "stomach",
    7: "pancreas", 8: "adrenal_gland_right", 9: "adrenal_gland_left",
  },
};

/** "1 = liver" lines → {"1": "liver"}; throws naming the first bad line. */
export function parseLegend(text) {
  const legend = {};
  for (const [index, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (!line) continue;
    const match = line.match(/^(\d{1,3})\s*[=:]\s*(.{1,60})$/);
    if (!match || Number(match[1]) < 1 || Number(match[1]) > 255) {
      throw new Error(`legend line ${index + 1} ("${line}") is not "value = name" with a value from 1 to 255`);
    }
    legend[String(Number(match[1]))] = match[2].trim();
  }
  return legend;
}

labelInput.addEventListener("change", () => {
  legendBox.disabled = !labelInput.files.length;
});
legendPreset.addEventListener("change", () => {
  const preset = LEGEND_PRESETS[legendPreset.value];
  if (preset) legendText.value = Object.entries(preset).map(([value, name]) => `${value} = ${name}`).join("\n");
});

function progressOf(what, start, share) {
  return (fraction) => {
    const value = start + share * fraction;
    bar.value = value;
    bar.textContent = `${Math.round(value * 100)} %`;
    step.textContent = `${what}: ${Math.round(fraction * 100)} %`;
  };
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(errorBox, "");
  const image = imageInput.files[0];
  const label = labelInput.files[0];
  if (!image) {
    showError(errorBox, "Choose a CT file to upload.");
    imageInput.focus();
    return;
  }
  let legend = {};
  try {
    legend = label ? parseLegend(legendText.value) : {};
  } catch (error) {
    showError(errorBox, `The legend: ${error.message}.`);
    legendText.focus();
    return;
  }
  button.disabled = true;
  block.hidden = false;
  const total = image.size + (label ? label.size : 0);
  const imageShare = label ? image.size / total : 1;
  let volume = null;
  try {
    const query = new URLSearchParams({ name: image.name, kind: "image" });
    const answer = await uploadFile(`${API}/volumes?${query}`, image, progressOf(`Uploading ${image.name}`, 0, imageShare));
    volume = answer.body;
    if (label) {
      const labelQuery = new URLSearchParams({ name: label.name, kind: "label", image_id: volume.id });
      if (Object.keys(legend).length) labelQuery.set("labels", JSON.stringify(legend));
      await uploadFile(`${API}/volumes?${labelQuery}`, label, progressOf(`Uploading ${label.name}`, imageShare, 1 - imageShare));
    }
    step.textContent = "Done: opening the volume…";
    bar.value = 1;
    window.location.assign(`/volumes/${volume.id}`);
  } catch (error) {
    const which = volume ? `The label map was refused (the image was stored as volume ${volume.id})` : "The upload failed";
    showError(errorBox, `${which}: ${error.message}`);
    if (volume) errorBox.append(" ", el("a", { href: `/volumes/${volume.id}` }, `Open volume ${volume.id}`));
    block.hidden = true;
    button.disabled = false;
  }
});
