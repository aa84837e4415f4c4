// The synthesis form: image → its label maps → organ label values (from the legend), organ →
// tumor types; submitting queues the job and opens the synthesis page, which follows it.

import { API, postJSON } from "./api.js";
import { el, organValues, pageData, showError } from "./ui.js";

const data = pageData();
const form = document.getElementById("synthesize-form");
const imageSelect = document.getElementById("synth-image");
const maskSelect = document.getElementById("synth-mask");
const maskHelp = document.getElementById("mask-help");
const organSelect = document.getElementById("synth-organ");
const typeSelect = document.getElementById("synth-type");
const valuesInput = document.getElementById("synth-labels");
const choices = document.getElementById("synth-value-choices");
const button = document.getElementById("synth-button");
const errorBox = document.getElementById("synth-error");

const currentMask = () => data.label_maps.find((label) => String(label.id) === maskSelect.value) || null;


function parseValues(text) {
  return text
    .split(/[\s,]+/)
    .filter(Boolean)
    .map(Number);
}

function syncCheckboxes() {
  const chosen = new Set(parseValues(valuesInput.value));
  for (const box of choices.querySelectorAll("input[type=checkbox]")) box.checked = chosen.has(Number(box.value));
}

function fillValues() {
  const mask = currentMask();
  choices.replaceChildren();
  if (!mask) {
    valuesInput.value = "";
    return;
  }
  const legend = mask.labels || {};
  for (const [value, name] of Object.entries(legend).sort((a, b) => Number(a[0]) - Number(b[0]))) {
    const box = el("input", { type: "checkbox", value, name: "label-value" });
    box.addEventListener("change", () => {
      const chosen = [...choices.querySelectorAll("input:checked")].map((input) => input.value);
      valuesInput.value = chosen.join(", ");
    });
    choices.append(el("label", { class: "choice" }, box, ` ${value} · ${name}`));
  }
  const organ = organSelect.value;
  const values = organValues(mask.labels, organ);
  if (!mask.labels) {
    valuesInput.value = "1";
    maskHelp.textContent = `This label map has no legend, so 1 is assumed to be the ${organ}: ` +
      "check the value (or upload the label map with its legend).";
  } else if (!values.length) {
    valuesInput.value = "";
    maskHelp.textContent = `The legend of this label map names no ${organ}: tick its label values, or choose another mask.`;
  } else {
    valuesInput.value = values.join(", ");
    maskHelp.textContent = `The ${organ} is label ${values.join(" and ")} in this mask's legend.`;
  }
  syncCheckboxes();
}

function fillMasks() {
  const imageId = Number(imageSelect.value);
  const masks = data.label_maps.filter((label) => label.image_id === imageId);
  maskSelect.replaceChildren(...masks.map((label) => el("option", { value: label.id }, `#${label.id} ${label.name}`)));
  // Prefer a mask whose legend names the organ and no tumor (an organ mask), then any that
  // names the organ (e.g. a liver/tumor segmentation), then the first.
  const namesOrgan = (label) => organValues(label.labels, organSelect.value).length > 0;
  const hasTumor = (label) => Object.values(label.labels || {}).some((name) => /tumou?r/i.test(name));
  const fitting = masks.find((label) => namesOrgan(label) && !hasTumor(label)) || masks.find(namesOrgan);
  if (fitting) maskSelect.value = String(fitting.id);
  if (!masks.length) maskHelp.textContent = "This image has no label map: upload an organ mask with it first.";
  button.disabled = !masks.length;
  fillValues();
}

function fillTypes() {
  const types = data.options.organs[organSelect.value] || [];
  const previous = typeSelect.value;
  typeSelect.replaceChildren(...types.map((type) => el("option", { value: type }, type)));
  typeSelect.value = types.includes(previous) ? previous : types.includes("mix") ? "mix" : types[0];
}

imageSelect.addEventListener("change", fillMasks);
maskSelect.addEventListener("change", fillValues);
organSelect.addEventListener("change", () => {
  fillTypes();
  fillMasks(); // the mask whose legend names the new organ, and its values
});
valuesInput.addEventListener("input", syncCheckboxes);

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(errorBox, "");
  const values = parseValues(valuesInput.value);
  if (!values.length || values.some((v) => !Number.isInteger(v) || v <= 0)) {
    showError(errorBox, "Give the organ's label values as positive whole numbers, e.g. 1 or 3, 4.");
    valuesInput.focus();
    return;
  }
  const seed = Number(document.getElementById("synth-seed").value);
  if (!Number.isInteger(seed) || seed < 0) {
    showError(errorBox, "The seed must be a whole number from 0.");
    return;
  }
  button.disabled = true;
  try {
    const made = await postJSON(`${API}/syntheses`, {
      image_id: Number(imageSelect.value),
      mask_id: Number(maskSelect.value),
      mask_labels: values,
      organ: organSelect.value,
      tumor_type: typeSelect.value,
      profile: document.getElementById("synth-profile").value,
      seed,
    });
    window.location.assign(`/syntheses/${made.id}`);
  } catch (error) {
    showError(errorBox, `The synthesis could not start: ${error.message}`);
    button.disabled = false;
  }
});

fillTypes();
fillMasks();
