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
